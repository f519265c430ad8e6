// Generic: the linears and the packed W8A8 layout. Weights are dequantized to float32 and
// multiplied in float32 like the CPU kernels (which accumulate in float and round to x's dtype
// once), so results agree within float rounding; W8A8 sums are exact int32, as on the CPU.
#include <ATen/TensorOperators.h>
#include <ATen/ops/_int_mm.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>

#include "kernels/ref/linear_ref.h"
#include "ops/generic/generic_ops.h"
#include "ops/generic/generic_utils.h"
#include "ops/generic/layouts.h"
#include "ops/specs.h"

namespace quanto::ops::generic {
namespace {

// y = x @ w^T (+ bias) in float32 for w float32 [N, K], in x's dtype: the CPU kernels' order
// (scale after the sum, bias last).
at::Tensor float_linear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& scale,
                        const std::optional<at::Tensor>& bias) {
  at::Tensor y = at::linear(x.to(at::kFloat), w);
  if (scale) y = y * scale->to(at::kFloat).reshape(-1);
  if (bias) y = y + bias->to(at::kFloat);
  return y.to(x.scalar_type());
}

// The float32 weight [N, K] of affine codes [N, K]: code * scale - shift per group of group_size
// along K, a zero-point becoming its float shift zp * scale as on the CPU.
at::Tensor dequantized_qbits(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             int64_t group_size) {
  const int64_t N = codes.size(0), K = codes.size(1);
  const at::Tensor s = scale.to(at::kFloat).reshape({-1, 1});
  at::Tensor h = shift.to(at::kFloat).reshape({-1, 1});
  if (shift.scalar_type() == at::kByte) h = h * s;
  return (codes.reshape({-1, group_size}).to(at::kFloat) * s - h).reshape({N, K});
}

// cuBLASLt's _int_mm shape rule, applied on the CPU too so the CPU tests cover both branches a
// GPU takes.
bool int_mm_fits(const at::Device& device, int64_t M, int64_t K, int64_t N) {
  return (device.is_cpu() || device.is_cuda()) && M > 16 && K % 8 == 0 && N % 8 == 0;
}

// Exact int32 x @ w^T for int8 x [M, K] and w [N, K].
at::Tensor int8_matmul(const at::Tensor& x, const at::Tensor& w) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  if (int_mm_fits(x.device(), M, K, N)) return at::_int_mm(x.contiguous(), w.contiguous().t());
  // A product of int8 values is at most 2^14 in magnitude, so every partial sum of 1024 of them
  // is an integer float32 holds exactly, whatever the order, FMA or TF32/bf16 inputs (int8 fits).
  constexpr int64_t kExactTerms = 1024;
  at::Tensor acc = at::zeros({M, N}, x.options().dtype(at::kInt));
  for (int64_t k0 = 0; k0 < K; k0 += kExactTerms) {
    const int64_t n = std::min(kExactTerms, K - k0);
    acc.add_(at::mm(x.narrow(1, k0, n).to(at::kFloat), w.narrow(1, k0, n).to(at::kFloat).t()).to(at::kInt));
  }
  return acc;
}

// linear_w8a8's math once checked: int32 sums, then acc * (x_scale * w_scale) + bias in float
// (kernels::w8a8_output), rounded to out_dtype.
at::Tensor w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w, const at::Tensor& w_scale,
                const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype, const TensorSpec& spec) {
  const int64_t K = x_data.size(-1), M = x_data.numel() / K, N = w.size(0);
  const at::Tensor acc = int8_matmul(x_data.reshape({M, K}), w);
  const at::Tensor xs = x_scale.to(at::kFloat).reshape({x_scale.numel() == 1 ? 1 : M, 1});
  const at::Tensor ws = w_scale.to(at::kFloat).reshape({1, w_scale.numel() == 1 ? 1 : N});
  at::Tensor y = acc.to(at::kFloat) * (xs * ws);
  if (bias) y = y + bias->to(at::kFloat);
  return y.to(out_dtype).reshape(concrete(spec.sizes));
}

at::Tensor unpacked_w8a8(const at::Tensor& w_packed, int64_t N, int64_t K) {
  using kernels::kW8A8BlockN;
  const int64_t blocks = kernels::w8a8_block_count(N), quads = kernels::w8a8_quads(K);
  return w_packed.narrow(1, 0, quads * kW8A8BlockN * 4)
      .reshape({blocks, quads, kW8A8BlockN, 4})
      .permute({0, 2, 1, 3})
      .reshape({blocks * kW8A8BlockN, quads * 4})
      .narrow(0, 0, N)
      .narrow(1, 0, K)
      .view(at::kChar);
}

}  // namespace

at::Tensor linear_qbytes(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                         const std::optional<at::Tensor>& bias) {
  NonDifferentiable guard;
  linear_qbytes_spec(x, w_data, w_scale, bias);
  check_device_dtype("linear_qbytes", x.device(), w_data.scalar_type());
  return float_linear(x, w_data.to(at::kFloat), w_scale, bias);
}

at::Tensor linear_qbits(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                        const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                        const std::optional<at::Tensor>& bias) {
  NonDifferentiable guard;
  const TensorSpec spec = linear_qbits_spec(x, w_packed, w_scale, w_shift, bits, group_size, bias);
  const int64_t K = x.size(-1), N = spec.sizes.back().expect_int();
  // Grouping along axis 0 is a plain reshape: the unpacked groups are the [N, K] weight codes.
  const at::Tensor codes = unpack_rows(w_packed, bits, N * K / group_size).reshape({N, K});
  return float_linear(x, dequantized_qbits(codes, w_scale, w_shift, group_size), std::nullopt, bias);
}

at::Tensor linear_qbits_tiled(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                              const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                              const std::optional<at::Tensor>& bias) {
  NonDifferentiable guard;
  linear_qbits_tiled_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  const at::Tensor codes = tiled_codes(w_tiled, bits, w_tiled.size(0), x.size(-1));
  return float_linear(x, dequantized_qbits(codes, w_scale, w_shift, group_size), std::nullopt, bias);
}

// One linear_qbits_tiled per weight: on devices without a fused kernel the parts gain nothing
// from running together.
at::Tensor linear_qbits_tiled_cat(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                  at::TensorList w_shift, int64_t bits, int64_t group_size,
                                  const c10::List<std::optional<at::Tensor>>& bias) {
  NonDifferentiable guard;
  linear_qbits_tiled_cat_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  return cat_parts(w_tiled.size(), [&](size_t i) {
    return linear_qbits_tiled(x, w_tiled[i], w_scale[i], w_shift[i], bits, group_size, bias_entry(bias, i));
  });
}

at::Tensor linear_qbytes_cat(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                             const c10::List<std::optional<at::Tensor>>& bias) {
  NonDifferentiable guard;
  linear_qbytes_cat_spec(x, w_data, w_scale, bias);
  return cat_parts(w_data.size(),
                   [&](size_t i) { return linear_qbytes(x, w_data[i], w_scale[i], bias_entry(bias, i)); });
}

at::Tensor linear_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                             const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                             const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  NonDifferentiable guard;
  const TensorSpec spec =
      linear_w4a8_tiled_spec(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype);
  // The activations and the weight dequantized to float32: the CPU kernel's integer group sums
  // and this agree within float rounding.
  const int64_t K = x_data.size(-1), M = x_data.numel() / K;
  const at::Tensor x = x_data.reshape({M, K}).to(at::kFloat) *
                       x_scale.to(at::kFloat).reshape({x_scale.numel() == 1 ? 1 : M, 1});
  const at::Tensor codes = tiled_codes(w_tiled, 4, w_tiled.size(0), K);
  const at::Tensor y = float_linear(x, dequantized_qbits(codes, w_scale, w_shift, group_size), std::nullopt, bias);
  return y.to(out_dtype).reshape(concrete(spec.sizes));
}

at::Tensor linear_w4a8_tiled_cat(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                 at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                 const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype) {
  NonDifferentiable guard;
  linear_w4a8_tiled_cat_spec(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype);
  return cat_parts(w_tiled.size(), [&](size_t i) {
    return linear_w4a8_tiled(x_data, x_scale, w_tiled[i], w_scale[i], w_shift[i], group_size, bias_entry(bias, i),
                             out_dtype);
  });
}

at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                       const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  NonDifferentiable guard;
  const TensorSpec spec = linear_w8a8_spec(x_data, x_scale, w_data, w_scale, bias, out_dtype);
  return w8a8(x_data, x_scale, w_data, w_scale, bias, out_dtype, spec);
}

at::Tensor pack_w8a8(const at::Tensor& w_data) {
  NonDifferentiable guard;
  using kernels::kW8A8BlockN;
  const TensorSpec spec = pack_w8a8_spec(w_data);
  const int64_t N = w_data.size(0), K = w_data.size(1);
  const int64_t blocks = kernels::w8a8_block_count(N), quads = kernels::w8a8_quads(K);
  // Zero weights pad N to whole blocks and K to whole quads.
  at::Tensor w = at::zeros({blocks * kW8A8BlockN, quads * 4}, w_data.options());
  w.narrow(0, 0, N).narrow(1, 0, K).copy_(w_data);
  const at::Tensor quads_major = w.view({blocks, kW8A8BlockN, quads, 4})
                                     .permute({0, 2, 1, 3})
                                     .reshape({blocks, quads * kW8A8BlockN * 4})
                                     .view(at::kByte);
  // The int32 offsets 128 · Σ_k w in the device's (little-endian, like the CPU's) byte order.
  const at::Tensor offsets =
      (w.to(at::kInt).sum(1) * 128).to(at::kInt).reshape({blocks, kW8A8BlockN}).view(at::kByte);
  return at::cat({quads_major, offsets}, 1).reshape(concrete(spec.sizes));
}

at::Tensor unpack_w8a8(const at::Tensor& w_packed, int64_t out_features, int64_t in_features) {
  NonDifferentiable guard;
  unpack_w8a8_spec(w_packed, out_features, in_features);
  return fresh_contiguous(unpacked_w8a8(w_packed, out_features, in_features), w_packed);
}

at::Tensor linear_w8a8_packed(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                              const at::Tensor& w_scale, int64_t out_features, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype) {
  NonDifferentiable guard;
  const TensorSpec spec =
      linear_w8a8_packed_spec(x_data, x_scale, w_packed, w_scale, out_features, bias, out_dtype);
  const at::Tensor w = unpacked_w8a8(w_packed, out_features, x_data.size(-1));
  return w8a8(x_data, x_scale, w, w_scale, bias, out_dtype, spec);
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) {
  m.impl("linear_qbytes", &linear_qbytes);
  m.impl("linear_qbits", &linear_qbits);
  m.impl("linear_qbits_tiled", &linear_qbits_tiled);
  m.impl("linear_qbits_tiled_cat", &linear_qbits_tiled_cat);
  m.impl("linear_qbytes_cat", &linear_qbytes_cat);
  m.impl("linear_w4a8_tiled", &linear_w4a8_tiled);
  m.impl("linear_w4a8_tiled_cat", &linear_w4a8_tiled_cat);
  m.impl("linear_w8a8", &linear_w8a8);
  m.impl("pack_w8a8", &pack_w8a8);
  m.impl("unpack_w8a8", &unpack_w8a8);
  m.impl("linear_w8a8_packed", &linear_w8a8_packed);
}

}  // namespace quanto::ops::generic
