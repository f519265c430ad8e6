// Device-generic implementations of every quanto op, made of ATen tensor ops only. They are the
// CompositeExplicitAutograd kernels (CUDA, MPS, XPU, PrivateUse1…: every backend without its own
// kernel) and what the CPU registrations call while the generic path is forced (force_generic.h).
// Same signatures, checks (ops/specs.h) and results as the CPU kernels: bit for bit where the
// math is exact (scales, quantization, layouts, W8A8 integer sums), within float rounding for
// the float matmuls and HQQ; GPTQ may round a few ties differently. A NaN stays NaN, but its sign
// and payload are whatever ATen's conversions make of them, which differ between backends.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymInt.h>
#include <c10/core/SymIntArrayRef.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace quanto::ops::generic {

at::Tensor absmax_scale(const at::Tensor& x, c10::string_view qtype, std::optional<int64_t> axis);
std::tuple<at::Tensor, at::Tensor> minmax_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                      std::optional<int64_t> group_size);
at::Tensor shift_to_zeropoint(const at::Tensor& scale, const at::Tensor& shift, c10::string_view qtype);
std::tuple<at::Tensor, at::Tensor> symmetric_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                         std::optional<int64_t> group_size);
std::tuple<at::Tensor, at::Tensor> hqq_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                   std::optional<int64_t> group_size, int64_t iters, double p,
                                                   double beta, double kappa, bool optimize_scale);
std::tuple<at::Tensor, at::Tensor, at::Tensor> gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian,
                                                             c10::string_view qtype, std::optional<int64_t> group_size,
                                                             double percdamp, int64_t blocksize, bool actorder);

// Per-token activation codes: absmax_scale over each token, then symmetric_quantize.
std::tuple<at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x, c10::string_view qtype);
at::Tensor symmetric_quantize(const at::Tensor& x, const at::Tensor& scale, c10::string_view qtype,
                              std::optional<int64_t> axis);
at::Tensor symmetric_dequantize(const at::Tensor& data, const at::Tensor& scale);
at::Tensor affine_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           c10::string_view qtype, int64_t axis, std::optional<int64_t> group_size);
at::Tensor affine_dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             c10::SymIntArrayRef shape, int64_t axis, std::optional<int64_t> group_size);

at::Tensor pack_codes(const at::Tensor& codes, int64_t bits);
at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits, c10::SymInt rows);
at::Tensor tile_qbits(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                      int64_t group_size);
at::Tensor untile_qbits(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                        int64_t group_size);

at::Tensor linear_qbytes(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                         const std::optional<at::Tensor>& bias);
at::Tensor linear_qbits(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                        const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                        const std::optional<at::Tensor>& bias);
at::Tensor linear_qbits_tiled(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                              const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                              const std::optional<at::Tensor>& bias);
at::Tensor linear_qbits_tiled_cat(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                  at::TensorList w_shift, int64_t bits, int64_t group_size,
                                  const c10::List<std::optional<at::Tensor>>& bias);
at::Tensor linear_qbytes_cat(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                             const c10::List<std::optional<at::Tensor>>& bias);
at::Tensor linear_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                             const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                             const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype);
at::Tensor linear_w4a8_tiled_cat(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                 at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                 const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype);
at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                       const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype);
at::Tensor pack_w8a8(const at::Tensor& w_data);
at::Tensor unpack_w8a8(const at::Tensor& w_packed, int64_t out_features, int64_t in_features);
at::Tensor linear_w8a8_packed(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                              const at::Tensor& w_scale, int64_t out_features, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype);
// ATen's scaled_dot_product_attention with grouped-query heads; a float mask in q's dtype.
at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::optional<at::Tensor>& mask, double scale);

}  // namespace quanto::ops::generic
