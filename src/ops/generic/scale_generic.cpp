// Generic: absmax_scale, minmax_scale_shift, shift_to_zeropoint. Reductions (amax, amin) are
// exact in any order, so these match the CPU kernels bit for bit.
#include <ATen/TensorOperators.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/where.h>
#include <torch/library.h>

#include <vector>

#include "ops/cpu/cpu_utils.h"
#include "ops/generic/generic_ops.h"
#include "ops/generic/generic_utils.h"
#include "ops/specs.h"

namespace quanto::ops::generic {
namespace {

void check_finite_range(const char* op, const at::Tensor& r) {
  TORCH_CHECK_VALUE(at::isfinite(r).all().item<bool>(), op, ": x contains NaN or inf, so its range is undefined");
}

// A parameter computed from finite values can still overflow a half-precision dtype.
void check_no_overflow(const char* op, const at::Tensor& t, c10::ScalarType dtype) {
  TORCH_CHECK_VALUE(at::isfinite(t).all().item<bool>(), op, ": the range of x overflows ", dtype,
                    "; quantize it in float32");
}

// x as a 2-D block with one group per row (axis 0) or per column (axis -1), the dimension to
// reduce over, and the shapes of the 2/4-bit scale and shift (the same checks for every optimizer).
struct Groups {
  at::Tensor x2;
  int64_t reduce_dim;
  const QType* q;
  std::vector<int64_t> scale_sizes, shift_sizes;
};

Groups affine_groups(const char* op, const at::Tensor& x, c10::string_view qtype, int64_t axis,
                     std::optional<int64_t> group_size) {
  Grouping g;
  const auto [scale_spec, shift_spec] = minmax_scale_shift_spec(x, qtype, axis, group_size, &g);
  // The grouped block is a plain reshape/permute (cpu_utils), valid on any device.
  return {cpu::grouped_2d(x, g), g.axis == 0 ? 1 : 0, &checked_qtype(op, qtype), concrete(scale_spec.sizes),
          concrete(shift_spec.sizes)};
}

}  // namespace

at::Tensor absmax_scale(const at::Tensor& x, c10::string_view qtype, std::optional<int64_t> axis) {
  NonDifferentiable guard;
  const char* op = "absmax_scale";
  const TensorSpec spec = absmax_scale_spec(x, qtype, axis);
  const QType& q = checked_qtype(op, qtype);
  at::Tensor amax;
  if (!axis) {
    amax = x.abs().amax();
  } else {
    const int64_t kept = checked_axis(op, x.dim(), *axis) == 0 ? 0 : x.dim() - 1;
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < x.dim(); ++d)
      if (d != kept) dims.push_back(d);
    amax = x.abs().amax(dims, /*keepdim=*/true);
  }
  check_finite_range(op, amax);
  const at::Tensor scale = round_to(div_exact(amax.to(at::kFloat), q.qmax), x.scalar_type());
  return at::where(scale == 0, 1.0, scale).to(x.scalar_type()).reshape(concrete(spec.sizes));
}

std::tuple<at::Tensor, at::Tensor> minmax_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                      std::optional<int64_t> group_size) {
  NonDifferentiable guard;
  const char* op = "minmax_scale_shift";
  const Groups g = affine_groups(op, x, qtype, axis, group_size);
  const at::Tensor mn = g.x2.amin(g.reduce_dim).to(at::kFloat), mx = g.x2.amax(g.reduce_dim).to(at::kFloat);
  check_finite_range(op, mn);
  check_finite_range(op, mx);
  auto [scale, shift] = minmax_params(mn, mx, (1 << g.q->bits) - 1, x.scalar_type());
  check_no_overflow(op, scale, x.scalar_type());  // max - min can overflow float16 even when both are finite
  return {scale.reshape(g.scale_sizes), shift.reshape(g.shift_sizes)};
}

std::tuple<at::Tensor, at::Tensor> symmetric_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                         std::optional<int64_t> group_size) {
  NonDifferentiable guard;
  const char* op = "symmetric_scale_shift";
  const Groups g = affine_groups(op, x, qtype, axis, group_size);  // 2/4-bit only, as min/max
  const at::Tensor amax = g.x2.abs().amax(g.reduce_dim).to(at::kFloat);
  check_finite_range(op, amax);
  const int64_t zero_point = int64_t{1} << (g.q->bits - 1);
  // amax / (2^(bits-1) - 1/2): the largest magnitude lands half a step past the positive end and is
  // clamped there, so no value is off by more than half a step and the whole code range is used.
  at::Tensor scale = round_to(div_exact(amax, static_cast<double>(zero_point) - 0.5), x.scalar_type());
  scale = at::where(scale == 0, 1.0, scale).to(x.scalar_type());
  // A power-of-two multiple: exact in every float dtype, so shift / scale is exactly the zero-point.
  const at::Tensor shift = scale * static_cast<double>(zero_point);
  check_no_overflow(op, shift, x.scalar_type());
  return {scale.reshape(g.scale_sizes), shift.reshape(g.shift_sizes)};
}

at::Tensor shift_to_zeropoint(const at::Tensor& scale, const at::Tensor& shift, c10::string_view qtype) {
  NonDifferentiable guard;
  const char* op = "shift_to_zeropoint";
  const TensorSpec spec = shift_to_zeropoint_spec(scale, shift, qtype);
  const QType& q = checked_qtype(op, qtype);
  const auto dtype = c10::promoteTypes(scale.scalar_type(), shift.scalar_type());
  const at::Tensor s = scale.to(dtype).to(at::kFloat), h = shift.to(dtype).to(at::kFloat);
  return round_clamp(quotient(h, s, dtype), 0, (1 << q.bits) - 1).to(at::kByte).reshape(concrete(spec.sizes));
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) {
  m.impl("absmax_scale", &absmax_scale);
  m.impl("minmax_scale_shift", &minmax_scale_shift);
  m.impl("shift_to_zeropoint", &shift_to_zeropoint);
  // One implementation for every device (CPU included): an amax per group is all it computes.
  m.impl("symmetric_scale_shift", &symmetric_scale_shift);
}

}  // namespace quanto::ops::generic
