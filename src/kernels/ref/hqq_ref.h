// Half-Quadratic Quantization (HQQ, Badri & Shaji 2023) of affine 2/4-bit parameters.
//
// For each group x[0 .. group_size) the kernel refines the (scale s, float shift h) of the codes
// q = clamp(round((x + h) / s), 0, code_max), dequantized as q * s - h (quanto's and
// optimum-quanto's convention; the paper's zero-point is z = h / s). One iteration, from the
// current (s, h):
//   r  = q * s - h                           the reconstruction
//   e  = shrink_lp(x - r)                    sign(d) * relu(|d| - |d|^(p-1) / beta), the sparse
//                                            outlier part of the error (lp "norm", p < 1)
//   h  = mean(q * s - (x - e))               the closed-form shift for the quadratic subproblem
//   (optimize_scale: s and h from the least-squares fit of x - e by q * s - h instead)
//   beta *= kappa
// The parameters kept are those of lowest squared error sum((x - r)^2) among the start (the
// caller's, normally min/max) and every iterate, so a group never ends worse than it started in
// the l2 sense; a group stops as soon as its error stops decreasing (early stop) or after
// `iters` updates. Candidate parameters are rounded to `precision` (the dtype the op returns
// them in) before they are evaluated, so the error measured is the error the caller will get.
//
// The kernel works on one range of groups, allocates nothing and creates no threads.
// |d|^(p-1) uses a polynomial exp2/log2 (relative error below 1e-6): HQQ only needs the
// shrinkage threshold approximately; tests compare with a plain std::pow loop.
#pragma once

#include <cstdint>

namespace quanto::kernels {

enum class ParamPrecision : int { f32 = 0, bf16 = 1, fp16 = 2 };

struct HqqConfig {
  int32_t code_max;        // 2^bits - 1
  int32_t iters = 20;      // maximum number of updates
  float p = 0.7f;          // lp exponent, 0 < p <= 1
  float beta = 10.0f;      // initial half-quadratic weight
  float kappa = 1.01f;     // beta growth per iteration, >= 1
  bool optimize_scale = false;
  ParamPrecision precision = ParamPrecision::f32;
};

// x: n_groups rows of group_size float values, row-major (group g at x + g * group_size).
// scale/shift: n_groups values each, in: the start (scale > 0, finite), out: the best found.
// sq_error (nullable): the best sum of squared errors per group.
void hqq_refine_ref(const float* x, int64_t n_groups, int64_t group_size, const HqqConfig& config,
                    float* scale, float* shift, float* sq_error);

// Rounds a parameter to `precision`, as the op's output dtype will store it.
float round_param(float v, ParamPrecision precision);

}  // namespace quanto::kernels
