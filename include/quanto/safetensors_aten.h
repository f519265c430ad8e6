// The safetensors container for ATen tensors: zero-copy loading from a memory-mapped file and
// saving tensors from any device. Errors are c10::Error (TORCH_CHECK) naming the path.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <quanto/safetensors.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace quanto::safetensors {

// An open, validated, memory-mapped file. Copies are cheap (they share the mapping); the
// mapping lives as long as any copy or any tensor returned by tensor().
class File {
 public:
  // Maps and validates `path`. Errors name the path and the rule broken.
  static File open(const std::string& path);

  const std::string& path() const;
  const Header& header() const;
  const std::map<std::string, std::string>& metadata() const;
  bool contains(const std::string& name) const;
  std::vector<std::string> names() const;  // in data-offset order

  // A CPU tensor viewing the mapping (read-only memory: do not write to it; clone() first).
  // Copied instead when the data is not aligned for its dtype. Errors name the tensor and path.
  at::Tensor tensor(const std::string& name) const;

 private:
  struct State;
  std::shared_ptr<const State> state_;
};

c10::ScalarType to_scalar_type(Dtype dtype);
// Throws c10::Error for a ScalarType safetensors cannot store.
Dtype from_scalar_type(c10::ScalarType type);

// Saves tensors (any device; non-contiguous ones are made contiguous on CPU) atomically.
// Throws c10::Error naming the path on duplicate names, unsupported dtypes or I/O errors.
void save(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
          const std::map<std::string, std::string>& metadata = {});

}  // namespace quanto::safetensors
