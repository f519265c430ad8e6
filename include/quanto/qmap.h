// The quantization map (quanto_qmap.json): module name -> weights / activations qtype names.
// Torch-free; the JSON library stays inside the implementation.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace quanto::qmap {

struct Entry {
  std::string weights;      // a qtype name ("qint8", "qint4", "qfloat8", ...) or "none"
  std::string activations;  // a qtype name or "none"
  // Optional entries quanto (Python, C++ and the CLI) writes and optimum-quanto ignores:
  // "group_size": N, a positive integer, only for qint2/qint4 weights whose group size is not
  // docs/format.md's default (null reads as absent: the default rule); "quantize_output": false for
  // a layer whose output Calibration stopped quantizing (absent: the output is quantized).
  std::optional<int64_t> group_size;
  std::optional<bool> quantize_output;
  // "dynamic_activations": "<qtype>" (qint8 or a float8 qtype) for a layer whose inputs are
  // quantized per token at run time; "activations" is then "none" (no static scales), so a reader
  // that ignores the entry (optimum-quanto) runs the layer weight-only. null reads as absent.
  std::optional<std::string> dynamic_activations;

  Entry() = default;
  Entry(std::string w, std::string a, std::optional<int64_t> gs = std::nullopt,
        std::optional<bool> qo = std::nullopt, std::optional<std::string> dyn = std::nullopt)
      : weights(std::move(w)), activations(std::move(a)), group_size(gs), quantize_output(qo),
        dynamic_activations(std::move(dyn)) {}
  bool operator==(const Entry& o) const {
    return weights == o.weights && activations == o.activations && group_size == o.group_size &&
           quantize_output == o.quantize_output && dynamic_activations == o.dynamic_activations;
  }
  bool operator!=(const Entry& o) const { return !(*this == o); }
};
using QuantizationMap = std::map<std::string, Entry>;  // module name -> entry

// A malformed map: not JSON, not an object of objects, a missing or unknown field, a non-string
// qtype, an unknown qtype name, a duplicate module name, a "group_size" that is not a positive
// integer or is given for weights other than qint2/qint4, a "quantize_output" that is not a
// boolean, a "dynamic_activations" that is not an 8-bit activation qtype name (qint8, qfloat8*)
// or is given with "activations" other than "none". what() says which and where.
class MapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// True for the qtype names optimum-quanto 0.2.7 writes (aliases included) and "none".
bool is_known_qtype_name(std::string_view name);

// Parses and validates a map. Throws MapError.
QuantizationMap parse(std::string_view json);
// Serializes a map (keys sorted, 4-space indent like optimum-quanto; the optional fields only
// when set). Throws MapError for what parse would reject.
std::string dump(const QuantizationMap& map);

// Reads and parses `path`; errors name the path. Throws MapError / std::runtime_error.
QuantizationMap read(const std::string& path);
// Writes `path` atomically (beside, fsync, rename, fsync folder).
void write(const std::string& path, const QuantizationMap& map);

}  // namespace quanto::qmap
