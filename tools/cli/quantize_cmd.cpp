// `quanto quantize`: discover the input, plan every tensor, then stream shard by shard and
// tensor by tensor from the mapped input into the temporary output folder; index, quantization
// map and the input's other files complete it before the atomic rename.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <quanto/safetensors_aten.h>
#include <quanto/serialization.h>
#include <quanto/weights.h>

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <set>

#include "commands.h"
#include "input.h"
#include "output_dir.h"
#include "quantize_tensor.h"
#include "report.h"
#include "select.h"
#include "shard_reader.h"
#include "util.h"
#include "writer.h"

namespace quanto::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string qdesc(const TensorPlan& p, const Settings& s) {
  std::string d(s.qtype->name);
  if (s.qtype->bits < 8) d += p.group_size ? "/g" + std::to_string(*p.group_size) : "/ch";
  return d;
}

std::string kind_of(const TensorPlan& p) {
  if (p.qshape.size() == 2) return "QLinear";
  return "QConv" + std::to_string(p.qshape.size() - 2) + "d";
}

// quanto's self-describing metadata (serialization.h, format version kFormatVersion) for the
// modules of one shard; "shape" (the canonical weight shape) is read by `quanto inspect`.
// Dynamic activations apply to Linear-like layers (2-D weights) only.
const QType* dynamic_activations_of(const TensorPlan& p, const Settings& s) {
  return p.qshape.size() == 2 ? s.dynamic_activations : nullptr;
}

json module_metadata(const TensorPlan& p, const Settings& s) {
  const bool bits = s.qtype->bits < 8;
  json m = {{"kind", kind_of(p)},
            {"weights", std::string(s.qtype->name)},
            {"activations", "none"},
            {"group_size", bits && p.group_size ? json(*p.group_size) : json(nullptr)},
            {"axis", 0},
            {"shift", bits ? json(s.zero_point ? "zeropoint" : "float") : json(nullptr)},
            {"quantize_output", true},
            {"shape", p.qshape}};
  // Only on modules that have them (files without dynamic activations keep their header).
  if (const QType* dyn = dynamic_activations_of(p, s)) m["dynamic_activations"] = std::string(dyn->name);
  return m;
}

void write_text(const fs::path& path, const std::string& text) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw CliError("cannot write '" + path.string() + "'");
  }
  fsync_path(path.string(), false);
}

void copy_into(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  fs::create_directories(to.parent_path(), ec);
  if (ec) throw CliError("cannot create '" + to.parent_path().string() + "': " + ec.message());
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) throw CliError("cannot copy '" + from.string() + "' to '" + to.string() + "': " + ec.message());
  fsync_path(to.string(), false);
}

// config.json (key order kept) with "tie_word_embeddings": false: the quantized head no longer
// shares the embedding's tensor, and loaders must not tie it back.
std::string untied_config(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CliError("cannot read '" + path.string() + "'");
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  nlohmann::ordered_json config = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object()) throw CliError("'" + path.string() + "' is not a JSON object");
  config["tie_word_embeddings"] = false;
  return config.dump(2) + "\n";
}

bool already_quantized(const std::string& name) {
  for (const std::string& key : quantized_module_keys())
    if (name.find("." + key) != std::string::npos) return true;
  return false;
}

}  // namespace

int run_quantize(const QuantizeOptions& opts) {
  const auto t0 = std::chrono::steady_clock::now();
  // Each tensor's temporaries are large and freed before the next: a fixed mmap threshold makes
  // glibc hand them back to the system at once (its default threshold grows after the first large
  // free, and the heap then keeps hundreds of MB of fragmented blocks).
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  const Settings settings = resolve_settings(opts);
  const Input in = discover_input(opts.input);
  check_output_path(opts.input, in.is_folder, opts.output, opts.force);
  if (fs::is_regular_file(fs::path(in.folder) / kQmapName) && in.is_folder)
    throw CliError("'" + opts.input + "' is already quantized (it has " + kQmapName + "); quantize its float checkpoint");
  if (opts.threads < 0) throw CliError("--threads must be >= 0, got " + std::to_string(opts.threads));
  if (opts.threads > 0) at::set_num_threads(opts.threads);

  // Open and validate every shard before writing anything.
  std::vector<std::unique_ptr<ShardReader>> readers;
  std::vector<TensorPlan> tensors;
  std::map<std::string, std::pair<size_t, const safetensors::TensorEntry*>> where;  // name -> (shard, entry)
  for (size_t i = 0; i < in.shards.size(); ++i) {
    readers.push_back(std::make_unique<ShardReader>((fs::path(in.folder) / in.shards[i]).string()));
    for (const auto& e : readers.back()->header().tensors) {
      if (already_quantized(e.name))
        throw CliError("'" + readers.back()->path() + "' is already quantized (tensor '" + e.name + "')");
      if (!where.emplace(e.name, std::make_pair(i, &e)).second)
        throw CliError("tensor '" + e.name + "' is stored in two shards");
      TensorPlan t;
      t.name = e.name;
      t.shard = in.shards[i];
      t.dtype = e.dtype;
      t.shape.assign(e.shape.begin(), e.shape.end());
      tensors.push_back(std::move(t));
    }
  }
  auto same_bytes = [&](const TensorPlan& a, const TensorPlan& b) {
    const auto& [ia, ea] = where.at(a.name);
    const auto& [ib, eb] = where.at(b.name);
    const bool same = std::memcmp(readers[ia]->bytes(*ea), readers[ib]->bytes(*eb), ea->nbytes()) == 0;
    readers[ia]->release(*ea);
    readers[ib]->release(*eb);
    return same;
  };
  Summary summary;
  const std::vector<TensorPlan> plan = plan_tensors(std::move(tensors), opts, settings, in.config, same_bytes, summary.notes);

  summary.input = opts.input;
  summary.output = opts.output;
  summary.weights = std::string(settings.qtype->name);
  summary.optimizer = settings.optimizer;
  if (settings.dynamic_activations) summary.activations = std::string(settings.dynamic_activations->name) + " (dynamic)";
  summary.dry_run = opts.dry_run;
  summary.threads = at::get_num_threads();
  summary.copied_files = in.copy_files;
  summary.skipped_files = in.skipped;

  // Output shards mirror the input's; a single file input becomes model.safetensors.
  std::vector<std::string> out_names = in.sharded ? in.shards : std::vector<std::string>{kWeightsName};
  summary.shards = out_names;
  std::vector<std::vector<OutSpec>> specs(in.shards.size());
  std::vector<json> meta_modules(in.shards.size(), json::object());
  json qmap = json::object();
  // The input tensor a plan reads (a tied head quantized from its embedding reads the embedding).
  auto input_of = [&](const TensorPlan& p) { return where.at(p.source.empty() ? p.name : p.source); };
  bool untied_head = false;
  for (const auto& p : plan) {
    const size_t s = input_of(p).first;
    untied_head = untied_head || p.untied_head;
    for (auto& o : output_specs(p, settings)) specs[s].push_back(std::move(o));
    if (p.quantize) {
      meta_modules[s][p.module] = module_metadata(p, settings);
      json entry = {{"weights", std::string(settings.qtype->name)}, {"activations", "none"}};
      // As quanto::save writes it: "activations" (static) stays "none", so optimum-quanto, which
      // ignores the entry, runs the layer weight-only.
      if (const QType* dyn = dynamic_activations_of(p, settings)) entry["dynamic_activations"] = std::string(dyn->name);
      const int64_t in_features = [&] { int64_t n = 1; for (auto d : p.qshape) n *= d; return n / p.qshape[0]; }();
      if (settings.qtype->bits < 8 && p.group_size != default_group_size(in_features))
        entry["group_size"] = p.group_size ? json(*p.group_size) : json(nullptr);
      qmap[p.module] = entry;
    }
  }

  FILE* progress_out = opts.json ? stderr : stdout;
  const bool tty = ::isatty(::fileno(progress_out)) != 0;
  Progress progress(plan.size(), progress_out, tty, /*quiet=*/false);
  std::unique_ptr<OutputDir> out_dir;
  if (!opts.dry_run) out_dir = std::make_unique<OutputDir>(opts.output);

  json weight_map = json::object();
  uint64_t total_size = 0;
  for (size_t s = 0; s < in.shards.size(); ++s) {
    std::unique_ptr<ShardWriter> writer;
    if (!opts.dry_run) {
      const std::map<std::string, std::string> metadata = {
          {"format", "pt"},
          {"quanto.format_version", std::to_string(kFormatVersion)},
          {"quanto.modules", meta_modules[s].dump()}};
      writer = std::make_unique<ShardWriter>((fs::path(out_dir->temp()) / out_names[s]).string(), specs[s], metadata);
    }
    for (const auto& p : plan) {
      const auto& [shard, entry] = input_of(p);
      if (shard != s) continue;
      const ShardReader& reader = *readers[s];
      TensorRecord r;
      r.name = p.name;
      r.shape = p.shape;
      r.dtype = short_dtype(p.dtype);
      r.quantized = p.quantize;
      r.qdesc = p.quantize ? qdesc(p, settings) : p.reason;
      r.numel = entry->numel();
      r.in_bytes = entry->nbytes();
      for (const auto& o : output_specs(p, settings)) {
        uint64_t n = safetensors::element_size(o.dtype);
        for (auto d : o.shape) n *= d;
        r.out_bytes += n;
        weight_map[o.name] = out_names[s];
      }
      if (!p.quantize) {
        if (writer) writer->write(p.name, reader.bytes(*entry), entry->nbytes());
      } else if (opts.dry_run) {
        r.sqnr_db = std::nan("");
      } else {
        const QuantizedWeight q = quantize_weight(reader.tensor(*entry), p, settings);
        const auto expect = output_specs(p, settings);
        for (size_t k = 0; k < q.tensors.size(); ++k) {
          const auto& [name, t] = q.tensors[k];
          const std::vector<uint64_t> shape(t.sizes().begin(), t.sizes().end());
          if (name != expect[k].name || safetensors::from_scalar_type(t.scalar_type()) != expect[k].dtype ||
              shape != expect[k].shape)
            throw CliError("internal: '" + name + "' does not have its planned dtype/shape");
          writer->write(name, t.data_ptr(), static_cast<uint64_t>(t.numel()) * t.element_size());
        }
        r.sqnr_db = q.sqnr_db;
      }
      reader.release(*entry);
      progress.done(r);
      summary.records.push_back(std::move(r));
    }
    if (writer) {
      writer->finish();
      total_size += writer->data_bytes();
    }
  }
  progress.finish();

  if (!opts.dry_run) {
    const fs::path tmp = out_dir->temp();
    if (in.sharded) {
      json index = {{"metadata", {{"total_size", total_size}}}, {"weight_map", weight_map}};
      write_text(tmp / kIndexName, index.dump(2) + "\n");
    }
    write_text(tmp / kQmapName, qmap.dump(4) + "\n");
    for (const auto& f : in.copy_files) {
      if (untied_head && f == "config.json") {
        write_text(tmp / f, untied_config(fs::path(in.folder) / f));
      } else {
        copy_into(fs::path(in.folder) / f, tmp / f);
      }
    }
    out_dir->commit();
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (opts.json)
    std::printf("%s\n", summary_json(summary).dump(2).c_str());
  else
    print_summary(stdout, summary);
  return 0;
}

}  // namespace quanto::cli
