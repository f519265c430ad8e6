#include <quanto/tensor.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <quanto/ops.h>

#include <sstream>

namespace quanto {
namespace {

std::string shape_str(at::IntArrayRef s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

// The per-channel scale shape of a weight: [out, 1, ...].
std::vector<int64_t> channel_param_shape(at::IntArrayRef shape) {
  std::vector<int64_t> s(shape.size(), 1);
  s[0] = shape[0];
  return s;
}

}  // namespace

int64_t tensor_nbytes(const at::Tensor& t) { return t.defined() ? t.numel() * static_cast<int64_t>(t.element_size()) : 0; }

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
  const auto expected = channel_param_shape(data_.sizes());
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
  const int64_t blocks = (shape[0] + 63) / 64, block_bytes = ((shape[1] + 3) / 4 + 1) * 64 * 4;
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
  return qtype_ && qtype_->name == "qint8" && shape_.size() == 2 && shape_[1] < (int64_t{1} << 17) &&
         data_.device().is_cpu();
}

QBytesWeight QBytesWeight::to_packed() const {
  if (layout_ == Layout::packed_w8a8) return *this;
  TORCH_CHECK_VALUE(can_pack(), "QBytesWeight::to_packed: the packed W8A8 layout needs a 2-d qint8 weight on the CPU; "
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
  // Canonical shapes (FORMAT.md): grouped codes [numel/gs, gs] (or the weight's shape per axis),
  // packed along dim 0 into ceil(rows / (8 / bits)) rows; params [numel/gs, 1] (or [out, 1, ...]).
  std::vector<int64_t> codes_shape, param_shape;
  if (group_size_) {
    codes_shape = {numel / *group_size_, *group_size_};
    param_shape = {numel / *group_size_, 1};
  } else {
    codes_shape = shape_;
    param_shape = channel_param_shape(shape_);
  }
  const int64_t k = 8 / qtype.bits;
  std::vector<int64_t> packed_shape = codes_shape;
  packed_shape[0] = (codes_shape[0] + k - 1) / k;
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
  TORCH_CHECK_VALUE(tiled.dim() == 2 && tiled.size(0) == shape[0] && tiled.size(1) == shape[1] * qtype.bits / 8,
                    "QBitsWeight::from_tiled: tiled data of a weight ", shape_str(shape), " must have shape [",
                    shape[0], ", ", shape[1] * qtype.bits / 8, "], got ", shape_str(tiled.sizes()));
  // Validate everything else on a canonical-shaped placeholder of the same geometry.
  const int64_t gs = group_size.value_or(shape[1]);
  const int64_t groups = shape[0] * shape[1] / gs;
  const int64_t per_byte = 8 / qtype.bits;
  QBitsWeight w(qtype, shape, group_size, at::empty({(groups + per_byte - 1) / per_byte, gs}, tiled.options()),
                std::move(scale), std::move(shift));
  TORCH_CHECK_VALUE(w.can_tile(), "QBitsWeight::from_tiled: group size ", gs, " is not a multiple of ",
                    128 / qtype.bits);
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
  // A tiled block is 16 bytes: 32 4-bit or 64 2-bit codes.
  return qtype_ && (qtype_->bits == 4 || qtype_->bits == 2) && shape_.size() == 2 &&
         kernel_group_size() % (128 / qtype_->bits) == 0;
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

}  // namespace quanto
