// QActivation: int8 / float8 activations with a per-tensor scale.
#include <quanto/tensor.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

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
  TORCH_CHECK_VALUE(scale_.dim() == 0, "QActivation: the scale must be 0-dim (per tensor), got shape ",
                    shape_str(scale_.sizes()));
}

QActivation QActivation::quantize(const at::Tensor& x, const QType& qtype, const at::Tensor& scale) {
  return QActivation(qtype, ops::symmetric_quantize(x, scale, qtype.name), scale);
}

at::Tensor QActivation::dequantize() const { return ops::symmetric_dequantize(data_, scale_); }

QActivation QActivation::to(c10::Device device) const {
  return QActivation(*qtype_, data_.to(device), scale_.to(device));
}

QActivation QActivation::to(c10::ScalarType scale_dtype) const {
  return QActivation(*qtype_, data_, scale_.to(scale_dtype));
}

int64_t QActivation::nbytes() const { return tensor_nbytes(data_) + tensor_nbytes(scale_); }


int64_t tensor_nbytes(const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

}  // namespace quanto
