// C++ entry points: every call goes through the dispatcher (same path as torch.ops.quanto.*).
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/SymIntArrayRef.h>

#include <quanto/ops.h>

namespace quanto::ops {
namespace {

template <typename Signature>
c10::TypedOperatorHandle<Signature> op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace

at::Tensor absmax_scale(const at::Tensor& x, std::string_view qtype, std::optional<int64_t> axis) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, c10::string_view, std::optional<int64_t>)>("quanto::absmax_scale");
  return h.call(x, qtype, axis);
}

std::tuple<at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x, std::string_view qtype) {
  static const auto h =
      op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::string_view)>("quanto::quantize_per_token");
  return h.call(x, qtype);
}

std::tuple<at::Tensor, at::Tensor> minmax_scale_shift(const at::Tensor& x, std::string_view qtype, int64_t axis,
                                                      std::optional<int64_t> group_size) {
  static const auto h = op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::string_view, int64_t,
                                                             std::optional<int64_t>)>("quanto::minmax_scale_shift");
  return h.call(x, qtype, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor> symmetric_scale_shift(const at::Tensor& x, std::string_view qtype, int64_t axis,
                                                         std::optional<int64_t> group_size) {
  static const auto h = op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::string_view, int64_t,
                                                             std::optional<int64_t>)>("quanto::symmetric_scale_shift");
  return h.call(x, qtype, axis, group_size);
}

std::tuple<at::Tensor, at::Tensor> hqq_scale_shift(const at::Tensor& x, std::string_view qtype, int64_t axis,
                                                   std::optional<int64_t> group_size, int64_t iters, double p,
                                                   double beta, double kappa, bool optimize_scale) {
  static const auto h =
      op<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, c10::string_view, int64_t, std::optional<int64_t>,
                                            int64_t, double, double, double, bool)>("quanto::hqq_scale_shift");
  return h.call(x, qtype, axis, group_size, iters, p, beta, kappa, optimize_scale);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian,
                                                             std::string_view qtype, std::optional<int64_t> group_size,
                                                             double percdamp, int64_t blocksize, bool actorder) {
  static const auto h = op<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
      const at::Tensor&, const at::Tensor&, c10::string_view, std::optional<int64_t>, double, int64_t, bool)>(
      "quanto::gptq_quantize");
  return h.call(weight, hessian, qtype, group_size, percdamp, blocksize, actorder);
}

at::Tensor shift_to_zeropoint(const at::Tensor& scale, const at::Tensor& shift, std::string_view qtype) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view)>("quanto::shift_to_zeropoint");
  return h.call(scale, shift, qtype);
}

at::Tensor symmetric_quantize(const at::Tensor& x, const at::Tensor& scale, std::string_view qtype,
                              std::optional<int64_t> axis) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view,
                                      std::optional<int64_t>)>("quanto::symmetric_quantize");
  return h.call(x, scale, qtype, axis);
}

at::Tensor symmetric_dequantize(const at::Tensor& data, const at::Tensor& scale) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&)>("quanto::symmetric_dequantize");
  return h.call(data, scale);
}

at::Tensor affine_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           std::string_view qtype, int64_t axis, std::optional<int64_t> group_size) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                                      int64_t, std::optional<int64_t>)>("quanto::affine_quantize");
  return h.call(x, scale, shift, qtype, axis, group_size);
}

at::Tensor affine_dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             at::IntArrayRef shape, int64_t axis, std::optional<int64_t> group_size) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::SymIntArrayRef,
                                      int64_t, std::optional<int64_t>)>("quanto::affine_dequantize");
  return h.call(codes, scale, shift, c10::fromIntArrayRefSlow(shape), axis, group_size);
}

at::Tensor pack_codes(const at::Tensor& codes, int64_t bits) {
  static const auto h = op<at::Tensor(const at::Tensor&, int64_t)>("quanto::pack_codes");
  return h.call(codes, bits);
}

at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits, int64_t rows) {
  static const auto h = op<at::Tensor(const at::Tensor&, int64_t, c10::SymInt)>("quanto::unpack_codes");
  return h.call(packed, bits, c10::SymInt(rows));
}

at::Tensor tile_qbits(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                      int64_t group_size) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, int64_t, int64_t, int64_t, int64_t)>("quanto::tile_qbits");
  return h.call(packed, bits, out_features, in_features, group_size);
}

at::Tensor untile_qbits(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                        int64_t group_size) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, int64_t, int64_t, int64_t, int64_t)>("quanto::untile_qbits");
  return h.call(tiled, bits, out_features, in_features, group_size);
}

at::Tensor linear_qbytes(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                         const std::optional<at::Tensor>& bias) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const std::optional<at::Tensor>&)>("quanto::linear_qbytes");
  return h.call(x, w_data, w_scale, bias);
}

at::Tensor linear_qbits(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                        const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                        const std::optional<at::Tensor>& bias) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      int64_t, int64_t, const std::optional<at::Tensor>&)>("quanto::linear_qbits");
  return h.call(x, w_packed, w_scale, w_shift, bits, group_size, bias);
}

at::Tensor linear_qbits_tiled(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                              const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                              const std::optional<at::Tensor>& bias) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, int64_t, int64_t,
                    const std::optional<at::Tensor>&)>("quanto::linear_qbits_tiled");
  return h.call(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
}

at::Tensor linear_qbits_tiled_cat(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                  at::TensorList w_shift, int64_t bits, int64_t group_size,
                                  const c10::List<std::optional<at::Tensor>>& bias) {
  static const auto h = op<at::Tensor(const at::Tensor&, at::TensorList, at::TensorList, at::TensorList,
                                                   int64_t, int64_t, const c10::List<std::optional<at::Tensor>>&)>(
      "quanto::linear_qbits_tiled_cat");
  return h.call(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
}

at::Tensor linear_qbytes_cat(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                             const c10::List<std::optional<at::Tensor>>& bias) {
  static const auto h = op<at::Tensor(const at::Tensor&, at::TensorList, at::TensorList,
                                      const c10::List<std::optional<at::Tensor>>&)>("quanto::linear_qbytes_cat");
  return h.call(x, w_data, w_scale, bias);
}

at::Tensor linear_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                             const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                             const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    int64_t, const std::optional<at::Tensor>&, c10::ScalarType)>("quanto::linear_w4a8_tiled");
  return h.call(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype);
}

at::Tensor linear_w4a8_tiled_cat(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                 at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                 const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype) {
  static const auto h =
      op<at::Tensor(const at::Tensor&, const at::Tensor&, at::TensorList, at::TensorList, at::TensorList, int64_t,
                    const c10::List<std::optional<at::Tensor>>&, c10::ScalarType)>("quanto::linear_w4a8_tiled_cat");
  return h.call(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype);
}

at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                       const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const std::optional<at::Tensor>&, c10::ScalarType)>("quanto::linear_w8a8");
  return h.call(x_data, x_scale, w_data, w_scale, bias, out_dtype);
}

at::Tensor pack_w8a8(const at::Tensor& w_data) {
  static const auto h = op<at::Tensor(const at::Tensor&)>("quanto::pack_w8a8");
  return h.call(w_data);
}

at::Tensor unpack_w8a8(const at::Tensor& w_packed, int64_t out_features, int64_t in_features) {
  static const auto h = op<at::Tensor(const at::Tensor&, int64_t, int64_t)>("quanto::unpack_w8a8");
  return h.call(w_packed, out_features, in_features);
}

at::Tensor linear_w8a8_packed(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                              const at::Tensor& w_scale, int64_t out_features, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype) {
  static const auto h = op<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      int64_t, const std::optional<at::Tensor>&, c10::ScalarType)>(
      "quanto::linear_w8a8_packed");
  return h.call(x_data, x_scale, w_packed, w_scale, out_features, bias, out_dtype);
}

std::string cpu_isa() {
  static const auto h = op<std::string()>("quanto::cpu_isa");
  return h.call();
}

bool force_generic_path(bool enabled) {
  static const auto h = op<bool(bool)>("quanto::force_generic_path");
  return h.call(enabled);
}

}  // namespace quanto::ops
