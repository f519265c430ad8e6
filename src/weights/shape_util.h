// Small shape helpers shared by the weights layer's translation units.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

namespace quanto::weights_detail {

inline std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

inline int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

}  // namespace quanto::weights_detail
