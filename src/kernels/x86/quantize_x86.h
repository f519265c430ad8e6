// x86 variants of the quantization kernels. Each namespace is one translation unit built with
// its own -m flags; call only through the dispatch table, after checking cpu_supports().
// Same contracts as the scalar references in kernels/ref/quantize_ref.h.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/quantize_ref.h"

namespace quanto::kernels {

#define QUANTO_DECLARE_QUANTIZE_X86                                                             \
  void absmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* amax);                \
  void absmax_rows_bf16(const bf16* x, int64_t rows, int64_t cols, float* amax);                \
  void symmetric_quantize_int_f32(const float* x, const float* scale, ParamLayout layout,       \
                                  int64_t rows, int64_t cols, IntRange range, int8_t* q);       \
  void symmetric_quantize_int_bf16(const bf16* x, const float* scale, ParamLayout layout,        \
                                   int64_t rows, int64_t cols, IntRange range, int8_t* q);

namespace avx2 {
QUANTO_DECLARE_QUANTIZE_X86
}
namespace avx512 {
QUANTO_DECLARE_QUANTIZE_X86
}

#undef QUANTO_DECLARE_QUANTIZE_X86

}  // namespace quanto::kernels
