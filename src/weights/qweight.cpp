// QWeight: quantize, read/write the state dict, convert layouts, and pick the linear op, for
// either weight format.
#include <quanto/weights.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <quanto/ops.h>

#include "weights/shape_util.h"

namespace quanto {

using weights_detail::shape_str;

QWeight QWeight::quantize(const at::Tensor& weight, const QType& qtype, std::optional<int64_t> group_size,
                          const std::optional<at::Tensor>& scale, const std::optional<at::Tensor>& shift,
                          bool zero_point) {
  QWeight w;
  if (kQBytesFormat.holds(qtype)) {
    w.bytes = QBytesWeight::quantize(weight, qtype, scale);
  } else {
    w.bits = QBitsWeight::quantize(weight, qtype, group_size, scale, shift, zero_point);
  }
  return w;
}

QWeight QWeight::from_state(const QType& qtype, const std::vector<int64_t>& shape, std::optional<int64_t> group_size,
                            const std::function<std::optional<at::Tensor>(const std::string&)>& get) {
  const WeightFormat& format = weight_format(qtype);
  auto need = [&](std::string_view key) {
    auto t = get(std::string(key));
    TORCH_CHECK_VALUE(t.has_value(), "missing key '", key, "' for ", qtype.name, " weights");
    return *t;
  };
  QWeight w;
  if (&format == &kQBytesFormat) {
    at::Tensor data = need(format.data_key);
    TORCH_CHECK_VALUE(data.sizes().vec() == shape, "shape mismatch: '", format.data_key, "' is ",
                      shape_str(data.sizes()), " but the model's weight is ", shape_str(shape));
    w.bytes = QBytesWeight(qtype, std::move(data), need(format.scale_key));
  } else {
    w.bits = QBitsWeight(qtype, shape, group_size, need(format.data_key), need(format.scale_key),
                         need(format.shift_key));
  }
  return w;
}

QWeight QWeight::wrap(const QType& qtype, const std::vector<int64_t>& shape, std::optional<int64_t> group_size,
                      WeightLayout layout, const at::Tensor& data, const at::Tensor& scale, const at::Tensor& shift) {
  QWeight w;
  switch (layout) {
    case WeightLayout::packed_w8a8:
      w.bytes = QBytesWeight::from_packed(qtype, shape, data, scale);
      break;
    case WeightLayout::tiled:
      w.bits = QBitsWeight::from_tiled(qtype, shape, group_size, data, scale, shift);
      break;
    case WeightLayout::canonical:
      if (kQBytesFormat.holds(qtype)) w.bytes = QBytesWeight(qtype, data, scale);
      else w.bits = QBitsWeight(qtype, shape, group_size, data, scale, shift);
      break;
  }
  return w;
}

WeightLayout QWeight::layout() const {
  if (bytes.defined())
    return bytes.layout() == QBytesWeight::Layout::packed_w8a8 ? WeightLayout::packed_w8a8 : WeightLayout::canonical;
  return bits.layout() == QBitsWeight::Layout::tiled ? WeightLayout::tiled : WeightLayout::canonical;
}

c10::Device QWeight::device() const { return bytes.defined() ? bytes.data().device() : bits.data().device(); }

QWeight QWeight::with_layout(WeightLayout target) const {
  TORCH_CHECK_VALUE(defined(), "QWeight::with_layout: the weight is undefined");
  QWeight w = *this;
  if (target == layout()) return w;
  switch (target) {
    case WeightLayout::canonical:
      if (w.bytes.defined()) w.bytes = bytes.to_canonical();
      else w.bits = bits.to_canonical();
      break;
    case WeightLayout::tiled:
      TORCH_CHECK_VALUE(bits.defined(), "QWeight::with_layout: the tiled layout holds qint2/qint4 weights, not ",
                        qtype().name);
      w.bits = bits.to_tiled();
      break;
    case WeightLayout::packed_w8a8:
      TORCH_CHECK_VALUE(bytes.defined(), "QWeight::with_layout: the packed W8A8 layout holds qint8 weights, not ",
                        qtype().name);
      w.bytes = bytes.to_packed();
      break;
  }
  return w;
}

QWeight QWeight::to(c10::Device device, const QType* activations, bool linear) const {
  // Layouts other than the canonical one are CPU layouts: convert before leaving the CPU and
  // after arriving on it, so every device reads the layout its kernels want.
  QWeight w = to_canonical();
  if (w.bytes.defined()) w.bytes = w.bytes.to(device);
  else w.bits = w.bits.to(device);
  return w.with_layout(choose_layout(qtype(), shape(), bits.defined() ? bits.group_size() : std::nullopt, device,
                                     activations, linear));
}

QWeight QWeight::to(c10::ScalarType param_dtype) const {
  QWeight w = *this;
  if (w.bytes.defined()) w.bytes = bytes.to(param_dtype);
  else w.bits = bits.to(param_dtype);
  return w;
}

std::vector<std::pair<std::string, at::Tensor>> QWeight::state() const {
  const WeightFormat& f = format();
  if (bytes.defined()) {
    return {{std::string(f.data_key), bytes.canonical_data()}, {std::string(f.scale_key), bytes.scale()}};
  }
  const QBitsWeight c = bits.to_canonical();
  return {{std::string(f.data_key), c.data()}, {std::string(f.scale_key), c.scale()},
          {std::string(f.shift_key), c.shift()}};
}

at::Tensor QWeight::dequantize() const { return bytes.defined() ? bytes.dequantize() : bits.dequantize(); }

at::Tensor QWeight::linear(const at::Tensor& x, const std::optional<at::Tensor>& bias) const {
  TORCH_CHECK_VALUE(defined() && shape().size() == 2, "QWeight::linear: needs a 2-d weight, got ", qtype().name, " ",
                    shape_str(shape()));
  switch (layout()) {
    case WeightLayout::packed_w8a8:
      // Weight-only use of a packed weight (activations switched off after freezing).
      return ops::linear_qbytes(x, bytes.canonical_data(), bytes.scale(), bias);
    case WeightLayout::tiled:
      return ops::linear_qbits_tiled(x, bits.data(), bits.scale(), bits.shift(), bits.bits(),
                                     bits.kernel_group_size(), bias);
    case WeightLayout::canonical:
      break;
  }
  if (bytes.defined()) return ops::linear_qbytes(x, bytes.data(), bytes.scale(), bias);
  return ops::linear_qbits(x, bits.data(), bits.scale(), bits.shift(), bits.bits(), bits.kernel_group_size(), bias);
}

at::Tensor QWeight::linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale,
                                const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) const {
  TORCH_CHECK_VALUE(defined() && (qtype().name == "qint8" || qtype().name == "qint4") && shape().size() == 2,
                    "QWeight::linear_w8a8: needs a 2-d qint8 or qint4 weight, got ",
                    defined() ? qtype().name : "none");
  if (bits.defined()) {
    // W4A8: integer dot products on the tiled layout; any other layout (the canonical one of a
    // device without CPU kernels, or groups that cannot be tiled) runs the float path on the
    // dequantized activations, the same values within float rounding.
    if (layout() == WeightLayout::tiled)
      return ops::linear_w4a8_tiled(x_data, x_scale, bits.data(), bits.scale(), bits.shift(), bits.kernel_group_size(),
                                    bias, out_dtype);
    const at::Tensor x = x_data.to(at::kFloat) * x_scale.to(at::kFloat);
    return linear(x, bias.has_value() ? std::optional<at::Tensor>(bias->to(at::kFloat)) : std::nullopt).to(out_dtype);
  }
  if (layout() == WeightLayout::packed_w8a8) {
    return ops::linear_w8a8_packed(x_data, x_scale, bytes.data(), bytes.scale(), bytes.shape()[0], bias, out_dtype);
  }
  return ops::linear_w8a8(x_data, x_scale, bytes.data(), bytes.scale(), bias, out_dtype);
}

}  // namespace quanto
