// quanto::save / quanto::requantize on top of the IO layer (safetensors + quantization map).
#include <quanto/serialization.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <quanto/nn.h>
#include <quanto/qmap.h>
#include <quanto/qtype.h>
#include <quanto/safetensors_aten.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>

namespace quanto {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kModelFile = "model.safetensors";
constexpr const char* kMapFile = "quanto_qmap.json";

std::string prefix_of(const std::string& module_name) { return module_name.empty() ? "" : module_name + "."; }

json module_metadata(const nn::QModuleInterface& q) {
  json m;
  m["kind"] = q.kind();
  m["weights"] = q.weight_qtype() ? std::string(q.weight_qtype()->name) : "none";
  // Dynamic activations are written as in the map: "activations" (static) "none", the qtype under
  // "dynamic_activations" (on those modules only).
  const bool dynamic = q.dynamic_activations();
  m["activations"] = q.activation_qtype() && !dynamic ? std::string(q.activation_qtype()->name) : "none";
  if (dynamic) m["dynamic_activations"] = std::string(q.activation_qtype()->name);
  const bool bits = q.weight_qtype() && q.weight_qtype()->bits < 8;
  m["group_size"] = bits && q.weight_group_size() ? json(*q.weight_group_size()) : json(nullptr);
  m["axis"] = 0;
  m["shift"] = bits ? json(q.spec().zero_point ? "zeropoint" : "float") : json(nullptr);
  m["quantize_output"] = q.quantizes_output();
  return m;
}

}  // namespace

void save(const torch::nn::Module& module, const std::string& dir) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  qmap::QuantizationMap map;
  json modules = json::object();
  for (const auto& item : module.named_modules("", /*include_self=*/true)) {
    const std::string prefix = prefix_of(item.key());
    const torch::nn::Module& m = *item.value();
    if (const auto* q = nn::as_qmodule(m)) {
      for (auto& [key, t] : q->export_state())
        if (t.defined()) tensors.emplace_back(prefix + key, t);
      if (q->is_quantized()) {
        // The map carries what optimum-quanto cannot rebuild, as Python quanto writes it: a
        // non-default group size and a streamlined (not quantized) output.
        // Dynamic activations: "activations" stays "none" (there are no static scales), so
        // optimum-quanto, which ignores "dynamic_activations", runs the layer weight-only.
        const bool dynamic = q->dynamic_activations();
        qmap::Entry entry(q->weight_qtype() ? std::string(q->weight_qtype()->name) : "none",
                          q->activation_qtype() && !dynamic ? std::string(q->activation_qtype()->name) : "none");
        if (dynamic) entry.dynamic_activations = std::string(q->activation_qtype()->name);
        if (q->weight_qtype() && q->weight_qtype()->bits < 8 && q->weight_group_size()) {
          const auto shape = q->weight_shape();
          int64_t numel = 1;
          for (int64_t d : shape) numel *= d;
          if (q->weight_group_size() != default_group_size(numel / shape.at(0))) entry.group_size = q->weight_group_size();
        }
        if (q->activation_qtype() && !dynamic && !q->quantizes_output()) entry.quantize_output = false;
        map[item.key()] = std::move(entry);
        modules[item.key()] = module_metadata(*q);
      }
      continue;
    }
    for (const auto& p : m.named_parameters(/*recurse=*/false))
      if (p.value().defined()) tensors.emplace_back(prefix + p.key(), p.value().detach());
    for (const auto& b : m.named_buffers(/*recurse=*/false))
      if (b.value().defined()) tensors.emplace_back(prefix + b.key(), b.value().detach());
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  TORCH_CHECK(!ec, "quanto::save: cannot create directory '", dir, "': ", ec.message());
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"},
      {"quanto.format_version", std::to_string(kFormatVersion)},
      {"quanto.modules", modules.dump()},
  };
  safetensors::save((fs::path(dir) / kModelFile).string(), tensors, metadata);
  try {
    qmap::write((fs::path(dir) / kMapFile).string(), map);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "quanto::save: ", e.what());
  }
}

void requantize(torch::nn::Module& module, const std::string& dir, c10::Device device) {
  const std::string model_path = (fs::path(dir) / kModelFile).string();
  const std::string map_path = (fs::path(dir) / kMapFile).string();
  TORCH_CHECK_VALUE(fs::exists(model_path), "quanto::requantize: '", model_path, "' does not exist");
  TORCH_CHECK_VALUE(fs::exists(map_path), "quanto::requantize: '", map_path,
                    "' does not exist (a quantized model directory holds model.safetensors and quanto_qmap.json)");
  qmap::QuantizationMap map;
  try {
    map = qmap::read(map_path);
  } catch (const std::exception& e) {
    TORCH_CHECK_VALUE(false, "quanto::requantize: ", e.what());
  }
  const safetensors::File file = safetensors::File::open(model_path);

  // Self-describing metadata (quanto files); optimum-quanto files have none.
  json meta_modules = json::object();
  const auto& md = file.metadata();
  if (auto it = md.find("quanto.format_version"); it != md.end()) {
    TORCH_CHECK_VALUE(it->second == std::to_string(kFormatVersion), "quanto::requantize: '", model_path,
                      "' has quanto format version ", it->second, "; this build reads version ", kFormatVersion);
    if (auto mit = md.find("quanto.modules"); mit != md.end()) {
      meta_modules = json::parse(mit->second, nullptr, /*allow_exceptions=*/false);
      TORCH_CHECK_VALUE(meta_modules.is_object(), "quanto::requantize: '", model_path,
                        "': metadata quanto.modules is not a JSON object");
    }
  }

  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  for (const auto& item : module.named_modules("", /*include_self=*/true)) modules[item.key()] = item.value();

  std::set<std::string> consumed;
  auto get = [&](const std::string& key) -> std::optional<at::Tensor> {
    if (!file.contains(key)) return std::nullopt;
    consumed.insert(key);
    return file.tensor(key);
  };

  // 1. Quantized layers, built from the file's tensors.
  for (const auto& [name, entry] : map) {
    auto it = modules.find(name);
    TORCH_CHECK_VALUE(it != modules.end(), "quanto::requantize: the quantization map names module '", name,
                      "', which the model does not have");
    nn::QModuleInterface* q = nn::as_qmodule(*it->second);
    TORCH_CHECK_VALUE(q != nullptr, "quanto::requantize: module '", name, "' is a ", it->second->name(),
                      ", not a quanto layer: build the model with quanto::nn layers (QLinear, ...)");
    QuantSpec spec;
    spec.weights = entry.weights;
    spec.activations = entry.activations;
    if (entry.dynamic_activations) {  // quanto's entry (the map is its only source)
      spec.activations = *entry.dynamic_activations;
      spec.dynamic_activations = true;
    }
    if (meta_modules.contains(name)) {
      const json& m = meta_modules[name];
      if (m.contains("group_size") && m["group_size"].is_number_integer())
        spec.group_size = m["group_size"].get<int64_t>();
      spec.zero_point = m.value("shift", json(nullptr)) == json("zeropoint");
    }
    // The map's own entries (Python quanto and the CLI write them; no metadata needed).
    if (entry.group_size) spec.group_size = entry.group_size;
    bool quantize_output = !meta_modules.contains(name) || meta_modules[name].value("quantize_output", true);
    if (entry.quantize_output) quantize_output = *entry.quantize_output;
    const std::string prefix = prefix_of(name);
    try {
      q->load_quantized(spec, [&](const std::string& key) { return get(prefix + key); }, device);
      // Calibration may have turned output quantization off; files without the entry quantize it.
      q->set_quantizes_output(quantize_output);
    } catch (const c10::Error& e) {
      TORCH_CHECK_VALUE(false, "quanto::requantize: module '", name, "' (", entry.weights, "/", entry.activations,
                        ") in '", model_path, "': ", e.what_without_backtrace());
    }
  }

  // 2. Every other parameter and buffer, by name.
  for (const auto& [name, m] : modules) {
    const std::string prefix = prefix_of(name);
    const nn::QModuleInterface* q = nn::as_qmodule(*m);
    auto load = [&](const std::string& own_name, at::Tensor& t) {
      if (!t.defined()) return;
      const std::string key = prefix + (q ? q->state_key(own_name) : own_name);
      if (consumed.count(key)) return;
      TORCH_CHECK_VALUE(file.contains(key), "quanto::requantize: missing key '", key, "' in '", model_path, "'");
      at::Tensor src = file.tensor(key);
      consumed.insert(key);
      TORCH_CHECK_VALUE(src.sizes() == t.sizes(), "quanto::requantize: shape mismatch for '", key, "': the file has ",
                        src.sizes(), ", the model ", t.sizes());
      at::NoGradGuard no_grad;
      t.set_data(src.to(device, t.scalar_type(), /*non_blocking=*/false, /*copy=*/true));
    };
    for (auto& p : m->named_parameters(/*recurse=*/false)) load(p.key(), p.value());
    for (auto& b : m->named_buffers(/*recurse=*/false)) load(b.key(), b.value());
  }

  std::vector<std::string> unexpected;
  for (const auto& n : file.names())
    if (!consumed.count(n)) unexpected.push_back(n);
  if (!unexpected.empty()) {
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? ", " : "") + unexpected[i];
    if (unexpected.size() > 5) list += ", ...";
    TORCH_CHECK_VALUE(false, "quanto::requantize: '", model_path, "' has ", unexpected.size(),
                      " tensor(s) that the model does not have: ", list);
  }
  module.to(device);
}

}  // namespace quanto
