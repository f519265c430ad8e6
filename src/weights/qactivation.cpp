// QActivation: int8 / float8 activations with a per-tensor (static) or per-token (dynamic) scale
// (torch.ops.quanto.quantize_per_token's codes).
#include <quanto/tensor.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <quanto/ops.h>
#include <quanto/weights.h>

#include "kernels/layout_geometry.h"
#include "weights/shape_util.h"

namespace quanto {

using weights_detail::numel_of;
using weights_detail::shape_str;

// ---- QActivation ----

QActivation::QActivation(const QType& qtype, at::Tensor data, at::Tensor scale)
    : qtype_(&qtype), data_(std::move(data)), scale_(std::move(scale)) {
  TORCH_CHECK_VALUE(qtype.bits == 8, "QActivation: activations are int8 or float8 (qint8, qfloat8*), got ",
                    qtype.name);
  TORCH_CHECK_TYPE(data_.scalar_type() == qtype.dtype, "QActivation: ", qtype.name, " data must be ", qtype.dtype,
                   ", got ", data_.scalar_type());
  bool per_token = scale_.dim() == data_.dim() && data_.dim() >= 1 && scale_.sym_size(-1) == 1;
  for (int64_t d = 0; per_token && d + 1 < data_.dim(); ++d) per_token = scale_.sym_size(d) == data_.sym_size(d);
  TORCH_CHECK_VALUE(scale_.dim() == 0 || per_token, "QActivation: the scale must be 0-dim (static, per tensor) or ",
                    "hold one value per token, shaped like the data with a last dimension of 1; got scale shape ",
                    scale_.sym_sizes(), " for data of shape ", data_.sym_sizes());
}

QActivation QActivation::quantize(const at::Tensor& x, const QType& qtype, const at::Tensor& scale) {
  return QActivation(qtype, ops::symmetric_quantize(x, scale, qtype.name), scale);
}

QActivation QActivation::quantize_per_token(const at::Tensor& x, const QType& qtype) {
  auto [data, scale] = ops::quantize_per_token(x, qtype.name);
  return QActivation(qtype, std::move(data), std::move(scale));
}

at::Tensor QActivation::dequantize() const {
  if (!per_token()) return ops::symmetric_dequantize(data_, scale_);
  const c10::SymInt k = data_.sym_size(-1);
  return ops::symmetric_dequantize(data_.reshape_symint({-1, k}), scale_.reshape_symint({-1, 1}))
      .view_symint(data_.sym_sizes());
}

QActivation QActivation::to(c10::Device device) const {
  return QActivation(*qtype_, data_.to(device), scale_.to(device));
}

QActivation QActivation::to(c10::ScalarType scale_dtype) const {
  return QActivation(*qtype_, data_, scale_.to(scale_dtype));
}

int64_t QActivation::nbytes() const { return tensor_nbytes(data_) + tensor_nbytes(scale_); }


int64_t tensor_nbytes(const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

}  // namespace quanto
