// C++ entry points of the quanto ops. Each call goes through the PyTorch dispatcher, so C++,
// the CLI and torch.ops.quanto.* run the same kernels on every device. Arguments are checked;
// a bad one raises c10::Error with a message naming it.
//
// Conventions (docs/format.md):
//  - qtype is a name: "qint2", "qint4", "qint8", "qfloat8" (= "qfloat8_e4m3fn"),
//    "qfloat8_e4m3fnuz", "qfloat8_e5m2".
//  - axis is 0 (first) or -1 (last); nullopt means per-tensor. Group-wise parameters split
//    the elements that share an index along `axis` into groups of group_size; the grouped
//    tensor is optimum-quanto's: [numel / gs, gs] for axis 0, [gs, numel / gs] for axis -1.
//  - Floating inputs are float32, bfloat16 or float16; arithmetic matches PyTorch in that dtype.
#pragma once

#include <ATen/core/List.h>
#include <ATen/core/Tensor.h>

#include <optional>
#include <string_view>
#include <tuple>
#include <vector>

namespace quanto::ops {

// amax(|x|) / qmax, per tensor (0-dim) or per axis (keepdim). Zero scales become 1.
at::Tensor absmax_scale(const at::Tensor& x, std::string_view qtype,
                        std::optional<int64_t> axis = std::nullopt);

// Min/max affine parameters for 2/4-bit codes: scale = (max - min) / (2^bits - 1), shift = -min,
// per axis (group_size nullopt) or per group. Shapes: [N, 1, …] per axis 0, [1, …, N] per axis
// -1, [numel / gs, 1] grouped on axis 0, [1, numel / gs] grouped on axis -1.
std::tuple<at::Tensor, at::Tensor> minmax_scale_shift(const at::Tensor& x, std::string_view qtype,
                                                      int64_t axis,
                                                      std::optional<int64_t> group_size = std::nullopt);

// Symmetric parameters for 2/4-bit codes in the same convention and shapes: scale = absmax /
// (2^(bits-1) - 1/2), shift = 2^(bits-1) * scale (an exact integer zero-point of 2^(bits-1)).
std::tuple<at::Tensor, at::Tensor> symmetric_scale_shift(const at::Tensor& x, std::string_view qtype,
                                                         int64_t axis,
                                                         std::optional<int64_t> group_size = std::nullopt);

// Half-Quadratic Quantization (Badri & Shaji, 2023) of the affine parameters of 2/4-bit codes:
// starts from minmax_scale_shift and refines each group's shift (and, with optimize_scale, its
// scale) by half-quadratic iterations on an lp error (p < 1), keeping the parameters of lowest
// squared reconstruction error, so no group ends worse than min/max in that sense. Same shapes,
// dtype and convention as minmax_scale_shift (dequantized = codes * scale - shift); codes come
// from affine_quantize. iters in [0, 10000], 0 < p <= 1, beta > 0, kappa >= 1. Multi-threaded.
std::tuple<at::Tensor, at::Tensor> hqq_scale_shift(const at::Tensor& x, std::string_view qtype, int64_t axis,
                                                   std::optional<int64_t> group_size = std::nullopt,
                                                   int64_t iters = 20, double p = 0.7, double beta = 10.0,
                                                   double kappa = 1.01, bool optimize_scale = false);

// GPTQ (Frantar et al.): quantizes an out-first weight [out, in] to a 2/4-bit qtype with
// docs/format.md's groups along the input features (group_size None: one group per row), column by
// column, spreading each column's rounding error over the columns not yet quantized through the
// inverse of `hessian` (X^T X of the layer's calibration inputs, [in, in], float32/float64),
// dampened by percdamp * mean(diag) on its diagonal; each group's min/max scale/shift is taken
// when its first column is reached. Returns (codes, scale, shift): codes uint8 in
// affine_quantize's layout (pack them with pack_codes), scale/shift like minmax_scale_shift's.
// actorder: columns in order of decreasing Hessian diagonal, with static group parameters (the
// min/max of the original weight's groups), which keeps docs/format.md's contiguous groups.
// Errors: a Hessian of the wrong shape, or not positive definite after dampening.
std::tuple<at::Tensor, at::Tensor, at::Tensor> gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian,
                                                             std::string_view qtype,
                                                             std::optional<int64_t> group_size = std::nullopt,
                                                             double percdamp = 0.01, int64_t blocksize = 128,
                                                             bool actorder = false);

// Integer zero-point that represents `shift`: clamp(round(shift / scale), 0, 2^bits - 1), uint8.
at::Tensor shift_to_zeropoint(const at::Tensor& scale, const at::Tensor& shift, std::string_view qtype);

// clamp(round(x / scale)) in the qtype's storage dtype (int8 or float8). scale is 0-dim for
// per-tensor, or broadcastable along `axis`.
// int8/float8 codes of x with one absmax scale per token (row of the last dimension), as (data,
// scale): the dynamic activations of W8A8/W4A8 layers.
std::tuple<at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x, std::string_view qtype);
at::Tensor symmetric_quantize(const at::Tensor& x, const at::Tensor& scale, std::string_view qtype,
                              std::optional<int64_t> axis = std::nullopt);
// data * scale, in scale's dtype.
at::Tensor symmetric_dequantize(const at::Tensor& data, const at::Tensor& scale);

// Unsigned codes clamp(round((x + shift) / scale), 0, 2^bits - 1) (float shift), or
// clamp(round(x / scale) + zero_point) (uint8 shift), in the grouped layout when group_size is set.
at::Tensor affine_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           std::string_view qtype, int64_t axis,
                           std::optional<int64_t> group_size = std::nullopt);
// codes * scale - shift (float shift) or (codes - zero_point) * scale, ungrouped to `shape`.
at::Tensor affine_dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             at::IntArrayRef shape, int64_t axis,
                             std::optional<int64_t> group_size = std::nullopt);

// Packs uint8 codes of `bits` (2 or 4) along dim 0: [R0, …] -> [ceil(R0 / (8 / bits)), …].
at::Tensor pack_codes(const at::Tensor& codes, int64_t bits);
// Inverse of pack_codes; `rows` is R0.
at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits, int64_t rows);

// The tiled 4-bit layout read by the fast CPU kernels: each output row contiguous, 32 codes per
// 16 bytes. Converted once (freeze/load) from the canonical packed codes of a [out, in] weight
// grouped along axis 0 (group_size a multiple of 32); untile_qbits gives the canonical bytes back.
at::Tensor tile_qbits(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                      int64_t group_size);
at::Tensor untile_qbits(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                        int64_t group_size);

// Matmuls, y = x @ W^T + bias, y in x's dtype, for x [..., K] and W [N, K].
// int8 or float8 weights, scale [N, 1] (per channel) or 0-dim.
at::Tensor linear_qbytes(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                         const std::optional<at::Tensor>& bias = std::nullopt);
// 2/4-bit weights as produced by affine_quantize(axis 0, group_size) + pack_codes.
at::Tensor linear_qbits(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                        const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                        const std::optional<at::Tensor>& bias = std::nullopt);
// 4-bit weights in the tiled layout: the fused kernel (weights decoded in registers).
at::Tensor linear_qbits_tiled(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                              const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                              const std::optional<at::Tensor>& bias = std::nullopt);
// linear_qbits_tiled for several weights that read the same x (e.g. a layer's q, k and v): y is
// their outputs side by side along the last dim (as for the weights concatenated along N); at
// batch 1 the CPU runs all their rows in one parallel pass. bias: empty, or one entry (a tensor
// or nullopt) per weight.
at::Tensor linear_qbits_tiled_cat(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                  at::TensorList w_shift, int64_t bits, int64_t group_size,
                                  const c10::List<std::optional<at::Tensor>>& bias = c10::List<std::optional<at::Tensor>>());
// linear_qbytes for several int8 / float8 weights on one x, as linear_qbits_tiled_cat.
at::Tensor linear_qbytes_cat(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                             const c10::List<std::optional<at::Tensor>>& bias = c10::List<std::optional<at::Tensor>>());
// int8 activations (one scale, or one per row of x) × tiled 4-bit weights: exact int32 dot
// products per group, y = x_scale · Σ_g (scale_g · dot_g − shift_g · Σ_g x) + bias, in out_dtype.
at::Tensor linear_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                             const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                             const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype);
// linear_w4a8_tiled for several weights on one quantized x, as linear_qbits_tiled_cat.
at::Tensor linear_w4a8_tiled_cat(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                 at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                 const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype);
// int8 activations (0-dim scale) × int8 weights, int32 accumulation, output in out_dtype.
at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                       const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                       c10::ScalarType out_dtype);

// The packed W8A8 layout read by the VNNI kernels (uint8 [ceil(N / 64), (ceil(K / 4) + 1) * 256]),
// converted once (freeze/load) from int8 weights [N, K] (K < 131072); unpack_w8a8 gives them back exactly.
at::Tensor pack_w8a8(const at::Tensor& w_data);
at::Tensor unpack_w8a8(const at::Tensor& w_packed, int64_t out_features, int64_t in_features);
// linear_w8a8 on packed weights (same results bit for bit).
at::Tensor linear_w8a8_packed(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                              const at::Tensor& w_scale, int64_t out_features, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype);

// Name of the CPU kernel set in use: "generic", "avx2" or "avx512".
std::string cpu_isa();

// Backends without kernels of their own (CUDA, MPS, XPU, …) run device-generic implementations
// made of ATen tensor ops. This switch sends CPU tensors through them as well, so they can be
// tested without a GPU; it returns the previous setting. Process-wide; the initial value is on
// when QUANTO_FORCE_GENERIC is "1", "true", "on" or "yes" as the library loads.
bool force_generic_path(bool enabled);

// Sets force_generic_path for a scope and restores the previous setting when it ends.
class ForceGenericPath {
 public:
  explicit ForceGenericPath(bool enabled = true) : previous_(force_generic_path(enabled)) {}
  ~ForceGenericPath() { force_generic_path(previous_); }
  ForceGenericPath(const ForceGenericPath&) = delete;
  ForceGenericPath& operator=(const ForceGenericPath&) = delete;

 private:
  bool previous_;
};

}  // namespace quanto::ops
