// quanto_qmap.json: {"module.name": {"weights": "qint4", "activations": "none"}, ...}, the
// shape optimum-quanto 0.2.7 writes (json.dump with indent=4), plus the optional "group_size",
// "quantize_output" and "dynamic_activations" entries quanto writes.
#include <quanto/qmap.h>
#include <quanto/safetensors.h>

#include "json_guard.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <optional>

namespace quanto::qmap {
namespace {

using nlohmann::json;

// The qtype names of docs/format.md. src/ops/qtype.cpp holds the same list with the dtypes; this
// layer stays torch-free, and tests/io/aten_test.cpp checks that both lists agree.
constexpr std::array<std::string_view, 8> kNames{
    "none", "qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2"};

[[noreturn]] void fail(const std::string& message) { throw MapError("quantization map: " + message); }

std::string describe_duplicate(size_t level, const std::string& owner, const std::string& key) {
  if (level == 1) return "duplicate module name \"" + key + "\"";
  if (level == 2) return "module \"" + owner + "\": duplicate field \"" + key + "\"";
  return "duplicate JSON key \"" + key + "\"";
}

void fail_nesting(const std::string& message) { fail(message); }

std::string known_names() {
  std::string s;
  for (std::string_view n : kNames) {
    if (!s.empty()) s += ", ";
    s += n;
  }
  return s;
}

std::string checked_qtype(const json& entry, const char* key, const std::string& module) {
  auto it = entry.find(key);
  if (it == entry.end()) fail("module \"" + module + "\": missing field \"" + key + "\"");
  if (!it->is_string()) fail("module \"" + module + "\": \"" + key + "\" is not a string");
  const std::string& name = it->get_ref<const std::string&>();
  if (!is_known_qtype_name(name)) {
    fail("module \"" + module + "\": unknown qtype \"" + name + "\" for " + key + " (known: " + known_names() + ")");
  }
  return name;
}

bool is_bits_qtype(std::string_view name) { return name == "qint2" || name == "qint4"; }

void check_group_size(int64_t gs, const std::string& weights, const std::string& module) {
  if (gs <= 0) fail("module \"" + module + "\": \"group_size\" must be a positive integer, got " + std::to_string(gs));
  if (!is_bits_qtype(weights)) {
    fail("module \"" + module + "\": \"group_size\" applies to qint2/qint4 weights only, not " + weights);
  }
}

std::optional<int64_t> checked_group_size(const json& entry, const std::string& weights, const std::string& module) {
  auto it = entry.find("group_size");
  if (it == entry.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) {
    fail("module \"" + module + "\": \"group_size\" must be a positive integer, got " + it->dump());
  }
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
    fail("module \"" + module + "\": \"group_size\" " + it->dump() + " is too large");
  }
  const int64_t gs = it->get<int64_t>();
  check_group_size(gs, weights, module);
  return gs;
}

// "dynamic_activations": an 8-bit activation qtype, only where "activations" (static) is "none".
void check_dynamic_activations(const std::string& qtype, const std::string& activations, const std::string& module) {
  if (qtype != "qint8" && qtype.rfind("qfloat8", 0) != 0) {
    fail("module \"" + module + "\": \"dynamic_activations\" must be qint8 or a float8 qtype (qfloat8, "
         "qfloat8_e4m3fn, qfloat8_e4m3fnuz, qfloat8_e5m2), got \"" + qtype + "\"");
  }
  if (activations != "none") {
    fail("module \"" + module + "\": \"dynamic_activations\" needs \"activations\": \"none\" (a layer's activations "
         "are either static or dynamic), got \"" + activations + "\"");
  }
}

std::optional<std::string> checked_dynamic_activations(const json& entry, const std::string& activations,
                                                       const std::string& module) {
  auto it = entry.find("dynamic_activations");
  if (it == entry.end() || it->is_null()) return std::nullopt;
  if (!it->is_string() || !is_known_qtype_name(it->get_ref<const std::string&>())) {
    fail("module \"" + module + "\": \"dynamic_activations\" must be qint8 or a float8 qtype name, got " + it->dump());
  }
  const std::string q = it->get<std::string>();
  check_dynamic_activations(q, activations, module);
  return q;
}

}  // namespace

bool is_known_qtype_name(std::string_view name) {
  for (std::string_view n : kNames) {
    if (n == name) return true;
  }
  return false;
}

QuantizationMap parse(std::string_view text) {
  json root;
  try {
    io_detail::JsonGuard guard(16, describe_duplicate, fail_nesting, "JSON");
    root = json::parse(text.begin(), text.end(), std::ref(guard), /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(std::string("not valid JSON: ") + e.what());
  }
  if (!root.is_object()) fail(std::string("not a JSON object (it is a JSON ") + root.type_name() + ")");
  QuantizationMap map;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& module = it.key();
    const json& entry = it.value();
    if (!entry.is_object()) fail("module \"" + module + "\": entry is not a JSON object");
    for (auto f = entry.begin(); f != entry.end(); ++f) {
      if (f.key() != "weights" && f.key() != "activations" && f.key() != "group_size" &&
          f.key() != "quantize_output" && f.key() != "dynamic_activations") {
        fail("module \"" + module + "\": unknown field \"" + f.key() +
             "\" (expected \"weights\", \"activations\" and optionally \"group_size\", \"quantize_output\", "
             "\"dynamic_activations\")");
      }
    }
    Entry e;
    e.weights = checked_qtype(entry, "weights", module);
    e.activations = checked_qtype(entry, "activations", module);
    e.group_size = checked_group_size(entry, e.weights, module);
    if (auto q = entry.find("quantize_output"); q != entry.end()) {
      if (!q->is_boolean()) {
        fail("module \"" + module + "\": \"quantize_output\" must be true or false, got " + q->dump());
      }
      e.quantize_output = q->get<bool>();
    }
    e.dynamic_activations = checked_dynamic_activations(entry, e.activations, module);
    map.emplace(module, std::move(e));
  }
  return map;
}

std::string dump(const QuantizationMap& map) {
  json root = json::object();
  for (const auto& [module, e] : map) {
    if (!is_known_qtype_name(e.weights)) fail("module \"" + module + "\": unknown weights qtype \"" + e.weights + "\"");
    if (!is_known_qtype_name(e.activations)) {
      fail("module \"" + module + "\": unknown activations qtype \"" + e.activations + "\"");
    }
    json entry = json{{"weights", e.weights}, {"activations", e.activations}};
    if (e.group_size) {
      check_group_size(*e.group_size, e.weights, module);
      entry["group_size"] = *e.group_size;
    }
    if (e.quantize_output) entry["quantize_output"] = *e.quantize_output;
    if (e.dynamic_activations) {
      check_dynamic_activations(*e.dynamic_activations, e.activations, module);
      entry["dynamic_activations"] = *e.dynamic_activations;
    }
    root[module] = std::move(entry);
  }
  try {
    return root.dump(4);
  } catch (const json::exception& e) {
    fail(std::string("cannot serialize: ") + e.what());
  }
}

QuantizationMap read(const std::string& path) {
  const safetensors::MappedFile file = safetensors::MappedFile::open(path);  // errors name the path
  try {
    return parse(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()));
  } catch (const MapError& e) {
    throw MapError(path + ": " + e.what());
  }
}

void write(const std::string& path, const QuantizationMap& map) {
  safetensors::write_file_atomic(path, dump(map) + "\n");
}

}  // namespace quanto::qmap
