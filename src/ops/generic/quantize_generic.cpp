// Generic: symmetric_quantize / symmetric_dequantize / affine_quantize / affine_dequantize, with
// quantize_ref.h's arithmetic (each intermediate rounded to the computation dtype, as PyTorch
// would) so the codes match the CPU kernels bit for bit.
#include <ATen/TensorOperators.h>
#include <ATen/ops/result_type.h>
#include <torch/library.h>

#include <quanto/ops.h>

#include "ops/cpu/cpu_utils.h"
#include "ops/generic/generic_ops.h"
#include "ops/generic/generic_utils.h"
#include "ops/specs.h"

namespace quanto::ops::generic {
namespace {

// Scales and shifts as float32 (exact for every float dtype) shaped to broadcast over the
// grouped [rows, cols] block: one per row (axis 0) or one per column (axis -1).
at::Tensor block_param(const at::Tensor& p, const Grouping& g) {
  const at::Tensor f = p.to(at::kFloat);
  return g.axis == 0 ? f.reshape({-1, 1}) : f.reshape({1, -1});
}

}  // namespace

at::Tensor symmetric_quantize(const at::Tensor& x, const at::Tensor& scale, c10::string_view qtype,
                              std::optional<int64_t> axis) {
  NonDifferentiable guard;
  const char* op = "symmetric_quantize";
  const TensorSpec spec = symmetric_quantize_spec(x, scale, qtype, axis);
  const QType& q = checked_qtype(op, qtype);
  check_device_dtype(op, x.device(), spec.dtype);
  // PyTorch divides in the promoted dtype; a 0-dim scale takes x's dtype but keeps its full value.
  const auto dtype = at::result_type(x, scale);
  at::Tensor s = scale.to(at::kFloat);
  if (!axis) s = s.reshape({});  // per-axis scales already broadcast along their axis
  const at::Tensor v = quotient(x.to(dtype).to(at::kFloat), s, dtype);
  if (!q.is_floating_point) return round_clamp(v, q.qmin, q.qmax).to(at::kChar).contiguous();
  // Clamping keeps NaN, which encodes as the format's NaN.
  return v.clamp(q.qmin, q.qmax).to(q.dtype).contiguous();
}

at::Tensor symmetric_dequantize(const at::Tensor& data, const at::Tensor& scale) {
  NonDifferentiable guard;
  const char* op = "symmetric_dequantize";
  ParamAxis layout;
  symmetric_dequantize_spec(data, scale, &layout);
  check_device_dtype(op, data.device(), data.scalar_type());
  at::Tensor s = scale.to(at::kFloat);
  if (layout == ParamAxis::per_tensor) s = s.reshape({});
  return (data.to(at::kFloat) * s).to(scale.scalar_type()).contiguous();
}

at::Tensor affine_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           c10::string_view qtype, int64_t axis, std::optional<int64_t> group_size) {
  NonDifferentiable guard;
  const char* op = "affine_quantize";
  Grouping g;
  const TensorSpec spec = affine_quantize_spec(x, scale, shift, qtype, axis, group_size, &g);
  const QType& q = checked_qtype(op, qtype);
  const auto dtype = affine_compute_dtype(x, scale, shift);
  const double code_max = (1 << q.bits) - 1;
  const at::Tensor x2 = cpu::grouped_2d(x.to(dtype), g).to(at::kFloat);
  const at::Tensor s = block_param(scale, g), h = block_param(shift, g);
  at::Tensor codes;
  if (shift.scalar_type() == at::kByte) {
    // Beyond ±512 a code saturates whatever the zero-point (<= 255): clamping there first is exact.
    codes = (round_clamp(quotient(x2, s, dtype), -512, 512) + h).clamp(0, code_max);
  } else {
    codes = round_clamp(quotient(round_to(x2 + h, dtype), s, dtype), 0, code_max);
  }
  return codes.to(at::kByte).reshape(concrete(spec.sizes)).contiguous();
}

at::Tensor affine_dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             c10::SymIntArrayRef shape, int64_t axis, std::optional<int64_t> group_size) {
  NonDifferentiable guard;
  Grouping g;
  const TensorSpec spec = affine_dequantize_spec(codes, scale, shift, shape, axis, group_size, &g);
  const at::Tensor c = codes.reshape({g.rows.expect_int(), g.cols.expect_int()}).to(at::kFloat);
  const at::Tensor s = block_param(scale, g), h = block_param(shift, g);
  const at::Tensor y = shift.scalar_type() == at::kByte ? (c - h) * s : round_to(c * s, spec.dtype) - h;
  return cpu::ungrouped(y.to(spec.dtype), g, concrete(spec.sizes)).contiguous();
}

std::tuple<at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x, c10::string_view qtype) {
  quantize_per_token_spec(x, qtype);
  // One row per token: the scale op and the quantize op along axis 0 of a 2-d view.
  const c10::SymInt k = x.sym_size(-1);
  const at::Tensor rows = x.reshape_symint({-1, k});
  const at::Tensor scale = ops::absmax_scale(rows, qtype, 0);  // [tokens, 1]
  const at::Tensor data = ops::symmetric_quantize(rows, scale, qtype, 0);
  std::vector<c10::SymInt> scale_shape(x.sym_sizes().begin(), x.sym_sizes().end());
  scale_shape.back() = 1;
  return {data.view_symint(x.sym_sizes()), scale.view_symint(scale_shape)};
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) {
  m.impl("quantize_per_token", &quantize_per_token);
  m.impl("symmetric_quantize", &symmetric_quantize);
  m.impl("symmetric_dequantize", &symmetric_dequantize);
  m.impl("affine_quantize", &affine_quantize);
  m.impl("affine_dequantize", &affine_dequantize);
}

}  // namespace quanto::ops::generic
