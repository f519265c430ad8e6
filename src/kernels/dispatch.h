// Run-time choice of CPU kernels.
//
// Each ISA has a table of function pointers; entries without an optimised variant point to the
// scalar reference (or are nullptr where the op layer has another path). The table is chosen once, from the CPU's features, or from the
// QUANTO_CPU_ISA environment variable (generic | avx2 | avx2vnni | avx512 | avx512vnni | avx512bf16) so one machine
// can exercise
// every variant it supports. Build flags never decide this.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/ref/attention_ref.h"
#include "kernels/ref/convert_ref.h"
#include "kernels/ref/hqq_ref.h"
#include "kernels/ref/linear_ref.h"
#include "kernels/ref/quantize_ref.h"
#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels {

// avx2vnni: AVX2 plus AVX-VNNI, the VEX-encoded int8 dot product (Alder Lake and later Intel
// client CPUs; Zen 5 and Sapphire Rapids have it beside AVX-512);
// avx512vnni: AVX-512 plus the VNNI int8 dot product (Cascade Lake, Ice Lake);
// avx512bf16: AVX-512 plus the BF16 and VNNI dot-product instructions (Zen 4, Cooper Lake,
// Sapphire Rapids; every CPU with AVX-512 BF16 also has VNNI).
// Tiers are listed (and numbered) from least to most capable; the last one a CPU supports is its
// default. A CPU may lack a middle tier (Zen 4 has AVX-512 VNNI but not AVX-VNNI).
enum class CpuIsa : int { generic = 0, avx2 = 1, avx2vnni = 2, avx512 = 3, avx512vnni = 4, avx512bf16 = 5 };
inline constexpr CpuIsa kAllIsas[] = {CpuIsa::generic,    CpuIsa::avx2,       CpuIsa::avx2vnni,
                                      CpuIsa::avx512,     CpuIsa::avx512vnni, CpuIsa::avx512bf16};

const char* isa_name(CpuIsa isa);
// Whether the tier named `name` runs W8A8 on the packed layout: the 512-bit VNNI tiers (its
// blocks are 64 channels, four zmm registers of int32 lanes).
bool isa_packs_w8a8(const std::string& name);
bool cpu_supports(CpuIsa isa);
std::vector<CpuIsa> supported_isas();  // generic first

template <typename T>
using AbsmaxRowsFn = void (*)(const T*, int64_t, int64_t, float*);
template <typename T>
using MinmaxRowsFn = void (*)(const T*, int64_t, int64_t, float*, float*);
template <typename T>
using AffineQuantizeFn = void (*)(const T*, const float*, const float*, ParamLayout, int64_t, int64_t, int32_t,
                                  uint8_t*);
template <typename T>
using AffineQuantizeZpFn = void (*)(const T*, const float*, const uint8_t*, ParamLayout, int64_t, int64_t,
                                    int32_t, uint8_t*);
template <typename T>
using SymmetricQuantizeIntFn = void (*)(const T*, const float*, ParamLayout, int64_t, int64_t,
                                        IntRange, int8_t*);

// One row of function pointers per element type that has optimised variants (float, bf16);
// float16 always uses the references.
template <typename T>
struct QuantizeKernels {
  AbsmaxRowsFn<T> absmax_rows;
  MinmaxRowsFn<T> minmax_rows;
  SymmetricQuantizeIntFn<T> symmetric_quantize_int;
  AffineQuantizeFn<T> affine_quantize;
  AffineQuantizeZpFn<T> affine_quantize_zp;
};

// Tables are filled field by field, by name (never by position), starting from the references:
// an ISA overrides only the entries it has a variant for.
template <typename T>
constexpr QuantizeKernels<T> reference_quantize_kernels() {
  QuantizeKernels<T> k{};
  k.absmax_rows = &absmax_rows_ref<T>;
  k.minmax_rows = &minmax_rows_ref<T>;
  k.symmetric_quantize_int = &symmetric_quantize_int_ref<T>;
  k.affine_quantize = &affine_quantize_ref<T>;
  k.affine_quantize_zp = &affine_quantize_zp_ref<T>;
  return k;
}

// Weight-only linear kernels on float activations (the op layer converts bf16/fp16).
using LinearW8Fn = void (*)(const float*, const int8_t*, const float*, int64_t, const float*, LinearShape, float*);
using LinearW4TiledFn = void (*)(const float*, const uint8_t*, int64_t, const float*, const float*, const float*,
                                 LinearShape, float*);
// Kernels reading bf16 activations directly; nullptr where the ISA has none (the op layer then
// converts x to float for the kernels above).
using LinearW4TiledBf16Fn = void (*)(const bf16*, const uint8_t*, int64_t, const float*, const float*, const float*,
                                     LinearShape, float*);
// Batch 1 of the tiled 4-bit layout, bf16 activations and bf16 scales/shifts read in place.
using LinearW4GemvBf16ParamsFn = void (*)(const bf16*, const uint8_t*, int64_t, const bf16*, const bf16*,
                                          const float*, LinearShape, float*);
// linear_w8_bf16x / linear_fp8_bf16x are batched paths only (M >= 4, K % 32 == 0).
using LinearW8Bf16Fn = void (*)(const bf16*, const int8_t*, const float*, int64_t, const float*, LinearShape, float*);
using LinearFp8Fn = void (*)(const float*, const uint8_t*, Fp8Format, const float*, int64_t, const float*,
                             LinearShape, float*);
using LinearFp8Bf16Fn = void (*)(const bf16*, const uint8_t*, Fp8Format, const float*, int64_t, const float*,
                                 LinearShape, float*);
using LinearW8A8Fn = void (*)(const int8_t*, const float*, int64_t, const int8_t*, const float*, int64_t,
                              const float*, LinearShape, float*);
// W8A8 on the packed layout (kernels/ref/linear_ref.h, pack_w8a8_ref).
using LinearW8A8PackedFn = void (*)(const int8_t*, const float*, int64_t, const uint8_t*, const float*, int64_t,
                                    const float*, LinearShape, float*);
// W4A8: int8 activations × tiled 4-bit weights (kernels/ref/tiled_ref.h, linear_w4a8_tiled_ref).
// From kW4A8PrefillMinRows rows of x, the VNNI kernel unpacks the codes kW4A8ChannelBlock output
// channels at a time (channels in lanes), so the op layer hands threads whole blocks.
inline constexpr int64_t kW4A8PrefillMinRows = 16;
inline constexpr int64_t kW4A8ChannelBlock = 64;
using LinearW4A8TiledFn = void (*)(const int8_t*, const float*, int64_t, const uint8_t*, int64_t, const float*,
                                   const float*, const float*, LinearShape, float*);
// W4A8 at batch 1 with a bf16 model's scales and shifts read in place (the same contract, bf16
// parameters): a decode step's call with dynamic int8 activations.
using LinearW4A8GemvBf16ParamsFn = void (*)(const int8_t*, const float*, int64_t, const uint8_t*, int64_t,
                                            const bf16*, const bf16*, const float*, LinearShape, float*);
struct LinearKernels {
  LinearW8A8Fn linear_w8a8;
  LinearW4A8TiledFn linear_w4a8_tiled;
  LinearW4A8GemvBf16ParamsFn linear_w4a8_gemv_bf16_params;
  LinearW8A8PackedFn linear_w8a8_packed;
  LinearW8Fn linear_w8;
  LinearFp8Fn linear_fp8;
  LinearW4TiledFn linear_w4_tiled;
  LinearW4TiledFn linear_w2_tiled;  // the 2-bit tiled layout, same contract
  LinearW4TiledBf16Fn linear_w4_tiled_bf16x;
  LinearW8Bf16Fn linear_w8_bf16x;
  LinearFp8Bf16Fn linear_fp8_bf16x;
  LinearW4TiledBf16Fn linear_w2_tiled_bf16x;
  LinearW4GemvBf16ParamsFn linear_w4_gemv_bf16_params;
};
// The bf16-activation entries stay nullptr: the op layer then converts x to float.
constexpr LinearKernels reference_linear_kernels() {
  LinearKernels k{};
  k.linear_w8a8 = &linear_w8a8_ref;
  k.linear_w8a8_packed = &linear_w8a8_packed_ref;
  k.linear_w4a8_tiled = &linear_w4a8_tiled_ref;
  k.linear_w8 = &linear_int8_ref<float>;
  k.linear_fp8 = &linear_fp8_ref<float>;
  k.linear_w4_tiled = &linear_w4_tiled_ref;
  k.linear_w2_tiled = &linear_w2_tiled_ref;
  return k;
}

// HQQ parameter refinement over a range of groups (kernels/ref/hqq_ref.h).
using HqqRefineFn = void (*)(const float*, int64_t, int64_t, const HqqConfig&, float*, float*, float*);

// Decode attention (kernels/ref/attention_ref.h) on float and bf16 caches; float16 runs the reference.
struct AttentionKernels {
  DecodeAttentionFn<float> decode_f32;
  DecodeAttentionFn<bf16> decode_bf16;
};

// A float run to the layer's 16-bit dtype (kernels/ref/convert_ref.h): the fused kernels' float
// output, converted by the thread that wrote it; and a bf16 run to float (a bf16 model's scales
// and shifts for the float kernels).
struct ConvertKernels {
  ToBf16Fn to_bf16;
  ToFp16Fn to_fp16;
  FromBf16Fn from_bf16;
};

struct KernelTable {
  CpuIsa isa;
  QuantizeKernels<float> f32;
  QuantizeKernels<bf16> b16;
  LinearKernels linear;
  HqqRefineFn hqq_refine;
  AttentionKernels attention;
  ConvertKernels convert;
};

// The table of one ISA; throws std::invalid_argument if this CPU does not support it.
const KernelTable& kernel_table(CpuIsa isa);
// The table in use, selected on first call (QUANTO_CPU_ISA or the best supported ISA). Throws
// std::invalid_argument naming the accepted values if QUANTO_CPU_ISA is unknown or unsupported.
const KernelTable& kernels();
// Parses an ISA name; throws std::invalid_argument listing the accepted names.
CpuIsa parse_isa(const std::string& name);

// Typed access, so op code can stay generic over the element type.
template <typename T>
QuantizeKernels<T> quantize_kernels(const KernelTable& t) {
  if constexpr (std::is_same_v<T, float>) return t.f32;
  else if constexpr (std::is_same_v<T, bf16>) return t.b16;
  else return reference_quantize_kernels<T>();
}

}  // namespace quanto::kernels
