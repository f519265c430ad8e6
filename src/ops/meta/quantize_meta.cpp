// Meta (shape-only) implementations of the scale, quantize and packing ops, for the meta
// device and torch.compile. All checks and shapes come from ops/specs, shared with the CPU.
#include <torch/library.h>

#include "ops/specs.h"

namespace quanto::ops::meta {
namespace {

at::Tensor absmax_scale(const at::Tensor& x, c10::string_view qtype, std::optional<int64_t> axis) {
  return empty_from_spec(absmax_scale_spec(x, qtype, axis), x);
}

std::tuple<at::Tensor, at::Tensor> minmax_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                      std::optional<int64_t> group_size) {
  const auto [scale, shift] = minmax_scale_shift_spec(x, qtype, axis, group_size);
  return {empty_from_spec(scale, x), empty_from_spec(shift, x)};
}

at::Tensor shift_to_zeropoint(const at::Tensor& scale, const at::Tensor& shift, c10::string_view qtype) {
  return empty_from_spec(shift_to_zeropoint_spec(scale, shift, qtype), shift);
}

at::Tensor symmetric_quantize(const at::Tensor& x, const at::Tensor& scale, c10::string_view qtype,
                              std::optional<int64_t> axis) {
  return empty_from_spec(symmetric_quantize_spec(x, scale, qtype, axis), x);
}

at::Tensor symmetric_dequantize(const at::Tensor& data, const at::Tensor& scale) {
  return empty_from_spec(symmetric_dequantize_spec(data, scale), data);
}

at::Tensor affine_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           c10::string_view qtype, int64_t axis, std::optional<int64_t> group_size) {
  return empty_from_spec(affine_quantize_spec(x, scale, shift, qtype, axis, group_size), x);
}

at::Tensor affine_dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             c10::SymIntArrayRef shape, int64_t axis, std::optional<int64_t> group_size) {
  return empty_from_spec(affine_dequantize_spec(codes, scale, shift, shape, axis, group_size), codes);
}

at::Tensor pack_codes(const at::Tensor& codes, int64_t bits) { return empty_from_spec(pack_codes_spec(codes, bits), codes); }

at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits, c10::SymInt rows) {
  return empty_from_spec(unpack_codes_spec(packed, bits, rows), packed);
}

at::Tensor tile_qbits(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                      int64_t group_size) {
  return empty_from_spec(tile_qbits_spec(packed, bits, out_features, in_features, group_size), packed);
}

at::Tensor untile_qbits(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                        int64_t group_size) {
  return empty_from_spec(untile_qbits_spec(tiled, bits, out_features, in_features, group_size), tiled);
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Meta, m) {
  m.impl("absmax_scale", &absmax_scale);
  m.impl("minmax_scale_shift", &minmax_scale_shift);
  m.impl("shift_to_zeropoint", &shift_to_zeropoint);
  m.impl("symmetric_quantize", &symmetric_quantize);
  m.impl("symmetric_dequantize", &symmetric_dequantize);
  m.impl("affine_quantize", &affine_quantize);
  m.impl("affine_dequantize", &affine_dequantize);
  m.impl("pack_codes", &pack_codes);
  m.impl("unpack_codes", &unpack_codes);
  m.impl("tile_qbits", &tile_qbits);
  m.impl("untile_qbits", &untile_qbits);
}

}  // namespace quanto::ops::meta
