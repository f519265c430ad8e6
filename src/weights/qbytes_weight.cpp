// QBytesWeight: qint8 / qfloat8* weights, canonical or packed W8A8.
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

// ---- QBytesWeight ----

QBytesWeight::QBytesWeight(const QType& qtype, at::Tensor data, at::Tensor scale)
    : qtype_(&qtype), shape_(data.sizes().vec()), data_(std::move(data)), scale_(std::move(scale)) {
  TORCH_CHECK_VALUE(qtype.bits == 8, "QBytesWeight: qtype must be an 8-bit qtype (qint8, qfloat8*), got ", qtype.name);
  TORCH_CHECK_TYPE(data_.scalar_type() == qtype.dtype, "QBytesWeight: ", qtype.name, " data must be ", qtype.dtype,
                   ", got ", data_.scalar_type());
  TORCH_CHECK_VALUE(data_.dim() >= 1 && data_.numel() > 0, "QBytesWeight: data must be a non-empty weight, got shape ",
                    shape_str(data_.sizes()));
  TORCH_CHECK_TYPE(at::isFloatingType(scale_.scalar_type()), "QBytesWeight: scale must be a float tensor, got ",
                   scale_.scalar_type());
  const auto expected = kQBytesFormat.stored(qtype, shape_, std::nullopt, scale_.scalar_type())[1].shape;
  TORCH_CHECK_VALUE(scale_.sizes().vec() == expected, "QBytesWeight: scale must have shape ", shape_str(expected),
                    " (one value per output channel of data ", shape_str(data_.sizes()), "), got ",
                    shape_str(scale_.sizes()));
  TORCH_CHECK_VALUE(data_.device() == scale_.device(), "QBytesWeight: data and scale must be on one device, got ",
                    data_.device(), " and ", scale_.device());
}

QBytesWeight QBytesWeight::quantize(const at::Tensor& weight, const QType& qtype,
                                    const std::optional<at::Tensor>& scale) {
  TORCH_CHECK_VALUE(qtype.bits == 8, "QBytesWeight::quantize: qtype must be 8-bit, got ", qtype.name);
  at::Tensor s = scale ? *scale : ops::absmax_scale(weight, qtype.name, 0);
  at::Tensor data = ops::symmetric_quantize(weight, s, qtype.name, 0);
  return QBytesWeight(qtype, std::move(data), std::move(s));
}

QBytesWeight QBytesWeight::from_packed(const QType& qtype, std::vector<int64_t> shape, at::Tensor packed,
                                      at::Tensor scale) {
  TORCH_CHECK_VALUE(qtype.name == "qint8" && shape.size() == 2 && shape[0] > 0 && shape[1] > 0,
                    "QBytesWeight::from_packed: the packed W8A8 layout holds non-empty 2-d qint8 weights, got ",
                    qtype.name, " ", shape_str(shape));
  const int64_t blocks = kernels::w8a8_block_count(shape[0]), block_bytes = kernels::w8a8_block_bytes(shape[1]);
  TORCH_CHECK_TYPE(packed.scalar_type() == at::kByte, "QBytesWeight::from_packed: packed data must be uint8, got ",
                   packed.scalar_type());
  TORCH_CHECK_VALUE(packed.dim() == 2 && packed.size(0) == blocks && packed.size(1) == block_bytes,
                    "QBytesWeight::from_packed: packed data of a weight ", shape_str(shape), " must have shape [",
                    blocks, ", ", block_bytes, "], got ", shape_str(packed.sizes()));
  // Validate the scale against a canonical-shaped placeholder of the same geometry.
  QBytesWeight w(qtype, at::empty(shape, packed.options().dtype(qtype.dtype)), std::move(scale));
  TORCH_CHECK_VALUE(w.data_.device() == packed.device(), "QBytesWeight::from_packed: data and scale must be on one device");
  w.data_ = std::move(packed);
  w.layout_ = Layout::packed_w8a8;
  return w;
}

bool QBytesWeight::can_pack() const {
  // The meta device mirrors the CPU (layout_policy.cpp), so that a model requantized onto meta
  // weights holds the layout it gets once loaded; the packing ops have Meta kernels.
  return qtype_ && qtype_->name == "qint8" && shape_.size() == 2 && kernels::can_pack_w8a8(shape_[0], shape_[1]) &&
         (data_.device().is_cpu() || data_.device().is_meta());
}

QBytesWeight QBytesWeight::to_packed() const {
  if (layout_ == Layout::packed_w8a8) return *this;
  TORCH_CHECK_VALUE(can_pack(), "QBytesWeight::to_packed: the packed W8A8 layout needs a 2-d qint8 weight on the CPU (or meta); "
                    "this one is ", qtype_ ? qtype_->name : std::string("undefined"), " ", shape_str(shape_), " on ",
                    data_.device());
  QBytesWeight p = *this;
  p.data_ = ops::pack_w8a8(data_);
  p.layout_ = Layout::packed_w8a8;
  return p;
}

QBytesWeight QBytesWeight::to_canonical() const {
  if (layout_ == Layout::canonical) return *this;
  QBytesWeight c = *this;
  c.data_ = ops::unpack_w8a8(data_, shape_[0], shape_[1]);
  c.layout_ = Layout::canonical;
  return c;
}

at::Tensor QBytesWeight::dequantize() const { return ops::symmetric_dequantize(canonical_data(), scale_); }

QBytesWeight QBytesWeight::to(c10::Device device) const {
  // Only the CPU kernels read the packed layout.
  const QBytesWeight& src = device.is_cpu() ? *this : to_canonical();
  QBytesWeight w = src;
  w.data_ = src.data_.to(device);
  w.scale_ = src.scale_.to(device);
  return w;
}

QBytesWeight QBytesWeight::to(c10::ScalarType scale_dtype) const {
  QBytesWeight w = *this;
  w.scale_ = scale_.to(scale_dtype);
  return w;
}

int64_t QBytesWeight::nbytes() const { return tensor_nbytes(data_) + tensor_nbytes(scale_); }

}  // namespace quanto
