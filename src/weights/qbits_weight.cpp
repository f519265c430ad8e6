// QBitsWeight: qint2 / qint4 weights, canonical or tiled.
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

// ---- QBitsWeight ----

QBitsWeight::QBitsWeight(const QType& qtype, std::vector<int64_t> shape, std::optional<int64_t> group_size,
                         at::Tensor packed, at::Tensor scale, at::Tensor shift)
    : qtype_(&qtype),
      shape_(std::move(shape)),
      group_size_(group_size),
      data_(std::move(packed)),
      scale_(std::move(scale)),
      shift_(std::move(shift)) {
  TORCH_CHECK_VALUE(qtype.bits == 2 || qtype.bits == 4, "QBitsWeight: qtype must be qint2 or qint4, got ",
                    qtype.name);
  TORCH_CHECK_VALUE(!shape_.empty() && numel_of(shape_) > 0, "QBitsWeight: the weight shape must be non-empty, got ",
                    shape_str(shape_));
  const int64_t numel = numel_of(shape_);
  const int64_t in = numel / shape_[0];
  if (group_size_) {
    TORCH_CHECK_VALUE(*group_size_ > 0 && in % *group_size_ == 0, "QBitsWeight: group_size ", *group_size_,
                      " must divide the ", in, " input features of a weight of shape ", shape_str(shape_));
  }
  TORCH_CHECK_TYPE(data_.scalar_type() == at::kByte, "QBitsWeight: packed data must be uint8, got ",
                   data_.scalar_type());
  TORCH_CHECK_TYPE(at::isFloatingType(scale_.scalar_type()), "QBitsWeight: scale must be a float tensor, got ",
                   scale_.scalar_type());
  TORCH_CHECK_TYPE(shift_.scalar_type() == at::kByte || at::isFloatingType(shift_.scalar_type()),
                   "QBitsWeight: shift must be a float tensor or a uint8 zero-point, got ", shift_.scalar_type());
  const auto stored = kQBitsFormat.stored(qtype, shape_, group_size_, scale_.scalar_type(), zero_point());
  const std::vector<int64_t>& packed_shape = stored[0].shape;
  const std::vector<int64_t>& param_shape = stored[1].shape;
  TORCH_CHECK_VALUE(data_.sizes().vec() == packed_shape, "QBitsWeight: packed ", qtype.name, " data of a weight ",
                    shape_str(shape_), " with group size ",
                    group_size_ ? std::to_string(*group_size_) : std::string("none (per channel)"), " must have shape ",
                    shape_str(packed_shape), ", got ", shape_str(data_.sizes()));
  TORCH_CHECK_VALUE(scale_.sizes().vec() == param_shape, "QBitsWeight: scale must have shape ", shape_str(param_shape),
                    ", got ", shape_str(scale_.sizes()));
  TORCH_CHECK_VALUE(shift_.sizes().vec() == param_shape, "QBitsWeight: shift must have shape ", shape_str(param_shape),
                    ", got ", shape_str(shift_.sizes()));
  TORCH_CHECK_VALUE(data_.device() == scale_.device() && data_.device() == shift_.device(),
                    "QBitsWeight: data, scale and shift must be on one device");
}

QBitsWeight QBitsWeight::from_tiled(const QType& qtype, std::vector<int64_t> shape, std::optional<int64_t> group_size,
                                    at::Tensor tiled, at::Tensor scale, at::Tensor shift) {
  TORCH_CHECK_VALUE((qtype.bits == 4 || qtype.bits == 2) && shape.size() == 2, "QBitsWeight::from_tiled: the tiled "
                    "layout holds 2-d qint4 or qint2 weights, got ", qtype.name, " ", shape_str(shape));
  const int64_t row_bytes = kernels::tiled_row_bytes(qtype.bits, shape[1]);
  TORCH_CHECK_VALUE(tiled.dim() == 2 && tiled.size(0) == shape[0] && tiled.size(1) == row_bytes,
                    "QBitsWeight::from_tiled: tiled data of a weight ", shape_str(shape), " must have shape [",
                    shape[0], ", ", row_bytes, "], got ", shape_str(tiled.sizes()));
  // Validate everything else on a canonical-shaped placeholder of the same geometry.
  const int64_t gs = group_size.value_or(shape[1]);
  const auto canonical = kQBitsFormat.stored(qtype, shape, group_size, scale.scalar_type())[0].shape;
  QBitsWeight w(qtype, shape, group_size, at::empty(canonical, tiled.options()), std::move(scale), std::move(shift));
  TORCH_CHECK_VALUE(w.can_tile(), "QBitsWeight::from_tiled: group size ", gs, " is not a multiple of ",
                    kernels::tile_block_codes(qtype.bits));
  w.data_ = std::move(tiled);
  w.layout_ = Layout::tiled;
  return w;
}

QBitsWeight QBitsWeight::quantize(const at::Tensor& weight, const QType& qtype, std::optional<int64_t> group_size,
                                  const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                                  bool zero_point) {
  TORCH_CHECK_VALUE(qtype.bits == 2 || qtype.bits == 4, "QBitsWeight::quantize: qtype must be qint2 or qint4, got ",
                    qtype.name);
  TORCH_CHECK_VALUE(scale.has_value() == shift.has_value(),
                    "QBitsWeight::quantize: give both scale and shift, or neither");
  at::Tensor s, sh;
  if (scale) {
    s = *scale;
    sh = *shift;
  } else {
    std::tie(s, sh) = ops::minmax_scale_shift(weight, qtype.name, 0, group_size);
  }
  if (zero_point && sh.scalar_type() != at::kByte) sh = ops::shift_to_zeropoint(s, sh, qtype.name);
  at::Tensor codes = ops::affine_quantize(weight, s, sh, qtype.name, 0, group_size);
  at::Tensor packed = ops::pack_codes(codes, qtype.bits);
  return QBitsWeight(qtype, weight.sizes().vec(), group_size, std::move(packed), std::move(s), std::move(sh));
}

int64_t QBitsWeight::in_features() const { return numel_of(shape_) / shape_.at(0); }

int64_t QBitsWeight::kernel_group_size() const { return group_size_.value_or(in_features()); }

bool QBitsWeight::can_tile() const {
  return qtype_ && shape_.size() == 2 && kernels::can_tile(qtype_->bits, kernel_group_size());
}

QBitsWeight QBitsWeight::to_tiled() const {
  if (layout_ == Layout::tiled) return *this;
  TORCH_CHECK_VALUE(can_tile(), "QBitsWeight::to_tiled: the tiled layout needs a 2-d 4-bit (2-bit) weight whose group "
                    "size is a multiple of 32 (64); this one is ", qtype_->name, " ", shape_str(shape_), " with group size ",
                    kernel_group_size());
  QBitsWeight t = *this;
  t.data_ = ops::tile_qbits(data_, bits(), out_features(), in_features(), kernel_group_size());
  t.layout_ = Layout::tiled;
  return t;
}

QBitsWeight QBitsWeight::to_canonical() const {
  if (layout_ == Layout::canonical) return *this;
  QBitsWeight c = *this;
  c.data_ = ops::untile_qbits(data_, bits(), out_features(), in_features(), kernel_group_size());
  c.layout_ = Layout::canonical;
  return c;
}

at::Tensor QBitsWeight::dequantize() const {
  const at::Tensor packed = canonical_data();
  const int64_t rows = group_size_ ? numel_of(shape_) / *group_size_ : shape_[0];
  at::Tensor codes = ops::unpack_codes(packed, bits(), rows);
  return ops::affine_dequantize(codes, scale_, shift_, shape_, 0, group_size_);
}

QBitsWeight QBitsWeight::to(c10::Device device) const {
  QBitsWeight w = *this;
  w.data_ = data_.to(device);
  w.scale_ = scale_.to(device);
  w.shift_ = shift_.to(device);
  return w;
}

QBitsWeight QBitsWeight::to(c10::ScalarType scale_dtype) const {
  QBitsWeight w = *this;
  w.scale_ = scale_.to(scale_dtype);
  if (!zero_point()) w.shift_ = shift_.to(scale_dtype);
  return w;
}

int64_t QBitsWeight::nbytes() const { return tensor_nbytes(data_) + tensor_nbytes(scale_) + tensor_nbytes(shift_); }

}  // namespace quanto
