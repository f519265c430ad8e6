// Generic: hqq_scale_shift. The HQQ group loop of kernels/ref/hqq_impl.h run on every group at
// once: the same updates, constants, candidate rounding and early stop, with a mask of the groups
// still iterating. Sums are float32 like the CPU's (in another order) and |d|^(p - 1) is exact
// here where the CPU uses a polynomial, so results agree within float rounding.
#include <ATen/TensorOperators.h>
#include <ATen/ops/copysign.h>
#include <ATen/ops/exp2.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/log2.h>
#include <ATen/ops/where.h>
#include <torch/library.h>

#include <limits>

#include "ops/cpu/cpu_utils.h"
#include "ops/generic/generic_ops.h"
#include "ops/generic/generic_utils.h"
#include "ops/specs.h"

namespace quanto::ops::generic {
namespace {

// Per-group state; scale/shift are float32 [groups, 1] so they broadcast over x [groups, gs].
struct Candidate {
  at::Tensor scale, shift;
};

at::Tensor codes_of(const at::Tensor& x, const Candidate& c, double code_max) {
  // (x + h) * (1 / s), NaN -> 0, clamped, rounded half to even: quantize_code.
  return ((x + c.shift) * c.scale.reciprocal()).nan_to_num(0.0).clamp(0.0, code_max).round();
}

at::Tensor sq_error(const at::Tensor& x, const at::Tensor& q, const Candidate& c) {
  const at::Tensor d = x - (q * c.scale - c.shift);
  return (d * d).sum(1, /*keepdim=*/true);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> hqq_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                   std::optional<int64_t> group_size, int64_t iters, double p,
                                                   double beta, double kappa, bool optimize_scale) {
  NonDifferentiable guard;
  const char* op = "hqq_scale_shift";
  Grouping g;
  const auto [scale_spec, shift_spec] = hqq_scale_shift_spec(x, qtype, axis, group_size, iters, p, beta, kappa, &g);
  const QType& q = checked_qtype(op, qtype);
  const c10::ScalarType dtype = x.scalar_type(), wide = wide_float(x.device());
  // The start: min/max, with its checks (NaN/inf in x, a range that overflows x's dtype).
  const auto [scale0, shift0] = minmax_scale_shift(x, qtype, axis, group_size);
  // Groups as float32 rows: the grouped block's rows (axis 0) or columns (axis -1).
  at::Tensor xg = cpu::grouped_2d(x, g).to(at::kFloat);
  if (g.axis != 0) xg = xg.t();
  xg = xg.contiguous();
  const double code_max = (1 << q.bits) - 1, n = static_cast<double>(xg.size(1));
  // The kernel's float parameters: p - 1 and each iteration's 1 / beta are float arithmetic.
  const float pm1 = static_cast<float>(p) - 1.0f, kappa_f = static_cast<float>(kappa);
  float beta_f = static_cast<float>(beta);

  Candidate cur{scale0.to(at::kFloat).reshape({-1, 1}), shift0.to(at::kFloat).reshape({-1, 1})};
  Candidate best{cur.scale.clone(), cur.shift.clone()};
  at::Tensor best_err = at::full({xg.size(0), 1}, std::numeric_limits<float>::infinity(), xg.options());
  at::Tensor active = at::full({xg.size(0), 1}, true, xg.options().dtype(at::kBool));
  auto keep_if = [&](const at::Tensor& better, const at::Tensor& err) {
    best_err = at::where(better, err, best_err);
    best.scale = at::where(better, cur.scale, best.scale);
    best.shift = at::where(better, cur.shift, best.shift);
  };
  for (int64_t it = 0;; ++it) {
    const at::Tensor qc = codes_of(xg, cur, code_max);
    if (it == iters) {  // the last candidate gets an error-only pass
      const at::Tensor err = sq_error(xg, qc, cur);
      keep_if(active & (err < best_err), err);
      break;
    }
    const at::Tensor d = xg - (qc * cur.scale - cur.shift);
    // The lp shrinkage sign(d) * relu(|d| - |d|^(p - 1) / beta), 2^y clamped as in the kernel.
    const at::Tensor a = d.abs();
    const at::Tensor thr = at::exp2((a.clamp_min(1e-30).log2() * pm1).clamp(-126.0, 126.0)) * (1.0f / beta_f);
    const at::Tensor t = xg - at::copysign((a - thr).clamp_min(0.0), d);
    const at::Tensor err = (d * d).sum(1, true);
    // Early stop: a group whose error stopped decreasing keeps its best and leaves the loop.
    active = active & (err < best_err);
    keep_if(active, err);
    const at::Tensor sum_q = qc.sum(1, true).to(wide), sum_t = t.sum(1, true).to(wide);
    at::Tensor new_s = cur.scale;
    at::Tensor new_h = div_exact(sum_q * cur.scale.to(wide) - sum_t, n).to(at::kFloat);  // mean(q * s - t)
    if (optimize_scale) {
      // Least squares t ~ a * q + b: s = a, h = -b, for a positive, well-conditioned slope only.
      const at::Tensor sum_qq = (qc * qc).sum(1, true).to(wide), sum_qt = (qc * t).sum(1, true).to(wide);
      const at::Tensor den = sum_qq * n - sum_q * sum_q;
      const at::Tensor slope = (sum_qt * n - sum_q * sum_t) / den;
      const at::Tensor intercept = div_exact(sum_t - slope * sum_q, n);
      const at::Tensor fit = (den > 1e-6 * n * n) & (slope > 0) & at::isfinite(slope) & at::isfinite(intercept);
      new_s = at::where(fit, slope.to(at::kFloat), new_s);
      new_h = at::where(fit, intercept.neg().to(at::kFloat), new_h);
    }
    new_s = round_to(new_s, dtype);
    new_h = round_to(new_h, dtype);
    active = active & (new_s > 0) & at::isfinite(new_s) & at::isfinite(new_h);
    cur.scale = at::where(active, new_s, cur.scale);
    cur.shift = at::where(active, new_h, cur.shift);
    beta_f *= kappa_f;
    if (!active.any().item<bool>()) break;
  }
  // Exact: every candidate was rounded to x's dtype.
  return {best.scale.to(dtype).reshape(concrete(scale_spec.sizes)),
          best.shift.to(dtype).reshape(concrete(shift_spec.sizes))};
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) { m.impl("hqq_scale_shift", &hqq_scale_shift); }

}  // namespace quanto::ops::generic
