// Meta (shape-only) implementations of the linear ops.
#include <torch/library.h>

#include "ops/specs.h"

namespace quanto::ops::meta {
namespace {

at::Tensor linear_qbytes(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                         const std::optional<at::Tensor>& bias) {
  return empty_from_spec(linear_qbytes_spec(x, w_data, w_scale, bias), x);
}

at::Tensor linear_qbits(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                        const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                        const std::optional<at::Tensor>& bias) {
  return empty_from_spec(linear_qbits_spec(x, w_packed, w_scale, w_shift, bits, group_size, bias), x);
}

at::Tensor linear_qbits_tiled(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                              const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                              const std::optional<at::Tensor>& bias) {
  return empty_from_spec(linear_qbits_tiled_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias), x);
}

at::Tensor linear_qbits_tiled_cat(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                  at::TensorList w_shift, int64_t bits, int64_t group_size,
                                  const c10::List<std::optional<at::Tensor>>& bias) {
  return empty_from_spec(linear_qbits_tiled_cat_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias), x);
}

at::Tensor linear_qbytes_cat(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                             const c10::List<std::optional<at::Tensor>>& bias) {
  return empty_from_spec(linear_qbytes_cat_spec(x, w_data, w_scale, bias), x);
}

at::Tensor linear_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                             const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                             const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  return empty_from_spec(
      linear_w4a8_tiled_spec(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype), x_data);
}

at::Tensor linear_w4a8_tiled_cat(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                 at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                 const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype) {
  return empty_from_spec(
      linear_w4a8_tiled_cat_spec(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype), x_data);
}

at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                       const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  return empty_from_spec(linear_w8a8_spec(x_data, x_scale, w_data, w_scale, bias, out_dtype), x_data);
}

at::Tensor pack_w8a8(const at::Tensor& w_data) { return empty_from_spec(pack_w8a8_spec(w_data), w_data); }

at::Tensor unpack_w8a8(const at::Tensor& w_packed, int64_t out_features, int64_t in_features) {
  return empty_from_spec(unpack_w8a8_spec(w_packed, out_features, in_features), w_packed);
}

at::Tensor linear_w8a8_packed(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                              const at::Tensor& w_scale, int64_t out_features, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype) {
  return empty_from_spec(linear_w8a8_packed_spec(x_data, x_scale, w_packed, w_scale, out_features, bias, out_dtype),
                         x_data);
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Meta, m) {
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

}  // namespace quanto::ops::meta
