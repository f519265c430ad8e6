// bf16 -> float widening over vector traits V (vec_avx2.h, vec_avx512.h): one piece for the
// convert kernels' from_bf16 (the op layer's float copies of a bf16 model's scales, shifts and
// biases) and the GEMVs' block-by-block conversions of parameters they read in place.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace quanto::kernels::simd {

// n bf16 values as floats (exact: each widened and shifted into the upper half of its lane).
template <class V>
void bf16_to_floats(const bf16* p, int64_t n, float* out) {
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) V::store(out + i, V::load(p + i));
  for (; i < n; ++i) out[i] = to_float(p[i]);
}

}  // namespace quanto::kernels::simd
