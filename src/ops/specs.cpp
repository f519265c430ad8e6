#include "ops/specs.h"

#include <ATen/ops/empty.h>
#include <cmath>
#include <c10/core/SymBool.h>
#include <c10/util/Exception.h>

#include "kernels/layout_geometry.h"
#include "kernels/ref/linear_ref.h"

namespace quanto::ops {
namespace {

bool is_float8(c10::ScalarType d) {
  return d == at::kFloat8_e4m3fn || d == at::kFloat8_e4m3fnuz || d == at::kFloat8_e5m2;
}

bool sym_equal(const c10::SymInt& a, const c10::SymInt& b) {
  return a.sym_eq(b).guard_bool(__FILE__, __LINE__);
}

void check_float_or_zeropoint(const char* op, const at::Tensor& shift) {
  TORCH_CHECK_TYPE(shift.scalar_type() == at::kByte || shift.scalar_type() == at::kFloat ||
                       shift.scalar_type() == at::kBFloat16 || shift.scalar_type() == at::kHalf,
                   op, ": shift must be a float tensor (float shift) or uint8 (zero-point), got ",
                   shift.scalar_type());
}

}  // namespace

at::Tensor empty_from_spec(const TensorSpec& spec, const at::Tensor& like) {
  return at::empty_symint(spec.sizes, like.options().dtype(spec.dtype));
}

TensorSpec absmax_scale_spec(const at::Tensor& x, std::string_view qtype, std::optional<int64_t> axis) {
  const char* op = "absmax_scale";
  checked_qtype(op, qtype);
  check_float(op, "x", x);
  return {absmax_scale_sizes(op, x, axis), x.scalar_type()};
}

std::pair<TensorSpec, TensorSpec> minmax_scale_shift_spec(const at::Tensor& x, std::string_view qtype,
                                                          int64_t axis, std::optional<int64_t> group_size,
                                                          Grouping* grouping) {
  const char* op = "minmax_scale_shift";
  checked_affine_qtype(op, qtype);
  check_float(op, "x", x);
  Grouping g = grouping_for(op, x.sym_sizes(), checked_axis(op, x.dim(), axis), group_size);
  std::pair<TensorSpec, TensorSpec> specs{{g.param_sizes, x.scalar_type()}, {g.param_sizes, x.scalar_type()}};
  if (grouping) *grouping = std::move(g);
  return specs;
}

std::pair<TensorSpec, TensorSpec> hqq_scale_shift_spec(const at::Tensor& x, std::string_view qtype, int64_t axis,
                                                       std::optional<int64_t> group_size, int64_t iters, double p,
                                                       double beta, double kappa, Grouping* grouping) {
  const char* op = "hqq_scale_shift";
  checked_affine_qtype(op, qtype);
  check_float(op, "x", x);
  TORCH_CHECK_VALUE(iters >= 0 && iters <= 10000, op, ": iters must be in [0, 10000], got ", iters);
  TORCH_CHECK_VALUE(std::isfinite(p) && p > 0.0 && p <= 1.0, op, ": p (the lp exponent) must be in (0, 1], got ", p);
  TORCH_CHECK_VALUE(std::isfinite(beta) && beta > 0.0, op, ": beta must be positive and finite, got ", beta);
  TORCH_CHECK_VALUE(std::isfinite(kappa) && kappa >= 1.0 && kappa <= 1e3, op, ": kappa must be in [1, 1000], got ",
                    kappa);
  Grouping g = grouping_for(op, x.sym_sizes(), checked_axis(op, x.dim(), axis), group_size);
  std::pair<TensorSpec, TensorSpec> specs{{g.param_sizes, x.scalar_type()}, {g.param_sizes, x.scalar_type()}};
  if (grouping) *grouping = std::move(g);
  return specs;
}

GptqSpecs gptq_quantize_spec(const at::Tensor& weight, const at::Tensor& hessian, std::string_view qtype,
                             std::optional<int64_t> group_size, double percdamp, int64_t blocksize,
                             Grouping* grouping) {
  const char* op = "gptq_quantize";
  checked_affine_qtype(op, qtype);
  check_float(op, "weight", weight);
  TORCH_CHECK_VALUE(weight.dim() == 2, op, ": weight must be 2-D [out_features, in_features], got shape ",
                    sizes_str(weight.sym_sizes()));
  TORCH_CHECK_TYPE(hessian.scalar_type() == at::kFloat || hessian.scalar_type() == at::kDouble, op,
                   ": hessian must be float32 or float64, got ", hessian.scalar_type());
  check_same_device(op, weight, "hessian", hessian);
  TORCH_CHECK_VALUE(hessian.dim() == 2 && sym_equal(hessian.sym_size(0), weight.sym_size(1)) &&
                        sym_equal(hessian.sym_size(1), weight.sym_size(1)),
                    op, ": hessian must be square [in_features, in_features] = [", weight.sym_size(1), ", ",
                    weight.sym_size(1), "] for weight ", sizes_str(weight.sym_sizes()), ", got ",
                    sizes_str(hessian.sym_sizes()));
  TORCH_CHECK_VALUE(std::isfinite(percdamp) && percdamp >= 0.0 && percdamp <= 100.0, op,
                    ": percdamp must be in [0, 100], got ", percdamp);
  TORCH_CHECK_VALUE(blocksize >= 1 && blocksize <= (int64_t{1} << 20), op, ": blocksize must be in [1, 2^20], got ",
                    blocksize);
  Grouping g = grouping_for(op, weight.sym_sizes(), 0, group_size);
  GptqSpecs specs{{g.data_sizes, at::kByte}, {g.param_sizes, weight.scalar_type()},
                  {g.param_sizes, weight.scalar_type()}};
  if (grouping) *grouping = std::move(g);
  return specs;
}

TensorSpec shift_to_zeropoint_spec(const at::Tensor& scale, const at::Tensor& shift, std::string_view qtype) {
  const char* op = "shift_to_zeropoint";
  checked_affine_qtype(op, qtype);
  check_float(op, "scale", scale);
  check_float(op, "shift", shift);
  TORCH_CHECK_VALUE(scale.sym_sizes() == shift.sym_sizes(), op, ": scale ", sizes_str(scale.sym_sizes()),
                    " and shift ", sizes_str(shift.sym_sizes()), " must have the same shape");
  return {SymSizes(shift.sym_sizes().begin(), shift.sym_sizes().end()), at::kByte};
}

std::pair<TensorSpec, TensorSpec> quantize_per_token_spec(const at::Tensor& x, std::string_view qtype) {
  const char* op = "quantize_per_token";
  const QType& q = checked_qtype(op, qtype);
  TORCH_CHECK_VALUE(q.bits == 8, op, ": activations are int8 or float8 (qint8, qfloat8*), got ", q.name);
  TORCH_CHECK_VALUE(x.dim() >= 1 && !sym_equal(x.sym_numel(), 0), op, ": x must hold at least one token, got shape ",
                    sizes_str(x.sym_sizes()));
  check_float(op, "x", x);
  SymSizes data(x.sym_sizes().begin(), x.sym_sizes().end()), scale = data;
  scale.back() = 1;
  return {{data, q.dtype}, {scale, x.scalar_type()}};
}

TensorSpec symmetric_quantize_spec(const at::Tensor& x, const at::Tensor& scale, std::string_view qtype,
                                   std::optional<int64_t> axis) {
  const char* op = "symmetric_quantize";
  const QType& q = checked_qtype(op, qtype);
  check_float(op, "x", x);
  check_float(op, "scale", scale);
  check_same_device(op, x, "scale", scale);
  if (!axis) {
    TORCH_CHECK_VALUE(sym_equal(scale.sym_numel(), 1), op,
                      ": per-tensor quantization (axis=None) needs a scale with one value, got shape ",
                      sizes_str(scale.sym_sizes()));
  } else {
    check_param_shape(op, "scale", scale, absmax_scale_sizes(op, x, axis), "per-axis quantization");
  }
  return {SymSizes(x.sym_sizes().begin(), x.sym_sizes().end()), q.dtype};
}

TensorSpec symmetric_dequantize_spec(const at::Tensor& data, const at::Tensor& scale, ParamAxis* layout) {
  const char* op = "symmetric_dequantize";
  TORCH_CHECK_TYPE(data.scalar_type() == at::kChar || is_float8(data.scalar_type()), op,
                   ": data must be int8 or a float8 dtype, got ", data.scalar_type());
  check_nonempty(op, "data", data);
  check_float(op, "scale", scale);
  check_same_device(op, data, "scale", scale);
  ParamAxis found = ParamAxis::per_tensor;
  if (!sym_equal(scale.sym_numel(), 1)) {
    const int64_t nd = data.dim();
    TORCH_CHECK_VALUE(nd >= 2 && scale.dim() == nd, op, ": scale ", sizes_str(scale.sym_sizes()),
                      " must hold one value or broadcast along the first or last dim of data ",
                      sizes_str(data.sym_sizes()));
    bool rows = sym_equal(scale.sym_size(0), data.sym_size(0));
    bool cols = sym_equal(scale.sym_size(-1), data.sym_size(-1));
    for (int64_t d = 1; d < nd; ++d) rows = rows && sym_equal(scale.sym_size(d), 1);
    for (int64_t d = 0; d < nd - 1; ++d) cols = cols && sym_equal(scale.sym_size(d), 1);
    TORCH_CHECK_VALUE(rows || cols, op, ": scale ", sizes_str(scale.sym_sizes()),
                      " must hold one value or broadcast along the first or last dim of data ",
                      sizes_str(data.sym_sizes()));
    found = rows ? ParamAxis::rows : ParamAxis::cols;
  }
  if (layout) *layout = found;
  return {SymSizes(data.sym_sizes().begin(), data.sym_sizes().end()), scale.scalar_type()};
}

c10::ScalarType affine_compute_dtype(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift) {
  const auto xs = c10::promoteTypes(x.scalar_type(), scale.scalar_type());
  return shift.scalar_type() == at::kByte ? xs : c10::promoteTypes(xs, shift.scalar_type());
}

TensorSpec affine_quantize_spec(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                                std::string_view qtype, int64_t axis, std::optional<int64_t> group_size,
                                Grouping* grouping) {
  const char* op = "affine_quantize";
  checked_affine_qtype(op, qtype);
  check_float(op, "x", x);
  check_float(op, "scale", scale);
  check_float_or_zeropoint(op, shift);
  check_same_device(op, x, "scale", scale);
  check_same_device(op, x, "shift", shift);
  Grouping g = grouping_for(op, x.sym_sizes(), checked_axis(op, x.dim(), axis), group_size);
  const char* what = group_size ? "group-wise quantization" : "per-axis quantization";
  check_param_shape(op, "scale", scale, g.param_sizes, what);
  check_param_shape(op, "shift", shift, g.param_sizes, what);
  TensorSpec spec{g.data_sizes, at::kByte};
  if (grouping) *grouping = std::move(g);
  return spec;
}

TensorSpec affine_dequantize_spec(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                                  c10::SymIntArrayRef shape, int64_t axis, std::optional<int64_t> group_size,
                                  Grouping* grouping) {
  const char* op = "affine_dequantize";
  check_dtype(op, "codes", codes, at::kByte);
  check_nonempty(op, "codes", codes);
  check_float(op, "scale", scale);
  check_float_or_zeropoint(op, shift);
  check_same_device(op, codes, "scale", scale);
  check_same_device(op, codes, "shift", shift);
  for (const auto& s : shape)
    TORCH_CHECK_VALUE(s.sym_gt(0).guard_bool(__FILE__, __LINE__), op, ": shape ", sizes_str(shape),
                      " must have positive sizes");
  Grouping g = grouping_for(op, shape, checked_axis(op, static_cast<int64_t>(shape.size()), axis), group_size);
  check_param_shape(op, "codes", codes, g.data_sizes, "this shape and grouping");
  const char* what = group_size ? "group-wise quantization" : "per-axis quantization";
  check_param_shape(op, "scale", scale, g.param_sizes, what);
  check_param_shape(op, "shift", shift, g.param_sizes, what);
  const auto dtype = shift.scalar_type() == at::kByte
                         ? scale.scalar_type()
                         : c10::promoteTypes(scale.scalar_type(), shift.scalar_type());
  if (grouping) *grouping = std::move(g);
  return {SymSizes(shape.begin(), shape.end()), dtype};
}

TensorSpec pack_codes_spec(const at::Tensor& codes, int64_t bits) {
  const char* op = "pack_codes";
  checked_bits(op, bits);
  check_dtype(op, "codes", codes, at::kByte);
  TORCH_CHECK_VALUE(codes.dim() >= 1, op, ": codes must have at least 1 dim");
  check_nonempty(op, "codes", codes);
  return {packed_sizes(codes.sym_sizes(), bits), at::kByte};
}

TensorSpec unpack_codes_spec(const at::Tensor& packed, int64_t bits, const c10::SymInt& rows) {
  const char* op = "unpack_codes";
  checked_bits(op, bits);
  check_dtype(op, "packed", packed, at::kByte);
  TORCH_CHECK_VALUE(packed.dim() >= 1, op, ": packed must have at least 1 dim");
  check_nonempty(op, "packed", packed);
  TORCH_CHECK_VALUE(rows.sym_gt(0).guard_bool(__FILE__, __LINE__), op, ": rows must be positive, got ", rows);
  const int64_t k = 8 / bits;
  QUANTO_SYM_CHECK_VALUE(packed.sym_size(0).sym_eq((rows + (k - 1)) / k), op, ": ", rows, " rows of ", bits,
                  "-bit codes pack into ", (rows + (k - 1)) / k, " rows, but packed has ",
                  packed.sym_size(0));
  SymSizes out(packed.sym_sizes().begin(), packed.sym_sizes().end());
  out.front() = rows;
  return {out, at::kByte};
}

namespace {

TensorSpec check_qbytes_linear(const char* op, const at::Tensor& x, const at::Tensor& w_data,
                               const at::Tensor& w_scale, const std::optional<at::Tensor>& bias) {
  check_float(op, "x", x);
  TORCH_CHECK_TYPE(w_data.scalar_type() == at::kChar || is_float8(w_data.scalar_type()), op,
                   ": w_data must be int8 or a float8 dtype, got ", w_data.scalar_type());
  TORCH_CHECK_VALUE(w_data.dim() == 2, op, ": w_data must be 2-d [N, K], got ", sizes_str(w_data.sym_sizes()));
  check_nonempty(op, "w_data", w_data);
  check_same_device(op, x, "w_data", w_data);
  const c10::SymInt N = w_data.sym_size(0);
  check_channel_scale(op, "w_scale", w_scale, N);
  check_bias(op, bias, N);
  return {linear_out_sizes(op, x, w_data.sym_size(1), N), x.scalar_type()};
}

// The checks every *_cat op makes on its lists: at least one weight, one tensor per weight in
// each list, bias empty or one entry per weight.
void check_cat_lists(const char* op, size_t parts, std::initializer_list<size_t> list_sizes, size_t bias_size) {
  TORCH_CHECK_VALUE(parts >= 1, op, ": needs at least one weight, got none");
  for (size_t n : list_sizes)
    TORCH_CHECK_VALUE(n == parts, op, ": the weight lists must hold one tensor per weight (", parts, "), got ", n);
  TORCH_CHECK_VALUE(bias_size == 0 || bias_size == parts, op,
                    ": bias must be empty or hold one entry per weight (", parts, "), got ", bias_size);
}

// A *_cat op's output spec: x's leading dims and the sum of the parts' output widths, each part
// checked by part_spec(i).
template <typename PartSpec>
TensorSpec cat_spec(const at::Tensor& x, size_t parts, PartSpec part_spec) {
  SymSizes sizes;
  c10::SymInt width = 0;
  for (size_t i = 0; i < parts; ++i) {
    sizes = part_spec(i).sizes;
    width = width + sizes.back();
  }
  sizes.back() = width;
  return {sizes, x.scalar_type()};
}

}  // namespace

std::optional<at::Tensor> bias_entry(const c10::List<std::optional<at::Tensor>>& bias, size_t i) {
  return bias.empty() ? std::nullopt : bias.get(i);
}

TensorSpec linear_qbytes_spec(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                              const std::optional<at::Tensor>& bias) {
  return check_qbytes_linear("linear_qbytes", x, w_data, w_scale, bias);
}

TensorSpec linear_qbytes_cat_spec(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                                  const c10::List<std::optional<at::Tensor>>& bias) {
  const char* op = "linear_qbytes_cat";
  check_cat_lists(op, w_data.size(), {w_scale.size()}, bias.size());
  return cat_spec(x, w_data.size(),
                  [&](size_t i) { return check_qbytes_linear(op, x, w_data[i], w_scale[i], bias_entry(bias, i)); });
}

TensorSpec linear_qbits_spec(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                             const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                             const std::optional<at::Tensor>& bias) {
  const char* op = "linear_qbits";
  check_same_device(op, x, "w_packed", w_packed);
  const c10::SymInt N = qbits_out_features(op, x, w_packed, w_scale, w_shift, bits, group_size);
  check_bias(op, bias, N);
  return {linear_out_sizes(op, x, x.sym_size(-1), N), x.scalar_type()};
}

namespace {

// The tiled layout's constraints, shared by the three tiled ops.
void check_tiled_geometry(const char* op, int64_t bits, int64_t out_features, int64_t in_features,
                          int64_t group_size) {
  checked_bits(op, bits);
  TORCH_CHECK_VALUE(out_features > 0 && in_features > 0, op, ": out_features and in_features must be positive, got ",
                    out_features, " and ", in_features);
  const int64_t block = kernels::tile_block_codes(bits);
  TORCH_CHECK_VALUE(kernels::can_tile(bits, group_size), op, ": for ", bits,
                    "-bit weights the tiled layout needs group_size to be a multiple of ", block, ", got ", group_size);
  TORCH_CHECK_VALUE(in_features % group_size == 0, op, ": group_size ", group_size, " does not divide in_features ",
                    in_features);
}

SymSizes canonical_packed_sizes(int64_t bits, int64_t out_features, int64_t in_features, int64_t group_size) {
  const int64_t groups = out_features * in_features / group_size, k = 8 / bits;
  return {(groups + k - 1) / k, group_size};
}

}  // namespace

TensorSpec tile_qbits_spec(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                           int64_t group_size) {
  const char* op = "tile_qbits";
  check_tiled_geometry(op, bits, out_features, in_features, group_size);
  check_dtype(op, "packed", packed, at::kByte);
  check_param_shape(op, "packed", packed, canonical_packed_sizes(bits, out_features, in_features, group_size),
                    "these features and group_size");
  return {{out_features, kernels::tiled_row_bytes(bits, in_features)}, at::kByte};
}

TensorSpec untile_qbits_spec(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                             int64_t group_size) {
  const char* op = "untile_qbits";
  check_tiled_geometry(op, bits, out_features, in_features, group_size);
  check_dtype(op, "tiled", tiled, at::kByte);
  check_param_shape(op, "tiled", tiled, {out_features, kernels::tiled_row_bytes(bits, in_features)},
                    "these features");
  return {canonical_packed_sizes(bits, out_features, in_features, group_size), at::kByte};
}

namespace {

// A tiled weight with its scale and shift, on x's device: returns {N, K}.
std::pair<int64_t, int64_t> check_tiled_weight(const char* op, const at::Tensor& x, const at::Tensor& w_tiled,
                                               const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t bits,
                                               int64_t group_size) {
  check_dtype(op, "w_tiled", w_tiled, at::kByte);
  TORCH_CHECK_VALUE(w_tiled.dim() == 2, op, ": w_tiled must be 2-d [N, K * bits / 8], got ",
                    sizes_str(w_tiled.sym_sizes()));
  check_same_device(op, x, "w_tiled", w_tiled);
  // Weight shapes are static in practice: specialise on them (guard) rather than carry symbols.
  const int64_t N = w_tiled.sym_size(0).guard_int(__FILE__, __LINE__);
  const int64_t K = w_tiled.sym_size(1).guard_int(__FILE__, __LINE__) * 8 / std::max<int64_t>(bits, 1);
  check_tiled_geometry(op, bits, N, K, group_size);
  check_float(op, "w_scale", w_scale);
  check_float_or_zeropoint(op, w_shift);
  const int64_t groups = N * K / group_size;
  TORCH_CHECK_VALUE(sym_equal(w_scale.sym_numel(), groups) && sym_equal(w_shift.sym_numel(), groups), op,
                    ": w_scale and w_shift must hold one value per group (", groups, "), got ", w_scale.sym_numel(),
                    " and ", w_shift.sym_numel());
  return {N, K};
}

}  // namespace

namespace {

TensorSpec check_qbits_tiled_linear(const char* op, const at::Tensor& x, const at::Tensor& w_tiled,
                                    const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t bits,
                                    int64_t group_size, const std::optional<at::Tensor>& bias) {
  check_float(op, "x", x);
  const auto [N, K] = check_tiled_weight(op, x, w_tiled, w_scale, w_shift, bits, group_size);
  check_bias(op, bias, N);
  return {linear_out_sizes(op, x, K, N), x.scalar_type()};
}

}  // namespace

TensorSpec linear_qbits_tiled_spec(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                                   const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                                   const std::optional<at::Tensor>& bias) {
  return check_qbits_tiled_linear("linear_qbits_tiled", x, w_tiled, w_scale, w_shift, bits, group_size, bias);
}

TensorSpec linear_qbits_tiled_cat_spec(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                       at::TensorList w_shift, int64_t bits, int64_t group_size,
                                       const c10::List<std::optional<at::Tensor>>& bias) {
  const char* op = "linear_qbits_tiled_cat";
  check_cat_lists(op, w_tiled.size(), {w_scale.size(), w_shift.size()}, bias.size());
  return cat_spec(x, w_tiled.size(), [&](size_t i) {
    return check_qbits_tiled_linear(op, x, w_tiled[i], w_scale[i], w_shift[i], bits, group_size,
                                    bias_entry(bias, i));
  });
}

namespace {

TensorSpec check_w4a8_tiled_linear(const char* op, const at::Tensor& x_data, const at::Tensor& x_scale,
                                   const at::Tensor& w_tiled, const at::Tensor& w_scale, const at::Tensor& w_shift,
                                   int64_t group_size, const std::optional<at::Tensor>& bias,
                                   c10::ScalarType out_dtype) {
  check_int8_activations(op, x_data, x_scale, out_dtype);
  const auto [N, K] = check_tiled_weight(op, x_data, w_tiled, w_scale, w_shift, 4, group_size);
  check_bias(op, bias, N);
  return {linear_out_sizes(op, x_data, K, N), out_dtype};
}

}  // namespace

TensorSpec linear_w4a8_tiled_spec(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                                  const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                                  const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  return check_w4a8_tiled_linear("linear_w4a8_tiled", x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias,
                                 out_dtype);
}

TensorSpec linear_w4a8_tiled_cat_spec(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                      at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                      const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype) {
  const char* op = "linear_w4a8_tiled_cat";
  check_cat_lists(op, w_tiled.size(), {w_scale.size(), w_shift.size()}, bias.size());
  TensorSpec spec = cat_spec(x_data, w_tiled.size(), [&](size_t i) {
    return check_w4a8_tiled_linear(op, x_data, x_scale, w_tiled[i], w_scale[i], w_shift[i], group_size,
                                   bias_entry(bias, i), out_dtype);
  });
  spec.dtype = out_dtype;
  return spec;
}

TensorSpec linear_w8a8_spec(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                            const at::Tensor& w_scale, const std::optional<at::Tensor>& bias,
                            c10::ScalarType out_dtype) {
  const char* op = "linear_w8a8";
  check_w8a8(op, x_data, x_scale, w_data, w_scale, out_dtype);
  check_same_device(op, x_data, "w_data", w_data);
  const c10::SymInt N = w_data.sym_size(0);
  check_bias(op, bias, N);
  return {linear_out_sizes(op, x_data, w_data.sym_size(1), N), out_dtype};
}

namespace {

void check_w8a8_packed_geometry(const char* op, int64_t out_features, int64_t in_features) {
  TORCH_CHECK_VALUE(out_features > 0 && in_features > 0, op, ": out_features and in_features must be positive, got ",
                    out_features, " and ", in_features);
  TORCH_CHECK_VALUE(kernels::can_pack_w8a8(out_features, in_features), op, ": the packed W8A8 layout holds in_features < ",
                    kernels::kW8A8MaxInFeatures, ", got ", in_features);
}

SymSizes w8a8_packed_sizes(int64_t out_features, int64_t in_features) {
  return {kernels::w8a8_block_count(out_features), kernels::w8a8_block_bytes(in_features)};
}

}  // namespace

TensorSpec pack_w8a8_spec(const at::Tensor& w_data) {
  const char* op = "pack_w8a8";
  check_dtype(op, "w_data", w_data, at::kChar);
  TORCH_CHECK_VALUE(w_data.dim() == 2, op, ": w_data must be 2-d [N, K], got ", sizes_str(w_data.sym_sizes()));
  check_nonempty(op, "w_data", w_data);
  const int64_t N = w_data.sym_size(0).guard_int(__FILE__, __LINE__);
  const int64_t K = w_data.sym_size(1).guard_int(__FILE__, __LINE__);
  check_w8a8_packed_geometry(op, N, K);
  return {w8a8_packed_sizes(N, K), at::kByte};
}

TensorSpec unpack_w8a8_spec(const at::Tensor& w_packed, int64_t out_features, int64_t in_features) {
  const char* op = "unpack_w8a8";
  check_w8a8_packed_geometry(op, out_features, in_features);
  check_dtype(op, "w_packed", w_packed, at::kByte);
  check_param_shape(op, "w_packed", w_packed, w8a8_packed_sizes(out_features, in_features), "these features");
  return {{out_features, in_features}, at::kChar};
}

TensorSpec linear_w8a8_packed_spec(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                                   const at::Tensor& w_scale, int64_t out_features,
                                   const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  const char* op = "linear_w8a8_packed";
  check_dtype(op, "x_data", x_data, at::kChar);
  check_nonempty(op, "x_data", x_data);
  const int64_t K = x_data.sym_size(-1).guard_int(__FILE__, __LINE__);
  check_w8a8_packed_geometry(op, out_features, K);
  check_dtype(op, "w_packed", w_packed, at::kByte);
  check_param_shape(op, "w_packed", w_packed, w8a8_packed_sizes(out_features, K),
                    "out_features and the last dim of x_data");
  check_same_device(op, x_data, "w_packed", w_packed);
  check_float(op, "x_scale", x_scale);
  const c10::SymInt rows = x_data.sym_numel() / x_data.sym_size(-1);
  TORCH_CHECK_VALUE(sym_equal(x_scale.sym_numel(), 1) || sym_equal(x_scale.sym_numel(), rows), op,
                    ": x_scale must hold one value (static, per tensor) or one per row of x (dynamic, per token: ", rows,
                    "), got shape ", sizes_str(x_scale.sym_sizes()));
  check_channel_scale(op, "w_scale", w_scale, out_features);
  check_bias(op, bias, out_features);
  TORCH_CHECK_TYPE(out_dtype == at::kFloat || out_dtype == at::kBFloat16 || out_dtype == at::kHalf, op,
                   ": out_dtype must be float32, bfloat16 or float16, got ", out_dtype);
  return {linear_out_sizes(op, x_data, K, out_features), out_dtype};
}

TensorSpec decode_attention_spec(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                 const std::optional<at::Tensor>& mask, double scale) {
  const char* op = "decode_attention";
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"q", q}, {"k", k}, {"v", v}}) {
    check_float(op, name, t);
    TORCH_CHECK_VALUE(t.dim() == 4, op, ": ", name, " must be 4-d [batch, heads, positions, head_dim], got ",
                      sizes_str(t.sym_sizes()));
  }
  TORCH_CHECK_TYPE(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(), op,
                   ": q, k and v must share one dtype, got ", q.scalar_type(), ", ", k.scalar_type(), " and ",
                   v.scalar_type());
  check_same_device(op, q, "k", k);
  check_same_device(op, q, "v", v);
  TORCH_CHECK_VALUE(sym_equal(q.sym_size(2), 1), op, ": q must hold one position (a decode step), got ", q.sym_size(2),
                    "; use scaled_dot_product_attention for longer queries");
  TORCH_CHECK_VALUE(sym_equal(k.sym_size(0), q.sym_size(0)) && sym_equal(v.sym_size(0), q.sym_size(0)), op,
                    ": q, k and v must have the same batch, got shapes ", sizes_str(q.sym_sizes()), ", ",
                    sizes_str(k.sym_sizes()), " and ", sizes_str(v.sym_sizes()));
  TORCH_CHECK_VALUE(sym_equal(v.sym_size(1), k.sym_size(1)) && sym_equal(v.sym_size(2), k.sym_size(2)), op,
                    ": k and v must have the same heads and positions, got shapes ", sizes_str(k.sym_sizes()),
                    " and ", sizes_str(v.sym_sizes()));
  TORCH_CHECK_VALUE(sym_equal(k.sym_size(3), q.sym_size(3)), op, ": q and k must have the same head_dim, got ",
                    q.sym_size(3), " and ", k.sym_size(3));
  TORCH_CHECK_VALUE(sym_equal(q.sym_size(1) % k.sym_size(1), 0), op, ": q's ", q.sym_size(1),
                    " heads must be a multiple of k's ", k.sym_size(1));
  TORCH_CHECK_VALUE(std::isfinite(scale), op, ": scale must be finite, got ", scale);
  if (mask) {
    TORCH_CHECK_TYPE(mask->scalar_type() == at::kBool || at::isFloatingType(mask->scalar_type()), op,
                     ": mask must be bool (true = attend) or a float additive mask, got ", mask->scalar_type());
    check_same_device(op, q, "mask", *mask);
    const SymSizes target{q.sym_size(0), q.sym_size(1), q.sym_size(2), k.sym_size(2)};
    bool fits = mask->dim() <= 4;
    for (int64_t i = 1; fits && i <= mask->dim(); ++i) {
      const c10::SymInt& m = mask->sym_size(-i);
      fits = sym_equal(m, 1) || sym_equal(m, target[static_cast<size_t>(4 - i)]);
    }
    TORCH_CHECK_VALUE(fits, op, ": mask of shape ", sizes_str(mask->sym_sizes()), " does not broadcast to ",
                      sizes_str(target), " [batch, heads, 1, positions]");
  }
  return {{q.sym_size(0), q.sym_size(1), q.sym_size(2), v.sym_size(3)}, q.scalar_type()};
}

}  // namespace quanto::ops
