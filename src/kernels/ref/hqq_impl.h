// The HQQ group loop, written once and compiled by each ISA translation unit with its own
// flags (hqq_ref.cpp: baseline x86-64; x86/hqq_avx2.cpp, x86/hqq_avx512.cpp). The loops are
// `omp simd` reductions, built with -fopenmp-simd -fno-trapping-math (vectorised, no OpenMP
// runtime, no fast-math: results are IEEE; without -fno-trapping-math GCC keeps the selects as
// branches and the loop runs scalar, 8x slower). Everything is `static inline` so no wider-ISA copy can leak into another TU
// through the linker. Contract: kernels/ref/hqq_ref.h.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/hqq_ref.h"
#include "kernels/ref/poly_math.h"

namespace quanto::kernels::hqq_detail {

// sign(d) * relu(|d| - |d|^(p - 1) / beta); 0 and subnormal |d| give a huge threshold (e = 0).
static inline float shrink_lp(float d, float pm1, float inv_beta) {
  const float a = std::fabs(d);
  const float thr = exp2_clamped(pm1 * log2_pos(a < 1e-30f ? 1e-30f : a)) * inv_beta;
  const float diff = a - thr;
  const float mag = diff > 0.0f ? diff : 0.0f;
  return bits_float(float_bits(mag) | (float_bits(d) & 0x80000000u));
}

static inline float quantize_code(float x, float shift, float inv_scale, float code_max) {
  float v = (x + shift) * inv_scale;
  v = v > 0.0f ? v : 0.0f;
  v = v < code_max ? v : code_max;
  return (v + 12582912.0f) - 12582912.0f;  // ties to even, like std::nearbyint
}

// Squared error of (s, h) on one group.
static inline float group_sq_error(const float* x, int64_t n, float s, float h, float code_max) {
  const float inv = 1.0f / s;
  float err = 0.0f;
#pragma omp simd reduction(+ : err)
  for (int64_t i = 0; i < n; ++i) {
    const float d = x[i] - (quantize_code(x[i], h, inv, code_max) * s - h);
    err += d * d;
  }
  return err;
}


static inline float round_param_impl(float v, ParamPrecision precision) {
  switch (precision) {
    case ParamPrecision::bf16:
      return round_to(v, static_cast<const bf16*>(nullptr));
    case ParamPrecision::fp16:
      return round_to(v, static_cast<const fp16*>(nullptr));
    default:
      return v;
  }
}

static inline void hqq_refine_impl(const float* x, int64_t n_groups, int64_t group_size, const HqqConfig& config,
                                   float* scale, float* shift, float* sq_error) {
  const float code_max = static_cast<float>(config.code_max);
  const float pm1 = config.p - 1.0f;
  const double n = static_cast<double>(group_size);
  for (int64_t g = 0; g < n_groups; ++g) {
    const float* xg = x + g * group_size;
    float s = scale[g], h = shift[g], beta = config.beta;
    float best_s = s, best_h = h, best_err = INFINITY;
    // Each pass measures the error of (s, h) and gathers the sums of the next update, so an
    // iteration costs one pass; the last candidate gets an error-only pass.
    for (int32_t it = 0;; ++it) {
      if (it == config.iters) {
        const float err = group_sq_error(xg, group_size, s, h, code_max);
        if (err < best_err) best_err = err, best_s = s, best_h = h;
        break;
      }
      const float inv = 1.0f / s, inv_beta = 1.0f / beta;
      float err = 0.0f, sum_q = 0.0f, sum_qq = 0.0f, sum_t = 0.0f, sum_qt = 0.0f;
#pragma omp simd reduction(+ : err, sum_q, sum_qq, sum_t, sum_qt)
      for (int64_t i = 0; i < group_size; ++i) {
        const float q = quantize_code(xg[i], h, inv, code_max);
        const float d = xg[i] - (q * s - h);
        const float t = xg[i] - shrink_lp(d, pm1, inv_beta);  // x - e
        err += d * d;
        sum_q += q;
        sum_qq += q * q;
        sum_t += t;
        sum_qt += q * t;
      }
      if (!(err < best_err)) break;  // early stop: the error stopped decreasing
      best_err = err, best_s = s, best_h = h;
      float new_s = s;
      float new_h = static_cast<float>((static_cast<double>(sum_q) * s - sum_t) / n);  // mean(q * s - t)
      if (config.optimize_scale) {
        // Least squares t ~ a * q + b: s = a, h = -b (only for a positive, well-conditioned slope).
        const double den = n * sum_qq - static_cast<double>(sum_q) * sum_q;
        if (den > 1e-6 * n * n) {
          const double a = (n * sum_qt - static_cast<double>(sum_q) * sum_t) / den;
          const double b = (sum_t - a * sum_q) / n;
          if (a > 0.0 && std::isfinite(a) && std::isfinite(b)) {
            new_s = static_cast<float>(a);
            new_h = static_cast<float>(-b);
          }
        }
      }
      new_s = round_param_impl(new_s, config.precision);
      new_h = round_param_impl(new_h, config.precision);
      if (!(new_s > 0.0f) || !std::isfinite(new_s) || !std::isfinite(new_h)) break;
      s = new_s, h = new_h;
      beta *= config.kappa;
    }
    scale[g] = best_s;
    shift[g] = best_h;
    if (sq_error) sq_error[g] = best_err;
  }
}

}  // namespace quanto::kernels::hqq_detail
