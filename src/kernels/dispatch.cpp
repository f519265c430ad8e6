#include "kernels/dispatch.h"

#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__)
#include "kernels/x86/attention_x86.h"
#include "kernels/x86/convert_x86.h"
#include "kernels/x86/hqq_x86.h"
#include "kernels/x86/linear_bf16_x86.h"
#include "kernels/x86/linear_vnni_x86.h"
#include "kernels/x86/linear_x86.h"
#include "kernels/x86/quantize_x86.h"
#endif

namespace quanto::kernels {
namespace {

constexpr KernelTable generic_table() {
  KernelTable t{};
  t.isa = CpuIsa::generic;
  t.f32 = reference_quantize_kernels<float>();
  t.b16 = reference_quantize_kernels<bf16>();
  t.linear = reference_linear_kernels();
  t.hqq_refine = &hqq_refine_ref;
  t.attention.decode_f32 = &decode_attention_ref<float>;
  t.attention.decode_bf16 = &decode_attention_ref<bf16>;
  t.convert.to_bf16 = &to_bf16_ref;
  t.convert.to_fp16 = &to_fp16_ref;
  t.convert.from_bf16 = &from_bf16_ref;
  return t;
}
constexpr KernelTable kGeneric = generic_table();

#if defined(__x86_64__)
constexpr KernelTable avx2_table() {
  KernelTable t = generic_table();
  t.isa = CpuIsa::avx2;
  t.f32.absmax_rows = &avx2::absmax_rows_f32;
  t.f32.minmax_rows = &avx2::minmax_rows_f32;
  t.f32.symmetric_quantize_int = &avx2::symmetric_quantize_int_f32;
  t.f32.affine_quantize = &avx2::affine_quantize_f32;
  t.f32.affine_quantize_zp = &avx2::affine_quantize_zp_f32;
  t.b16.absmax_rows = &avx2::absmax_rows_bf16;
  t.b16.minmax_rows = &avx2::minmax_rows_bf16;
  t.b16.symmetric_quantize_int = &avx2::symmetric_quantize_int_bf16;
  t.b16.affine_quantize = &avx2::affine_quantize_bf16;
  t.b16.affine_quantize_zp = &avx2::affine_quantize_zp_bf16;
  t.linear.linear_w8a8 = &avx2::linear_w8a8;
  t.linear.linear_w8a8_packed = &avx2::linear_w8a8_packed;
  t.linear.linear_w4a8_tiled = &avx2::linear_w4a8_tiled;
  t.linear.linear_w4a8_gemv_bf16_params = &avx2::linear_w4a8_gemv_bf16_params;
  t.linear.linear_w8 = &avx2::linear_w8;
  t.linear.linear_fp8 = &avx2::linear_fp8;
  t.linear.linear_w4_tiled = &avx2::linear_w4_tiled;
  t.linear.linear_w2_tiled = &avx2::linear_w2_tiled;
  t.linear.linear_w4_gemv_bf16_params = &avx2::linear_w4_gemv_bf16_params;
  t.hqq_refine = &avx2::hqq_refine;
  t.attention.decode_f32 = &avx2::decode_attention<float>;
  t.attention.decode_bf16 = &avx2::decode_attention<bf16>;
  t.convert.to_bf16 = &avx2::to_bf16;
  t.convert.to_fp16 = &avx2::to_fp16;
  t.convert.from_bf16 = &avx2::from_bf16;
  return t;
}

// AVX2 plus AVX-VNNI's int8 dot products for W8A8 and W4A8.
constexpr KernelTable avx2vnni_table() {
  KernelTable t = avx2_table();
  t.isa = CpuIsa::avx2vnni;
  t.linear.linear_w8a8 = &avx2vnni::linear_w8a8_vnni;
  t.linear.linear_w4a8_tiled = &avx2vnni::linear_w4a8_tiled_vnni;
  t.linear.linear_w4a8_gemv_bf16_params = &avx2vnni::linear_w4a8_gemv_bf16_params_vnni;
  return t;
}

constexpr KernelTable avx512_table() {
  KernelTable t = generic_table();
  t.isa = CpuIsa::avx512;
  t.f32.absmax_rows = &avx512::absmax_rows_f32;
  t.f32.minmax_rows = &avx512::minmax_rows_f32;
  t.f32.symmetric_quantize_int = &avx512::symmetric_quantize_int_f32;
  t.f32.affine_quantize = &avx512::affine_quantize_f32;
  t.f32.affine_quantize_zp = &avx512::affine_quantize_zp_f32;
  t.b16.absmax_rows = &avx512::absmax_rows_bf16;
  t.b16.minmax_rows = &avx512::minmax_rows_bf16;
  t.b16.symmetric_quantize_int = &avx512::symmetric_quantize_int_bf16;
  t.b16.affine_quantize = &avx512::affine_quantize_bf16;
  t.b16.affine_quantize_zp = &avx512::affine_quantize_zp_bf16;
  t.linear.linear_w8a8 = &avx512::linear_w8a8;
  t.linear.linear_w8a8_packed = &avx512::linear_w8a8_packed;
  t.linear.linear_w4a8_tiled = &avx512::linear_w4a8_tiled;
  t.linear.linear_w4a8_gemv_bf16_params = &avx512::linear_w4a8_gemv_bf16_params;
  t.linear.linear_w8 = &avx512::linear_w8;
  t.linear.linear_fp8 = &avx512::linear_fp8;
  t.linear.linear_w4_tiled = &avx512::linear_w4_tiled;
  t.linear.linear_w2_tiled = &avx512::linear_w2_tiled;
  t.linear.linear_w4_gemv_bf16_params = &avx512::linear_w4_gemv_bf16_params;
  t.hqq_refine = &avx512::hqq_refine;
  t.attention.decode_f32 = &avx512::decode_attention<float>;
  t.attention.decode_bf16 = &avx512::decode_attention<bf16>;
  t.convert.to_bf16 = &avx512::to_bf16;
  t.convert.to_fp16 = &avx512::to_fp16;
  t.convert.from_bf16 = &avx512::from_bf16;
  return t;
}

// AVX-512 plus VNNI's int8 dot products for W8A8 and W4A8.
constexpr KernelTable avx512vnni_table() {
  KernelTable t = avx512_table();
  t.isa = CpuIsa::avx512vnni;
  t.linear.linear_w8a8 = &avx512vnni::linear_w8a8_vnni;
  t.linear.linear_w8a8_packed = &avx512vnni::linear_w8a8_packed_vnni;
  t.linear.linear_w4a8_tiled = &avx512vnni::linear_w4a8_tiled_vnni;
  t.linear.linear_w4a8_gemv_bf16_params = &avx512vnni::linear_w4a8_gemv_bf16_params_vnni;
  return t;
}

// The VNNI tier plus bf16 dot products for bf16 activations.
constexpr KernelTable avx512bf16_table() {
  KernelTable t = avx512vnni_table();
  t.isa = CpuIsa::avx512bf16;
  t.linear.linear_w4_tiled_bf16x = &avx512bf16::linear_w4_tiled_bf16x;
  t.linear.linear_w2_tiled_bf16x = &avx512bf16::linear_w2_tiled_bf16x;
  t.linear.linear_w4_gemv_bf16_params = &avx512bf16::linear_w4_gemv_bf16_params;
  t.linear.linear_w8_bf16x = &avx512bf16::linear_w8_bf16x;
  t.linear.linear_fp8_bf16x = &avx512bf16::linear_fp8_bf16x;
  return t;
}

constexpr KernelTable kAvx2 = avx2_table();
constexpr KernelTable kAvx2Vnni = avx2vnni_table();
constexpr KernelTable kAvx512 = avx512_table();
constexpr KernelTable kAvx512Vnni = avx512vnni_table();
constexpr KernelTable kAvx512Bf16 = avx512bf16_table();
#endif

template <class Isas>
std::string joined_names(const Isas& isas) {
  std::string s;
  for (CpuIsa isa : isas) s += std::string(s.empty() ? "" : ", ") + isa_name(isa);
  return s;
}
std::string accepted_names() { return joined_names(supported_isas()); }

const KernelTable& select_from_environment() {
  const char* env = std::getenv("QUANTO_CPU_ISA");
  if (env == nullptr || *env == '\0') return kernel_table(supported_isas().back());
  return kernel_table(parse_isa(env));
}

}  // namespace

const char* isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::generic:
      return "generic";
    case CpuIsa::avx2:
      return "avx2";
    case CpuIsa::avx2vnni:
      return "avx2vnni";
    case CpuIsa::avx512:
      return "avx512";
    case CpuIsa::avx512vnni:
      return "avx512vnni";
    case CpuIsa::avx512bf16:
      return "avx512bf16";
  }
  return "unknown";
}

bool isa_packs_w8a8(const std::string& name) {
  return name == isa_name(CpuIsa::avx512vnni) || name == isa_name(CpuIsa::avx512bf16);
}

bool cpu_supports(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::generic:
      return true;
#if defined(__x86_64__)
    case CpuIsa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    case CpuIsa::avx2vnni:
      return cpu_supports(CpuIsa::avx2) && __builtin_cpu_supports("avxvnni");
    case CpuIsa::avx512:
      return cpu_supports(CpuIsa::avx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512dq");
    case CpuIsa::avx512vnni:
      return cpu_supports(CpuIsa::avx512) && __builtin_cpu_supports("avx512vnni");
    case CpuIsa::avx512bf16:
      return cpu_supports(CpuIsa::avx512vnni) && __builtin_cpu_supports("avx512bf16");
#endif
    default:
      return false;
  }
}

std::vector<CpuIsa> supported_isas() {
  std::vector<CpuIsa> out;
  for (CpuIsa isa : kAllIsas)
    if (cpu_supports(isa)) out.push_back(isa);
  return out;
}

CpuIsa parse_isa(const std::string& name) {
  for (CpuIsa isa : kAllIsas)
    if (name == isa_name(isa)) {
      if (!cpu_supports(isa))
        throw std::invalid_argument("QUANTO_CPU_ISA=" + name +
                                    " is not supported by this CPU; it supports: " +
                                    accepted_names());
      return isa;
    }
  throw std::invalid_argument("QUANTO_CPU_ISA=" + name + " is unknown; accepted values: " + joined_names(kAllIsas));
}

const KernelTable& kernel_table(CpuIsa isa) {
  if (!cpu_supports(isa))
    throw std::invalid_argument(std::string("CPU ISA ") + isa_name(isa) +
                                " is not supported by this CPU; it supports: " + accepted_names());
  switch (isa) {
#if defined(__x86_64__)
    case CpuIsa::avx2:
      return kAvx2;
    case CpuIsa::avx2vnni:
      return kAvx2Vnni;
    case CpuIsa::avx512:
      return kAvx512;
    case CpuIsa::avx512vnni:
      return kAvx512Vnni;
    case CpuIsa::avx512bf16:
      return kAvx512Bf16;
#endif
    default:
      return kGeneric;
  }
}

const KernelTable& kernels() {
  static const KernelTable& table = select_from_environment();
  return table;
}

}  // namespace quanto::kernels
