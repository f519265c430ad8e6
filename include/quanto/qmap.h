// The quantization map (quanto_qmap.json): module name -> weights / activations qtype names.
// Torch-free; the JSON library stays inside the implementation.
#pragma once

#include <map>
#include <stdexcept>
#include <string>
#include <string_view>

namespace quanto::qmap {

struct Entry {
  std::string weights;      // a qtype name ("qint8", "qint4", "qfloat8", ...) or "none"
  std::string activations;  // a qtype name or "none"
  bool operator==(const Entry& o) const { return weights == o.weights && activations == o.activations; }
  bool operator!=(const Entry& o) const { return !(*this == o); }
};
using QuantizationMap = std::map<std::string, Entry>;  // module name -> entry

// A malformed map: not JSON, not an object of objects, a missing/extra field, a non-string
// value, an unknown qtype name, a duplicate module name. what() says which and where.
class MapError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// True for the qtype names optimum-quanto 0.2.7 writes (aliases included) and "none".
bool is_known_qtype_name(std::string_view name);

// Parses and validates a map. Throws MapError.
QuantizationMap parse(std::string_view json);
// Serializes a map (keys sorted, 2-space indent). Throws MapError for unknown qtype names.
std::string dump(const QuantizationMap& map);

// Reads and parses `path`; errors name the path. Throws MapError / std::runtime_error.
QuantizationMap read(const std::string& path);
// Writes `path` atomically (beside, fsync, rename, fsync folder).
void write(const std::string& path, const QuantizationMap& map);

}  // namespace quanto::qmap
