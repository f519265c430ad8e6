// Per-op validation and output specs (sizes + dtype), shared by the CPU and Meta kernels so
// both reject the same inputs with the same messages and agree on every output shape.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>

#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "ops/checks.h"

namespace quanto::ops {

struct TensorSpec {
  SymSizes sizes;
  c10::ScalarType dtype;
};

// An uninitialised tensor of `spec` on like's device (the Meta kernels' output).
at::Tensor empty_from_spec(const TensorSpec& spec, const at::Tensor& like);

// How a parameter tensor broadcasts over data viewed as a 2-D [rows, cols] block.
enum class ParamAxis { per_tensor, rows, cols };

TensorSpec absmax_scale_spec(const at::Tensor& x, std::string_view qtype, std::optional<int64_t> axis);
std::pair<TensorSpec, TensorSpec> minmax_scale_shift_spec(const at::Tensor& x, std::string_view qtype,
                                                          int64_t axis, std::optional<int64_t> group_size,
                                                          Grouping* grouping = nullptr);
// HQQ: minmax_scale_shift's checks and shapes, plus iters in [0, 10000], 0 < p <= 1,
// beta > 0 and kappa >= 1 (all finite).
std::pair<TensorSpec, TensorSpec> hqq_scale_shift_spec(const at::Tensor& x, std::string_view qtype, int64_t axis,
                                                       std::optional<int64_t> group_size, int64_t iters, double p,
                                                       double beta, double kappa, Grouping* grouping = nullptr);
// GPTQ: weight [out, in] float; hessian [in, in] float32/float64 on weight's device; a 2/4-bit
// qtype; group_size None (one group per row) or dividing in; 0 <= percdamp <= 100; blocksize >= 1.
// Returns (codes uint8 in affine_quantize's grouped layout, scale, shift in minmax_scale_shift's).
struct GptqSpecs {
  TensorSpec codes, scale, shift;
};
GptqSpecs gptq_quantize_spec(const at::Tensor& weight, const at::Tensor& hessian, std::string_view qtype,
                             std::optional<int64_t> group_size, double percdamp, int64_t blocksize,
                             Grouping* grouping = nullptr);
TensorSpec shift_to_zeropoint_spec(const at::Tensor& scale, const at::Tensor& shift, std::string_view qtype);
// quantize_per_token: (codes shaped like x, one scale per token: x's shape with a last dimension of 1).
std::pair<TensorSpec, TensorSpec> quantize_per_token_spec(const at::Tensor& x, std::string_view qtype);
TensorSpec symmetric_quantize_spec(const at::Tensor& x, const at::Tensor& scale, std::string_view qtype,
                                   std::optional<int64_t> axis);
TensorSpec symmetric_dequantize_spec(const at::Tensor& data, const at::Tensor& scale, ParamAxis* layout = nullptr);
// Float shift: computation dtype is promote(x, shift, scale); zero-point: promote(x, scale).
c10::ScalarType affine_compute_dtype(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift);
TensorSpec affine_quantize_spec(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                                std::string_view qtype, int64_t axis, std::optional<int64_t> group_size,
                                Grouping* grouping = nullptr);
TensorSpec affine_dequantize_spec(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                                  c10::SymIntArrayRef shape, int64_t axis, std::optional<int64_t> group_size,
                                  Grouping* grouping = nullptr);
TensorSpec pack_codes_spec(const at::Tensor& codes, int64_t bits);
TensorSpec unpack_codes_spec(const at::Tensor& packed, int64_t bits, const c10::SymInt& rows);
TensorSpec linear_qbytes_spec(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                              const std::optional<at::Tensor>& bias);
TensorSpec linear_qbits_spec(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                             const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                             const std::optional<at::Tensor>& bias);
// Tiled layouts (kernels/ref/tiled_ref.h): 4-bit (group_size a multiple of 32) or 2-bit (of 64), dividing in_features.
TensorSpec tile_qbits_spec(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                           int64_t group_size);
TensorSpec untile_qbits_spec(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                             int64_t group_size);
TensorSpec linear_qbits_tiled_spec(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                                   const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                                   const std::optional<at::Tensor>& bias);
// Several tiled weights that read the same x (a layer's q, k and v projections): each part
// checked as linear_qbits_tiled checks it (named "linear_qbits_tiled_cat"), the lists of one
// length (at least 1; bias empty, or one entry per part). The output holds the parts' outputs
// side by side along its last dim.
TensorSpec linear_qbits_tiled_cat_spec(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                       at::TensorList w_shift, int64_t bits, int64_t group_size,
                                       const c10::List<std::optional<at::Tensor>>& bias);
// linear_qbytes for several int8 / float8 weights on one x, as linear_qbits_tiled_cat.
TensorSpec linear_qbytes_cat_spec(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                                  const c10::List<std::optional<at::Tensor>>& bias);
// Entry i of a *_cat op's bias list (an empty list: no biases).
std::optional<at::Tensor> bias_entry(const c10::List<std::optional<at::Tensor>>& bias, size_t i);
// A *_cat op computed part by part: part(i) for each weight, concatenated along the last dim.
template <typename Part>
at::Tensor cat_parts(size_t parts, Part part) {
  std::vector<at::Tensor> out;
  out.reserve(parts);
  for (size_t i = 0; i < parts; ++i) out.push_back(part(i));
  return at::cat(out, -1);
}
// W4A8: int8 activation codes (scale per tensor or per row) × a tiled 4-bit weight.
TensorSpec linear_w4a8_tiled_spec(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                                  const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                                  const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype);
// linear_w4a8_tiled for several tiled weights on one x_data, as linear_qbits_tiled_cat.
TensorSpec linear_w4a8_tiled_cat_spec(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                      at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                      const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype);
TensorSpec linear_w8a8_spec(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                            const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                            c10::ScalarType out_dtype);
// Packed W8A8 layout (kernels/ref/linear_ref.h, pack_w8a8_ref): uint8 [ceil(N / 64), (ceil(K / 4) + 1) * 256].
TensorSpec pack_w8a8_spec(const at::Tensor& w_data);
TensorSpec unpack_w8a8_spec(const at::Tensor& w_packed, int64_t out_features, int64_t in_features);
TensorSpec linear_w8a8_packed_spec(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                                   const at::Tensor& w_scale, int64_t out_features,
                                   const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype);

// Decode attention (one query position): q [B, H, 1, D], k [B, Hkv, L, D], v [B, Hkv, L, Dv] of
// one float dtype, H a multiple of Hkv; mask bool or float, broadcastable to [B, H, 1, L]; scale
// finite. The output is [B, H, 1, Dv] in q's dtype.
TensorSpec decode_attention_spec(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const std::optional<at::Tensor>& mask, double scale);

}  // namespace quanto::ops
