// Shared helpers for the kernel tests: seeded data and the ISAs this CPU can run.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/numeric.h"

namespace quanto::kernels::testing {

// Remainder-heavy sizes: below, at and just past the 8- and 16-lane widths, and large odd K.
inline const std::vector<int64_t> kCols{1, 7, 8, 9, 15, 16, 17, 33, 64, 257};

template <typename T>
std::vector<T> random_values(size_t n, uint32_t seed, float scale = 3.0f) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<T> out(n);
  for (auto& v : out) v = from_float<T>(dist(gen));
  return out;
}

// Values that hit every saturation and policy path: ±max of the format, ±inf, NaN, zeros,
// halfway points that exercise ties-to-even.
template <typename T>
void sprinkle_specials(std::vector<T>& v) {
  const float specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, std::nanf(""), 2.5f, -2.5f, 3.5f, 0.5f,
                            1e30f, -1e30f, 65504.0f, -65504.0f};
  for (size_t i = 0; i < v.size(); i += 5) v[i] = from_float<T>(specials[(i / 5) % std::size(specials)]);
}

// bf16 values as float (exact), for the float references of bf16-input kernels.
inline std::vector<float> as_floats(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_float(v[i]);
  return out;
}

inline std::string isa_label(CpuIsa isa) { return isa_name(isa); }

template <typename T>
bool same_bits(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

}  // namespace quanto::kernels::testing
