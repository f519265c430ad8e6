// Every quanto op schema, in one place. Implementations live in one file per dispatch key
// (cpu/, meta/). Names avoid optimum-quanto's ops (quantize_symmetric, quantize_affine, unpack,
// qbytes_mm, …) so both libraries can be loaded in one process.
#include <torch/library.h>

#include <quanto/qtype.h>

#include "kernels/dispatch.h"

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

}  // namespace

TORCH_LIBRARY(quanto, m) {
  // Introspection (no tensors, so one implementation for every backend).
  m.def("qtype_names() -> str[]", &qtype_names_op);
  m.def("qtype_info(str qtype) -> (int bits, bool is_floating_point, str dtype, float qmin, float qmax)",
        &qtype_info_op);
  m.def("cpu_isa() -> str", &cpu_isa_op);
  m.def("supported_cpu_isas() -> str[]", &supported_cpu_isas_op);
  m.def("default_group_size(int in_features) -> int?", &quanto::default_group_size);

  // Scales.
  m.def("absmax_scale(Tensor x, str qtype, int? axis=None) -> Tensor");
  m.def("minmax_scale_shift(Tensor x, str qtype, int axis, int? group_size=None) -> (Tensor, Tensor)");
  m.def("shift_to_zeropoint(Tensor scale, Tensor shift, str qtype) -> Tensor");
  // Half-Quadratic Quantization of the affine parameters (same shapes and dtype as minmax_scale_shift).
  m.def("hqq_scale_shift(Tensor x, str qtype, int axis, int? group_size=None, int iters=20, float p=0.7, "
        "float beta=10., float kappa=1.01, bool optimize_scale=False) -> (Tensor, Tensor)");

  m.def("gptq_quantize(Tensor weight, Tensor hessian, str qtype, int? group_size=None, float percdamp=0.01, "
        "int blocksize=128, bool actorder=False) -> (Tensor, Tensor, Tensor)");

  // Quantize / dequantize.
  m.def("symmetric_quantize(Tensor x, Tensor scale, str qtype, int? axis=None) -> Tensor");
  m.def("symmetric_dequantize(Tensor data, Tensor scale) -> Tensor");
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
  m.def("linear_w8a8(Tensor x_data, Tensor x_scale, Tensor w_data, Tensor w_scale, Tensor? bias, ScalarType out_dtype) -> Tensor");
  // W8A8 on weights pre-packed once (at freeze/load) into the VNNI kernels' layout; exact round trip.
  m.def("pack_w8a8(Tensor w_data) -> Tensor");
  m.def("unpack_w8a8(Tensor w_packed, int out_features, int in_features) -> Tensor");
  m.def("linear_w8a8_packed(Tensor x_data, Tensor x_scale, Tensor w_packed, Tensor w_scale, int out_features, Tensor? bias, ScalarType out_dtype) -> Tensor");
}
