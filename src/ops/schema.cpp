// Every quanto op schema, in one place. Implementations live in one file per dispatch key
// (cpu/, meta/). Names avoid optimum-quanto's ops (quantize_symmetric, quantize_affine, unpack,
// qbytes_mm, …) so both libraries can be loaded in one process.
#include <torch/library.h>

#include <quanto/qtype.h>
#include <quanto/weights.h>

#include "kernels/dispatch.h"
#include "ops/generic/force_generic.h"

namespace {

std::vector<std::string> qtype_names_op() {
  std::vector<std::string> names;
  for (const auto& q : quanto::all_qtypes()) names.emplace_back(q.name);
  return names;
}

// The storage dtype as torch names it in Python (torch.int8, torch.float8_e4m3fn, …): a
// ScalarType return would reach Python as a bare integer.
std::string torch_dtype_name(c10::ScalarType d) {
  switch (d) {
    case c10::ScalarType::Char:
      return "int8";
    case c10::ScalarType::Float8_e4m3fn:
      return "float8_e4m3fn";
    case c10::ScalarType::Float8_e4m3fnuz:
      return "float8_e4m3fnuz";
    case c10::ScalarType::Float8_e5m2:
      return "float8_e5m2";
    default:
      TORCH_CHECK(false, "qtype_info: no torch name for ", d);
  }
}

std::tuple<int64_t, bool, std::string, double, double> qtype_info_op(c10::string_view name) {
  const quanto::QType& q = quanto::qtype_from_name(name);
  return {q.bits, q.is_floating_point, torch_dtype_name(q.dtype), q.qmin, q.qmax};
}

std::string cpu_isa_op() { return quanto::kernels::isa_name(quanto::kernels::kernels().isa); }

std::vector<std::string> supported_cpu_isas_op() {
  std::vector<std::string> names;
  for (auto isa : quanto::kernels::supported_isas()) names.emplace_back(quanto::kernels::isa_name(isa));
  return names;
}

// The weights layer's facts, for the Python package (include/quanto/weights.h).
std::vector<std::string> weight_state_keys_op(c10::string_view qtype) {
  return quanto::weight_format(quanto::qtype_from_name(qtype)).keys();
}

std::tuple<std::vector<int64_t>, std::vector<int64_t>> weight_stored_shapes_op(c10::string_view qtype,
                                                                              std::vector<int64_t> shape,
                                                                              std::optional<int64_t> group_size) {
  const quanto::QType& q = quanto::qtype_from_name(qtype);
  const auto stored = quanto::weight_format(q).stored(q, shape, group_size, c10::ScalarType::Float);
  return {stored.at(0).shape, stored.at(1).shape};
}

std::string weight_layout_op(c10::string_view qtype, std::vector<int64_t> shape, std::optional<int64_t> group_size,
                             c10::Device device, c10::string_view activations, bool linear) {
  const quanto::QType* a = activations == "none" ? nullptr : &quanto::qtype_from_name(activations);
  return quanto::layout_name(
      quanto::choose_layout(quanto::qtype_from_name(qtype), shape, group_size, device, a, linear));
}

}  // namespace

TORCH_LIBRARY(quanto, m) {
  // Introspection (no tensors, so one implementation for every backend).
  m.def("qtype_names() -> str[]", &qtype_names_op);
  m.def("qtype_info(str qtype) -> (int bits, bool is_floating_point, str dtype, float qmin, float qmax)",
        &qtype_info_op);
  m.def("cpu_isa() -> str", &cpu_isa_op);
  m.def("supported_cpu_isas() -> str[]", &supported_cpu_isas_op);
  m.def("default_group_size(int in_features) -> int?", &quanto::default_group_size);
  // Sends CPU tensors through the device-generic implementations (what CUDA, MPS, XPU… run)
  // instead of the CPU kernels; returns the previous setting. Initially QUANTO_FORCE_GENERIC.
  m.def("force_generic_path(bool enabled) -> bool", &quanto::ops::generic::set_generic_path_forced);
  // The weights layer: state-dict keys (module-relative, in write order), canonical shapes of
  // the codes and of the scale (a shift has the scale's shape), and the in-memory layout a frozen
  // weight gets on a device ("canonical", "tiled" or "packed_w8a8").
  m.def("weight_state_keys(str qtype) -> str[]", &weight_state_keys_op);
  m.def("weight_stored_shapes(str qtype, int[] shape, int? group_size) -> (int[] data, int[] scale)",
        &weight_stored_shapes_op);
  m.def("weight_layout(str qtype, int[] shape, int? group_size, Device device, str activations=\"none\", "
        "bool linear=True) -> str",
        &weight_layout_op);
  // The weights layer's quantize / dequantize steps: canonical tensors in weight_state_keys order
  // from a float weight (scale/shift: an optimizer's parameters; None: absmax or min/max), and back.
  m.def("weight_quantize(Tensor weight, str qtype, int? group_size=None, Tensor? scale=None, Tensor? shift=None) "
        "-> Tensor[]");
  m.def("weight_dequantize(Tensor[] state, str qtype, int[] shape, int? group_size=None) -> Tensor");
  // A frozen weight held in memory as (data, scale[, shift]) in a named layout: convert its data
  // to another layout (exact), or run y = x @ W^T + bias through the op that layout calls for
  // (weight-only, or qint8 activation codes with their scale).
  m.def("weight_relayout(Tensor[] state, str qtype, int[] shape, int? group_size, str layout, str to_layout) -> Tensor");
  m.def("weight_linear(Tensor x, Tensor[] state, str qtype, int[] shape, int? group_size, str layout, "
        "Tensor? bias=None) -> Tensor");
  // Dynamic activations: x quantized per token to `activations` (qint8) here, then the integer
  // kernel weight_linear_w8a8 runs (one call where a layer made two at each decode step).
  m.def("weight_linear_dynamic(Tensor x, Tensor[] state, str qtype, int[] shape, int? group_size, str layout, "
        "Tensor? bias, str activations) -> Tensor");
  // x: the float activations x_data was quantized from (gradients reach it straight through).
  // qtype qint8 (W8A8) or qint4 (W4A8, which needs the weight's group_size).
  m.def("weight_linear_w8a8(Tensor x, Tensor x_data, Tensor x_scale, Tensor[] state, str qtype, int[] shape, "
        "str layout, Tensor? bias, ScalarType out_dtype, int? group_size=None) -> Tensor");

  // Scales.
  m.def("absmax_scale(Tensor x, str qtype, int? axis=None) -> Tensor");
  m.def("minmax_scale_shift(Tensor x, str qtype, int axis, int? group_size=None) -> (Tensor, Tensor)");
  m.def("shift_to_zeropoint(Tensor scale, Tensor shift, str qtype) -> Tensor");
  // Symmetric 2/4-bit parameters in the affine convention: scale = absmax / (2^(bits-1) - 1/2),
  // shift = 2^(bits-1) * scale, i.e. an exact integer zero-point of 2^(bits-1) (the grid that
  // compressed-tensors' symmetric int4 and GGUF's Q4_0 use). Same shapes as minmax_scale_shift.
  m.def("symmetric_scale_shift(Tensor x, str qtype, int axis, int? group_size=None) -> (Tensor, Tensor)");
  // Half-Quadratic Quantization of the affine parameters (same shapes and dtype as minmax_scale_shift).
  m.def("hqq_scale_shift(Tensor x, str qtype, int axis, int? group_size=None, int iters=20, float p=0.7, "
        "float beta=10., float kappa=1.01, bool optimize_scale=False) -> (Tensor, Tensor)");

  m.def("gptq_quantize(Tensor weight, Tensor hessian, str qtype, int? group_size=None, float percdamp=0.01, "
        "int blocksize=128, bool actorder=False) -> (Tensor, Tensor, Tensor)");

  // Quantize / dequantize.
  m.def("symmetric_quantize(Tensor x, Tensor scale, str qtype, int? axis=None) -> Tensor");
  m.def("symmetric_dequantize(Tensor data, Tensor scale) -> Tensor");
  // Dynamic (per token) activations: each row of x's last dimension gets its own absmax scale,
  // computed now; scale has x's shape with a last dimension of 1 (QActivation::quantize_per_token).
  m.def("quantize_per_token(Tensor x, str qtype) -> (Tensor data, Tensor scale)");
  m.def("affine_quantize(Tensor x, Tensor scale, Tensor shift, str qtype, int axis, int? group_size=None) -> Tensor");
  m.def("affine_dequantize(Tensor codes, Tensor scale, Tensor shift, SymInt[] shape, int axis, int? group_size=None) -> Tensor");

  // Packing of 2/4-bit codes (optimum-quanto's layout).
  m.def("pack_codes(Tensor codes, int bits) -> Tensor");
  m.def("unpack_codes(Tensor packed, int bits, SymInt rows) -> Tensor");

  // The tiled 4-bit layout of the fast kernels (converted once, at freeze or load).
  m.def("tile_qbits(Tensor packed, int bits, int out_features, int in_features, int group_size) -> Tensor");
  m.def("untile_qbits(Tensor tiled, int bits, int out_features, int in_features, int group_size) -> Tensor");

  // Matmuls: y = x @ W^T + bias.
  m.def("linear_qbytes(Tensor x, Tensor w_data, Tensor w_scale, Tensor? bias=None) -> Tensor");
  m.def("linear_qbits(Tensor x, Tensor w_packed, Tensor w_scale, Tensor w_shift, int bits, int group_size, Tensor? bias=None) -> Tensor");
  m.def("linear_qbits_tiled(Tensor x, Tensor w_tiled, Tensor w_scale, Tensor w_shift, int bits, int group_size, Tensor? bias=None) -> Tensor");
  // linear_qbits_tiled for several weights on one x (a layer's q, k and v, or gate and up), their
  // outputs side by side along the last dim, as for the weights concatenated along N: at batch 1
  // one pass over all their rows, where separate calls each paid a fork and join of the threads
  // and a cold start on memory. quanto.fusion's graph pass makes these calls under torch.compile.
  m.def("linear_qbits_tiled_cat(Tensor x, Tensor[] w_tiled, Tensor[] w_scale, Tensor[] w_shift, int bits, "
        "int group_size, Tensor?[] bias) -> Tensor");
  // The same for int8 / float8 weights (linear_qbytes).
  m.def("linear_qbytes_cat(Tensor x, Tensor[] w_data, Tensor[] w_scale, Tensor?[] bias) -> Tensor");
  // W4A8: int8 activation codes (x_scale: one value, or one per row of x) × a tiled 4-bit weight,
  // integer dot products per group (a uint8 w_shift is a zero-point, as in linear_qbits_tiled).
  m.def("linear_w4a8_tiled(Tensor x_data, Tensor x_scale, Tensor w_tiled, Tensor w_scale, Tensor w_shift, "
        "int group_size, Tensor? bias, ScalarType out_dtype) -> Tensor");
  // linear_w4a8_tiled for several weights on one quantized x (a layer's q, k and v, or gate and
  // up), as linear_qbits_tiled_cat: at batch 1 one pass over all their rows.
  m.def("linear_w4a8_tiled_cat(Tensor x_data, Tensor x_scale, Tensor[] w_tiled, Tensor[] w_scale, "
        "Tensor[] w_shift, int group_size, Tensor?[] bias, ScalarType out_dtype) -> Tensor");
  m.def("linear_w8a8(Tensor x_data, Tensor x_scale, Tensor w_data, Tensor w_scale, Tensor? bias, ScalarType out_dtype) -> Tensor");
  // W8A8 on weights pre-packed once (at freeze/load) into the VNNI kernels' layout; exact round trip.
  m.def("pack_w8a8(Tensor w_data) -> Tensor");
  m.def("unpack_w8a8(Tensor w_packed, int out_features, int in_features) -> Tensor");
  m.def("linear_w8a8_packed(Tensor x_data, Tensor x_scale, Tensor w_packed, Tensor w_scale, int out_features, Tensor? bias, ScalarType out_dtype) -> Tensor");

  // Attention for one query position per head (a decode step) on the KV cache as it is: q
  // [B, H, 1, D], k/v [B, Hkv, L, D] (grouped-query heads share k/v, no copies); mask bool (true =
  // attend) or additive float, broadcast to [B, H, 1, L]; masked positions are skipped.
  m.def("decode_attention(Tensor q, Tensor k, Tensor v, Tensor? mask, float scale) -> Tensor");
}
