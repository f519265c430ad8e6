// `quanto inspect`: validate a checkpoint (every shard's safetensors rules, the index, the
// quantization map) and list its tensors, with the qtype and group size of quantized modules.
#include <quanto/qtype.h>
#include <quanto/weights.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "commands.h"
#include "input.h"
#include "report.h"
#include "shard_reader.h"
#include "util.h"

namespace quanto::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct ModuleInfo {
  std::string weights = "none", activations = "none";
  std::string dynamic_activations;  // per-token activation qtype (quanto's map entry), or empty
  std::optional<int64_t> group_size;
  bool group_known = false;
  std::vector<int64_t> shape;  // from quanto metadata, when present
  uint64_t bytes = 0;
  uint64_t numel = 0;          // weight elements (from the data tensor)
};

// "a.b.<a weight format key>" or "a.b.input_scale" -> "a.b"; else "".
std::string quantized_owner(const std::string& name) {
  for (const std::string& key : quantized_module_keys()) {
    const std::string suf = "." + key;
    if (name.size() > suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0)
      return name.substr(0, name.size() - suf.size());
  }
  return "";
}

json read_qmap(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, false);
  if (j.is_discarded()) throw CliError("'" + p.string() + "' is not valid JSON");
  if (!j.is_object()) throw CliError("'" + p.string() + "' must hold a JSON object (module -> qtypes)");
  for (const auto& [m, e] : j.items()) {
    if (!e.is_object()) throw CliError("'" + p.string() + "': module '" + m + "' is not an object");
    for (const char* k : {"weights", "activations"}) {
      if (!e.contains(k) || !e[k].is_string())
        throw CliError("'" + p.string() + "': module '" + m + "' has no string \"" + k + "\"");
      const std::string v = e[k].get<std::string>();
      if (v != "none" && find_qtype(v) == nullptr)
        throw CliError("'" + p.string() + "': module '" + m + "' has unknown qtype '" + v + "' (known: " +
                       qtype_names() + ", none)");
    }
    if (e.contains("dynamic_activations") && !e["dynamic_activations"].is_null()) {
      const json& d = e["dynamic_activations"];
      const QType* q = d.is_string() ? find_qtype(d.get<std::string>()) : nullptr;
      if (q == nullptr || q->bits != 8 || e["activations"].get<std::string>() != "none")
        throw CliError("'" + p.string() + "': module '" + m + "' has \"dynamic_activations\" " + d.dump() +
                       "; expected qint8 or a float8 qtype name, with \"activations\": \"none\"");
    }
  }
  return j;
}

}  // namespace

int run_inspect(const InspectOptions& opts) {
  const Input in = discover_input(opts.path);
  std::vector<std::unique_ptr<ShardReader>> readers;
  std::map<std::string, std::string> tensor_shard;
  for (const auto& s : in.shards) {
    readers.push_back(std::make_unique<ShardReader>((fs::path(in.folder) / s).string()));
    for (const auto& e : readers.back()->header().tensors)
      if (!tensor_shard.emplace(e.name, s).second) throw CliError("tensor '" + e.name + "' is stored in two shards");
  }
  if (in.sharded) {
    std::ifstream f(fs::path(in.folder) / kIndexName);
    std::stringstream ss;
    ss << f.rdbuf();
    const json idx = json::parse(ss.str(), nullptr, false);
    for (const auto& [name, file] : idx["weight_map"].items()) {
      auto it = tensor_shard.find(name);
      if (it == tensor_shard.end() || it->second != file.get<std::string>())
        throw CliError(std::string(kIndexName) + " maps '" + name + "' to '" + file.get<std::string>() +
                       "', which does not hold it");
    }
  }

  // Quantized modules: from the quantization map (if any), quanto metadata, and the keys.
  std::map<std::string, ModuleInfo> modules;
  const fs::path qmap_path = fs::path(in.folder) / kQmapName;
  const bool has_qmap = fs::is_regular_file(qmap_path);
  if (has_qmap) {
    const json qmap = read_qmap(qmap_path);
    for (const auto& [m, e] : qmap.items()) {
      modules[m].weights = e["weights"].get<std::string>();
      modules[m].activations = e["activations"].get<std::string>();
      if (e.contains("dynamic_activations") && e["dynamic_activations"].is_string())
        modules[m].dynamic_activations = e["dynamic_activations"].get<std::string>();
      if (e.contains("group_size") && e["group_size"].is_number_integer()) {
        modules[m].group_size = e["group_size"].get<int64_t>();
        modules[m].group_known = true;
      }
    }
  }
  for (const auto& r : readers) {
    const auto& md = r->header().metadata;
    auto it = md.find("quanto.modules");
    if (it == md.end()) continue;
    const json mm = json::parse(it->second, nullptr, false);
    if (!mm.is_object()) throw CliError("'" + r->path() + "': metadata quanto.modules is not a JSON object");
    for (const auto& [m, e] : mm.items()) {
      if (!e.is_object()) continue;
      auto& info = modules[m];
      if (e.contains("group_size")) {
        info.group_known = true;
        if (e["group_size"].is_number_integer()) info.group_size = e["group_size"].get<int64_t>();
      }
      if (e.contains("shape") && e["shape"].is_array()) info.shape = e["shape"].get<std::vector<int64_t>>();
      if (e.contains("weights") && e["weights"].is_string() && info.weights == "none")
        info.weights = e["weights"].get<std::string>();
    }
  }

  json tensors = json::array();
  std::vector<TensorRecord> rows;
  uint64_t total = 0;
  for (size_t i = 0; i < readers.size(); ++i)
    for (const auto& e : readers[i]->header().tensors) {
      const std::string owner = quantized_owner(e.name);
      total += e.nbytes();
      json t = {{"name", e.name}, {"dtype", std::string(safetensors::dtype_name(e.dtype))}, {"shape", e.shape},
                {"bytes", e.nbytes()}, {"file", in.shards[i]}};
      if (!owner.empty()) {
        auto& info = modules[owner];
        info.bytes += e.nbytes();
        const QType* q = find_qtype(info.weights);
        const std::string key = e.name.substr(owner.size() + 1);
        if (key == kQBitsFormat.data_key || key == kQBytesFormat.data_key) {
          uint64_t n = e.numel();
          if (q && q->bits < 8) n *= static_cast<uint64_t>(8 / q->bits);
          info.numel = n;
          if (q && q->bits < 8 && !info.group_known && e.shape.size() == 2) {
            info.group_size = static_cast<int64_t>(e.shape[1]);
          }
        }
        t["module"] = owner;
      }
      tensors.push_back(t);
    }
  // Every module the map names must have its weight tensors.
  for (const auto& [m, info] : modules)
    if (has_qmap && info.weights != "none" && info.numel == 0)
      throw CliError(std::string(kQmapName) + " names module '" + m + "' (" + info.weights +
                     ") but no file holds its quantized weight");

  json mods = json::array();
  for (const auto& [m, info] : modules) {
    if (info.weights == "none" && info.activations == "none" && info.numel == 0) continue;
    const std::string shown = info.dynamic_activations.empty() ? info.activations : info.dynamic_activations + " (dynamic)";
    mods.push_back({{"name", m}, {"weights", info.weights}, {"activations", shown},
                    {"group_size", info.group_size ? json(*info.group_size) : json(nullptr)},
                    {"shape", info.shape.empty() ? json(nullptr) : json(info.shape)}, {"bytes", info.bytes}});
    // Only where the map has the entry: other files keep their JSON as it was.
    if (!info.dynamic_activations.empty()) mods.back()["dynamic_activations"] = info.dynamic_activations;
  }
  if (opts.json) {
    json out = {{"path", opts.path}, {"files", in.shards}, {"sharded", in.sharded}, {"quantized", !mods.empty()},
                {"total_bytes", total}, {"tensors", tensors}, {"modules", mods}};
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
  }
  std::printf("%s: %zu file(s), %zu tensors, %s%s\n", opts.path.c_str(), in.shards.size(), tensors.size(),
              human_bytes(total).c_str(), has_qmap ? ", quantized (quanto_qmap.json)" : "");
  for (const auto& t : tensors) {
    std::string line = "  " + t["name"].get<std::string>() + "  " + t["dtype"].get<std::string>() + " " +
                       shape_str(t["shape"].get<std::vector<uint64_t>>()) + "  " +
                       human_bytes(t["bytes"].get<uint64_t>());
    std::printf("%s\n", line.c_str());
  }
  if (!mods.empty()) {
    std::printf("quantized modules: %zu\n", mods.size());
    for (const auto& m : mods) {
      std::string g = m["group_size"].is_null() ? "per channel" : "group " + std::to_string(m["group_size"].get<int64_t>());
      const QType* q = find_qtype(m["weights"].get<std::string>());
      if (q && q->bits == 8) g = "per channel";
      const std::string shape = m["shape"].is_null() ? "" : "  " + shape_str(m["shape"].get<std::vector<int64_t>>());
      std::printf("  %s  %s/%s  %s%s  %s\n", m["name"].get<std::string>().c_str(),
                  m["weights"].get<std::string>().c_str(), m["activations"].get<std::string>().c_str(), g.c_str(),
                  shape.c_str(), human_bytes(m["bytes"].get<uint64_t>()).c_str());
    }
  }
  return 0;
}

}  // namespace quanto::cli
