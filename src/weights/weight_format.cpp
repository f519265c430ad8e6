// The two weight formats: keys and canonical shapes (docs/format.md, "Weights").
#include <quanto/weights.h>

#include <c10/util/Exception.h>

#include <algorithm>

#include "weights/shape_util.h"

namespace quanto {
namespace {

using weights_detail::numel_of;

// One value per output channel, broadcastable over the weight: [out, 1, ...].
std::vector<int64_t> per_channel_shape(const std::vector<int64_t>& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  s[0] = shape[0];
  return s;
}

}  // namespace

// optimum-quanto names its tensors after its tensor subclasses' attributes: an 8-bit weight
// is a QBytesTensor (_data, _scale); a 2/4-bit one a QBitsTensor whose _data is itself a packed
// tensor (_data._data), plus _scale and _shift.
const WeightFormat kQBytesFormat{"qbytes", "weight._data", "weight._scale", ""};
const WeightFormat kQBitsFormat{"qbits", "weight._data._data", "weight._scale", "weight._shift"};

bool WeightFormat::holds(const QType& qtype) const { return (qtype.bits == 8) == shift_key.empty(); }

std::vector<std::string> WeightFormat::keys() const {
  std::vector<std::string> k{std::string(data_key), std::string(scale_key)};
  if (!shift_key.empty()) k.emplace_back(shift_key);
  return k;
}

std::vector<StoredTensor> WeightFormat::stored(const QType& qtype, const std::vector<int64_t>& shape,
                                               std::optional<int64_t> group_size, c10::ScalarType param_dtype,
                                               bool zero_point) const {
  TORCH_CHECK_VALUE(holds(qtype), "weight format '", name, "' does not hold ", qtype.name);
  TORCH_CHECK_VALUE(!shape.empty() && numel_of(shape) > 0, qtype.name, ": the weight shape must be non-empty");
  if (shift_key.empty()) {
    return {{std::string(data_key), shape, qtype.dtype}, {std::string(scale_key), per_channel_shape(shape), param_dtype}};
  }
  const int64_t numel = numel_of(shape);
  // Codes are grouped as a row-major [numel / gs, gs] matrix (or kept in the weight's shape when
  // per channel), then packed along dim 0, 8 / bits rows per byte row.
  std::vector<int64_t> codes = group_size ? std::vector<int64_t>{numel / *group_size, *group_size} : shape;
  std::vector<int64_t> params = group_size ? std::vector<int64_t>{numel / *group_size, 1} : per_channel_shape(shape);
  const int64_t per_byte = 8 / qtype.bits;
  codes[0] = (codes[0] + per_byte - 1) / per_byte;
  return {{std::string(data_key), codes, c10::ScalarType::Byte},
          {std::string(scale_key), params, param_dtype},
          {std::string(shift_key), params, zero_point ? c10::ScalarType::Byte : param_dtype}};
}

const WeightFormat& weight_format(const QType& qtype) {
  return kQBytesFormat.holds(qtype) ? kQBytesFormat : kQBitsFormat;
}

const std::vector<std::string>& all_weight_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k;
    for (const WeightFormat* f : {&kQBitsFormat, &kQBytesFormat})
      for (auto& key : f->keys())
        if (std::find(k.begin(), k.end(), key) == k.end()) k.push_back(key);
    std::stable_sort(k.begin(), k.end(), [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
    return k;
  }();
  return keys;
}

const std::vector<std::string>& quantized_module_keys() {
  static const std::vector<std::string> keys = [] {
    std::vector<std::string> k = all_weight_keys();
    k.emplace_back(kInputScaleKey);
    k.emplace_back(kOutputScaleKey);
    return k;
  }();
  return keys;
}

}  // namespace quanto
