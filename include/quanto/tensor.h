// Quantized tensors of the C++ API: plain value types (not at::Tensor subclasses) that hold the
// storage tensors of one quantized weight or activation. All arithmetic goes through
// quanto::ops (the dispatcher), so every device and kernel set computes the same values.
//
// Layouts: the "canonical" layout is optimum-quanto's (docs/format.md), the one written to and
// read from files. QBitsWeight may also hold the tiled 2/4-bit layout of the fast CPU kernels,
// and QBytesWeight the packed W8A8 (VNNI) layout of a 2-d qint8 weight; to_canonical() and
// to_tiled()/to_packed() convert between them exactly.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <quanto/qtype.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace quanto {

// int8 or float8 weight, symmetric, one scale per output channel (axis 0):
// value = data * scale. data has the weight's shape; scale is [out, 1, ...] in the float dtype.
class QBytesWeight {
 public:
  // packed_w8a8: a 2-d qint8 weight in ops::pack_w8a8's layout (uint8 [ceil(out / 64), bytes per
  // block], row sums included), read by ops::linear_w8a8_packed; CPU only.
  enum class Layout { canonical, packed_w8a8 };

  QBytesWeight() = default;
  // Validates and wraps canonical tensors (as a state dict stores them, quanto::kQBytesFormat).
  QBytesWeight(const QType& qtype, at::Tensor data, at::Tensor scale);
  // Wraps a 2-d qint8 weight of `shape` already in the packed W8A8 layout.
  static QBytesWeight from_packed(const QType& qtype, std::vector<int64_t> shape, at::Tensor packed,
                                  at::Tensor scale);

  // Quantizes a float weight [out, ...]: scale = absmax per output channel / qmax unless given.
  static QBytesWeight quantize(const at::Tensor& weight, const QType& qtype,
                               const std::optional<at::Tensor>& scale = std::nullopt);

  const QType& qtype() const { return *qtype_; }
  const at::Tensor& data() const { return data_; }  // in layout()
  const at::Tensor& scale() const { return scale_; }
  std::vector<int64_t> shape() const { return shape_; }
  Layout layout() const { return layout_; }
  bool defined() const { return qtype_ != nullptr; }

  // The packed layout needs a 2-d qint8 weight on the CPU.
  bool can_pack() const;
  QBytesWeight to_packed() const;     // exact; requires can_pack()
  QBytesWeight to_canonical() const;  // exact
  at::Tensor canonical_data() const { return to_canonical().data(); }

  at::Tensor dequantize() const;               // float tensor in scale's dtype
  QBytesWeight to(c10::Device device) const;   // moves data and scale (canonical off the CPU)
  QBytesWeight to(c10::ScalarType scale_dtype) const;  // converts the scale only
  int64_t nbytes() const;                      // storage bytes (data in its layout + scale)

 private:
  const QType* qtype_ = nullptr;
  std::vector<int64_t> shape_;
  Layout layout_ = Layout::canonical;
  at::Tensor data_, scale_;
};

// 2/4-bit weight, affine, grouped along axis 0 (docs/format.md): codes 0 … 2^b-1, value =
// code * scale - shift (float shift) or (code - zero_point) * scale (uint8 zero-point).
// group_size nullopt means one group per output channel (optimum-quanto's per-axis layout).
class QBitsWeight {
 public:
  enum class Layout { canonical, tiled };

  QBitsWeight() = default;
  // Validates and wraps canonical tensors as a state dict stores them (quanto::kQBitsFormat):
  // packed codes, scale and shift; `shape` is the float weight's.
  QBitsWeight(const QType& qtype, std::vector<int64_t> shape, std::optional<int64_t> group_size, at::Tensor packed,
              at::Tensor scale, at::Tensor shift);

  // Wraps codes already in the tiled layout (data [out, in * bits / 8]) of a 2-d 4-bit weight.
  static QBitsWeight from_tiled(const QType& qtype, std::vector<int64_t> shape, std::optional<int64_t> group_size,
                                at::Tensor tiled, at::Tensor scale, at::Tensor shift);

  // Quantizes a float weight [out, ...]. scale/shift default to ops::minmax_scale_shift (the
  // "minmax" optimizer); zero_point stores the shift as an integer uint8 zero-point.
  static QBitsWeight quantize(const at::Tensor& weight, const QType& qtype, std::optional<int64_t> group_size,
                              const std::optional<at::Tensor>& scale = std::nullopt,
                              const std::optional<at::Tensor>& shift = std::nullopt, bool zero_point = false);

  const QType& qtype() const { return *qtype_; }
  int bits() const { return qtype_->bits; }
  const std::vector<int64_t>& shape() const { return shape_; }
  std::optional<int64_t> group_size() const { return group_size_; }
  int64_t axis() const { return 0; }
  // The group size the linear kernels take: group_size, or in_features for one group per channel.
  int64_t kernel_group_size() const;
  int64_t out_features() const { return shape_.at(0); }
  int64_t in_features() const;  // numel / out_features
  Layout layout() const { return layout_; }
  bool zero_point() const { return shift_.scalar_type() == at::kByte; }
  const at::Tensor& data() const { return data_; }  // packed codes in layout()
  const at::Tensor& scale() const { return scale_; }
  const at::Tensor& shift() const { return shift_; }
  bool defined() const { return qtype_ != nullptr; }

  // The tiled layout needs 4 bits, a 2-d weight and kernel_group_size() % 32 == 0.
  bool can_tile() const;
  QBitsWeight to_tiled() const;      // exact; requires can_tile()
  QBitsWeight to_canonical() const;  // exact
  at::Tensor canonical_data() const { return to_canonical().data(); }

  at::Tensor dequantize() const;
  QBitsWeight to(c10::Device device) const;
  QBitsWeight to(c10::ScalarType scale_dtype) const;  // scale (and a float shift)
  int64_t nbytes() const;

 private:
  const QType* qtype_ = nullptr;
  std::vector<int64_t> shape_;
  std::optional<int64_t> group_size_;
  Layout layout_ = Layout::canonical;
  at::Tensor data_, scale_, shift_;
};

// A quantized activation: int8 or float8 data and its scale, value = data * scale. The scale is
// either 0-dim (static, per tensor: calibrated once) or one value per token (dynamic: computed
// from each row of the last dimension at run time), shaped data.shape[:-1] + [1].
class QActivation {
 public:
  QActivation() = default;
  QActivation(const QType& qtype, at::Tensor data, at::Tensor scale);
  // clamp(round(x / scale)) in the qtype's storage dtype; scale is 0-dim.
  static QActivation quantize(const at::Tensor& x, const QType& qtype, const at::Tensor& scale);
  // Dynamic per-token quantization: scale = amax(|row|) / qmax of each row of x's last dimension
  // (1 for an all-zero row), in x's dtype, then the rows quantized with their scale. x must hold
  // at least one element and be finite.
  static QActivation quantize_per_token(const at::Tensor& x, const QType& qtype);
  bool per_token() const { return scale_.dim() != 0; }

  const QType& qtype() const { return *qtype_; }
  const at::Tensor& data() const { return data_; }
  const at::Tensor& scale() const { return scale_; }
  at::Tensor dequantize() const;
  QActivation to(c10::Device device) const;
  QActivation to(c10::ScalarType scale_dtype) const;
  int64_t nbytes() const;

 private:
  const QType* qtype_ = nullptr;
  at::Tensor data_, scale_;
};

// Bytes of a tensor's elements (numel * element size).
int64_t tensor_nbytes(const at::Tensor& t);

}  // namespace quanto
