// CPU: hqq_scale_shift. Starts from min/max (the same parameters minmax_scale_shift returns),
// then refines every group with the HQQ kernel, groups split over the intra-op thread pool.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <quanto/ops.h>

#include "kernels/dispatch.h"
#include "kernels/ref/hqq_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

kernels::ParamPrecision precision_of(c10::ScalarType d) {
  switch (d) {
    case at::kBFloat16:
      return kernels::ParamPrecision::bf16;
    case at::kHalf:
      return kernels::ParamPrecision::fp16;
    default:
      return kernels::ParamPrecision::f32;
  }
}

std::tuple<at::Tensor, at::Tensor> hqq_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                   std::optional<int64_t> group_size, int64_t iters, double p,
                                                   double beta, double kappa, bool optimize_scale) {
  const char* op = "hqq_scale_shift";
  Grouping g;
  const auto [scale_spec, shift_spec] = hqq_scale_shift_spec(x, qtype, axis, group_size, iters, p, beta, kappa, &g);
  const QType& q = checked_qtype(op, qtype);
  // The start: min/max, with its checks (NaN/inf in x, a range that overflows x's dtype).
  const auto [scale0, shift0] = quanto::ops::minmax_scale_shift(x, qtype, axis, group_size);
  // Groups as contiguous float32 rows: the grouped block's rows (axis 0) or columns (axis -1).
  at::Tensor x2 = grouped_2d(x, g).to(at::kFloat);
  if (g.axis != 0) x2 = x2.t();
  x2 = x2.contiguous();
  const int64_t n_groups = x2.size(0), gs = x2.size(1);
  at::Tensor scale = scale0.to(at::kFloat).contiguous().clone();
  at::Tensor shift = shift0.to(at::kFloat).contiguous().clone();

  kernels::HqqConfig config;
  config.code_max = (1 << q.bits) - 1;
  config.iters = static_cast<int32_t>(iters);
  config.p = static_cast<float>(p);
  config.beta = static_cast<float>(beta);
  config.kappa = static_cast<float>(kappa);
  config.optimize_scale = optimize_scale;
  config.precision = precision_of(x.scalar_type());

  const float* xd = data_as<const float>(x2);
  float* sd = data_as<float>(scale);
  float* hd = data_as<float>(shift);
  // A group costs about (iters + 1) passes: aim for ~64K element-passes per task.
  const int64_t grain = std::max<int64_t>(1, 65536 / (gs * (iters + 1)));
  const kernels::HqqRefineFn hqq = kernels::kernels().hqq_refine;
  parallel_rows(n_groups, grain, [&](int64_t b, int64_t e) {
    hqq(xd + b * gs, e - b, gs, config, sd + b, hd + b, nullptr);
  });
  // Exact: the kernel rounds every candidate to x's dtype.
  return {scale.to(x.scalar_type()).view(concrete(scale_spec.sizes)),
          shift.to(x.scalar_type()).view(concrete(shift_spec.sizes))};
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  // Each entry runs the device-generic implementation instead while the generic path is forced.
  using generic::CpuOrGeneric;
  m.impl("hqq_scale_shift", &CpuOrGeneric<&hqq_scale_shift, &generic::hqq_scale_shift>::call);
}

}  // namespace quanto::ops::cpu
