// The weights layer: one owner for each quantized weight format.
//
// A quantized weight is in one of two formats (docs/format.md), each a row of this layer:
//  - "qbytes": qint8 / qfloat8* codes, symmetric, one scale per output channel;
//  - "qbits":  qint2 / qint4 codes, affine, grouped along the input features, with a float shift
//              or a uint8 integer zero-point.
// Each row owns its state_dict keys and canonical shapes/dtypes, how a float weight is quantized,
// which in-memory layout a device and CPU ISA get (with exact round trips to the canonical one),
// and which op runs linear(x). The C++ layers, the CLI and (through a few introspection ops,
// torch.ops.quanto.weight_*) the Python package all ask this layer instead of re-deriving it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <quanto/qtype.h>
#include <quanto/tensor.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quanto {

// The activation scales every quantized module stores beside its weight (0-dim, 1.0 until
// calibrated), relative to the module.
inline constexpr std::string_view kInputScaleKey = "input_scale";
inline constexpr std::string_view kOutputScaleKey = "output_scale";

// In-memory layouts. Files always hold the canonical one.
//  - canonical:   optimum-quanto's layout, read by every device (generic ATen path included);
//  - tiled:       2/4-bit codes with each output row contiguous (fast CPU kernels);
//  - packed_w8a8: qint8 weights in VNNI blocks with row sums (CPU W8A8 kernels).
enum class WeightLayout { canonical, tiled, packed_w8a8 };
const char* layout_name(WeightLayout layout);
// Parses a layout name; throws c10::ValueError listing the names.
WeightLayout layout_from_name(std::string_view name);

// One tensor of a quantized weight as a state dict holds it: key relative to the module
// ("weight._data", ...), canonical shape, dtype.
struct StoredTensor {
  std::string key;
  std::vector<int64_t> shape;
  c10::ScalarType dtype;
};

// A weight format: the rows of the weights layer.
struct WeightFormat {
  std::string_view name;       // "qbytes" or "qbits"
  std::string_view data_key;   // canonical codes
  std::string_view scale_key;  // float scales
  std::string_view shift_key;  // "" when the format has no shift
  bool holds(const QType& qtype) const;
  // The keys the format stores, in the order they are written.
  std::vector<std::string> keys() const;
  // Canonical tensors of a weight of `shape` (float weight's shape, out-first) quantized to
  // `qtype` with `group_size` (2/4-bit only; nullopt: one group per output channel); scales (and
  // a float shift) in `param_dtype`, a zero-point shift in uint8.
  std::vector<StoredTensor> stored(const QType& qtype, const std::vector<int64_t>& shape,
                                   std::optional<int64_t> group_size, c10::ScalarType param_dtype,
                                   bool zero_point = false) const;
};
extern const WeightFormat kQBytesFormat;
extern const WeightFormat kQBitsFormat;
// The row that holds `qtype` (every qtype has one).
const WeightFormat& weight_format(const QType& qtype);
// Every key any format stores ("weight._data._data", "weight._data", ...), longest first, so a
// tool can recognise the entries of a quantized module by suffix.
const std::vector<std::string>& all_weight_keys();
// all_weight_keys() then the activation scale keys: every key a quantized module adds.
const std::vector<std::string>& quantized_module_keys();

// The in-memory layout a weight gets when it is frozen or loaded on `device`:
//  - tiled: 2/4-bit weights of linear layers on the CPU whose groups fill whole tiles;
//  - packed_w8a8: qint8 weights of linear layers with qint8 activations on a CPU whose kernel set
//    has integer dot products (VNNI): measured faster there; on AVX2 and the generic kernels the
//    canonical layout is faster at every batch size;
//  - canonical otherwise (every other device: the generic ATen path reads it), and on the CPU too
//    while the generic path is forced (quanto::ops::ForceGenericPath), which stands for such a device.
// `cpu_isa` is the kernel set in use ("" = ask the dispatcher); `activations` nullptr = none.
WeightLayout choose_layout(const QType& weights, const std::vector<int64_t>& shape, std::optional<int64_t> group_size,
                           c10::Device device, const QType* activations, bool linear,
                           std::string_view cpu_isa = "");

// A quantized weight in one of the two formats (exactly one member is defined), in any layout.
struct QWeight {
  QBytesWeight bytes;  // qint8, qfloat8*
  QBitsWeight bits;    // qint2, qint4

  // Quantizes a float weight [out, ...]. scale/shift: the optimizer's parameters (both nullopt:
  // absmax for 8-bit, min/max for 2/4-bit); zero_point stores a 2/4-bit shift as uint8.
  static QWeight quantize(const at::Tensor& weight, const QType& qtype, std::optional<int64_t> group_size,
                          const std::optional<at::Tensor>& scale = std::nullopt,
                          const std::optional<at::Tensor>& shift = std::nullopt, bool zero_point = false);
  // Reads the canonical tensors from a state dict: `get(key)` returns the tensor under the
  // module-relative key or nullopt. Errors name the missing key or the bad shape.
  static QWeight from_state(const QType& qtype, const std::vector<int64_t>& shape, std::optional<int64_t> group_size,
                            const std::function<std::optional<at::Tensor>(const std::string&)>& get);

  // Wraps stored tensors already in `layout` (shift undefined for 8-bit weights).
  static QWeight wrap(const QType& qtype, const std::vector<int64_t>& shape, std::optional<int64_t> group_size,
                      WeightLayout layout, const at::Tensor& data, const at::Tensor& scale, const at::Tensor& shift);

  bool defined() const { return bytes.defined() || bits.defined(); }
  const QType& qtype() const { return bytes.defined() ? bytes.qtype() : bits.qtype(); }
  const WeightFormat& format() const { return weight_format(qtype()); }
  std::vector<int64_t> shape() const { return bytes.defined() ? bytes.shape() : bits.shape(); }
  WeightLayout layout() const;
  c10::Device device() const;

  // Exact conversions between layouts.
  QWeight with_layout(WeightLayout layout) const;
  QWeight to_canonical() const { return with_layout(WeightLayout::canonical); }
  // Moves to `device` and converts to the layout choose_layout picks there (exact).
  QWeight to(c10::Device device, const QType* activations, bool linear) const;
  QWeight to(c10::ScalarType param_dtype) const;  // scales (and a float shift)

  // Canonical tensors under their state-dict keys (StoredTensor order).
  std::vector<std::pair<std::string, at::Tensor>> state() const;
  at::Tensor dequantize() const;
  int64_t nbytes() const { return bytes.defined() ? bytes.nbytes() : bits.nbytes(); }

  // y = x @ W^T + bias for a 2-d weight, through the op the layout calls for; x is float.
  at::Tensor linear(const at::Tensor& x, const std::optional<at::Tensor>& bias) const;
  // int8 activation codes x int8 (qint8) or 4-bit (qint4: W4A8) weights, int32 accumulation, y in
  // out_dtype; x_scale holds one value (static, per tensor) or one per row of x (dynamic, per token).
  at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const std::optional<at::Tensor>& bias,
                         c10::ScalarType out_dtype) const;
  // The same for codes x_data quantized from the float activations `x`: when autograd records, the
  // gradient reaches x straight through the activation quantization (dL/dx = dL/dy @ W, W the
  // dequantized weight), and bias; forward values are those of the int8 product.
  at::Tensor linear_w8a8(const at::Tensor& x, const at::Tensor& x_data, const at::Tensor& x_scale,
                         const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) const;
};

}  // namespace quanto
