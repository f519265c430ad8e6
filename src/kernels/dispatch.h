// Run-time choice of CPU kernels.
//
// Each ISA has a table of function pointers; entries without an optimised variant point to the
// scalar reference. The table is chosen once, from the CPU's features, or from the
// QUANTO_CPU_ISA environment variable (generic | avx2 | avx512) so one machine can exercise
// every variant it supports. Build flags never decide this.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/ref/quantize_ref.h"

namespace quanto::kernels {

enum class CpuIsa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(CpuIsa isa);
bool cpu_supports(CpuIsa isa);
std::vector<CpuIsa> supported_isas();  // generic first

template <typename T>
using AbsmaxRowsFn = void (*)(const T*, int64_t, int64_t, float*);
template <typename T>
using SymmetricQuantizeIntFn = void (*)(const T*, const float*, ParamLayout, int64_t, int64_t,
                                        IntRange, int8_t*);

struct KernelTable {
  CpuIsa isa;
  AbsmaxRowsFn<float> absmax_rows_f32;
  AbsmaxRowsFn<bf16> absmax_rows_bf16;
  SymmetricQuantizeIntFn<float> symmetric_quantize_int_f32;
  SymmetricQuantizeIntFn<bf16> symmetric_quantize_int_bf16;
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
AbsmaxRowsFn<T> absmax_rows(const KernelTable& t) {
  if constexpr (std::is_same_v<T, float>) return t.absmax_rows_f32;
  else if constexpr (std::is_same_v<T, bf16>) return t.absmax_rows_bf16;
  else return &absmax_rows_ref<T>;
}
template <typename T>
SymmetricQuantizeIntFn<T> symmetric_quantize_int(const KernelTable& t) {
  if constexpr (std::is_same_v<T, float>) return t.symmetric_quantize_int_f32;
  else if constexpr (std::is_same_v<T, bf16>) return t.symmetric_quantize_int_bf16;
  else return &symmetric_quantize_int_ref<T>;
}

}  // namespace quanto::kernels
