// Branch-free log2 / exp2 polynomials on numeric.h's bit casts, for loops that `omp simd` must
// vectorise (HQQ's shrinkage threshold, attention's softmax): a call to std::exp or std::pow
// would keep them scalar. Relative error below 1e-6 on the ranges stated.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace quanto::kernels {

// log2(a) for a normal, positive a: exponent + 2/ln2 * atanh((m - 1) / (m + 1)), m in [1, 2).
static inline float log2_pos(float a) {
  const uint32_t u = float_bits(a);
  const float e = static_cast<float>(static_cast<int32_t>(u >> 23) - 127);
  const float m = bits_float((u & 0x007FFFFFu) | 0x3F800000u);
  const float z = (m - 1.0f) / (m + 1.0f);
  const float z2 = z * z;
  const float series = z * (1.0f + z2 * (1.0f / 3 + z2 * (1.0f / 5 + z2 * (1.0f / 7 + z2 * (1.0f / 9)))));
  return e + 2.8853900817779268f * series;  // 2 / ln 2
}

// 2^y for y in [-126, 126]: 2^round(y) from the exponent bits times a Taylor series of 2^f.
static inline float exp2_clamped(float y) {
  y = y < -126.0f ? -126.0f : y;
  y = y > 126.0f ? 126.0f : y;
  const float big = y + 12582912.0f;  // round(y) lands in the low mantissa bits, |y| < 2^22
  const float n = big - 12582912.0f;
  const int32_t k = static_cast<int32_t>(float_bits(big) - float_bits(12582912.0f));
  const float f = (y - n) * 0.6931471805599453f;  // |f| <= ln2 / 2
  const float poly =
      1.0f + f * (1.0f + f * (0.5f + f * (1.0f / 6 + f * (1.0f / 24 + f * (1.0f / 120 + f * (1.0f / 720))))));
  return poly * bits_float(static_cast<uint32_t>(k + 127) << 23);
}

// e^x for x >= -87 (smaller x give 2^-126 instead of 0; callers skip what must be exactly 0).
static inline float exp_clamped(float x) { return exp2_clamped(x * 1.4426950408889634f); }

}  // namespace quanto::kernels
