// x86 variants of the quantization kernels. Each namespace is one translation unit built with
// its own -m flags; call only through the dispatch table, after checking cpu_supports().
// Same contracts as the scalar references in kernels/ref/quantize_ref.h.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/quantize_ref.h"

namespace quanto::kernels {

#define QUANTO_DECLARE_QUANTIZE_X86(T, suffix)                                                                  \
  void absmax_rows_##suffix(const T* x, int64_t rows, int64_t cols, float* amax);                             \
  void minmax_rows_##suffix(const T* x, int64_t rows, int64_t cols, float* mn, float* mx);                    \
  void symmetric_quantize_int_##suffix(const T* x, const float* scale, ParamLayout layout, int64_t rows,      \
                                       int64_t cols, IntRange range, int8_t* q);                              \
  void affine_quantize_##suffix(const T* x, const float* scale, const float* shift, ParamLayout layout,       \
                                int64_t rows, int64_t cols, int32_t code_max, uint8_t* q);                    \
  void affine_quantize_zp_##suffix(const T* x, const float* scale, const uint8_t* zero_point,                 \
                                   ParamLayout layout, int64_t rows, int64_t cols, int32_t code_max, uint8_t* q);

namespace avx2 {
QUANTO_DECLARE_QUANTIZE_X86(float, f32)
QUANTO_DECLARE_QUANTIZE_X86(bf16, bf16)
}  // namespace avx2
namespace avx512 {
QUANTO_DECLARE_QUANTIZE_X86(float, f32)
QUANTO_DECLARE_QUANTIZE_X86(bf16, bf16)
}  // namespace avx512

#undef QUANTO_DECLARE_QUANTIZE_X86

// Each ISA translation unit defines its entry points with this, over its own vector traits.
#define QUANTO_DEFINE_QUANTIZE_X86(Vec, T, suffix)                                                              \
  void absmax_rows_##suffix(const T* x, int64_t rows, int64_t cols, float* amax) {                            \
    simd::absmax_rows<Vec, T>(x, rows, cols, amax);                                                           \
  }                                                                                                           \
  void minmax_rows_##suffix(const T* x, int64_t rows, int64_t cols, float* mn, float* mx) {                   \
    simd::minmax_rows<Vec, T>(x, rows, cols, mn, mx);                                                         \
  }                                                                                                           \
  void symmetric_quantize_int_##suffix(const T* x, const float* scale, ParamLayout layout, int64_t rows,      \
                                       int64_t cols, IntRange range, int8_t* q) {                             \
    simd::symmetric_quantize_int<Vec, T>(x, scale, layout, rows, cols, range, q);                             \
  }                                                                                                           \
  void affine_quantize_##suffix(const T* x, const float* scale, const float* shift, ParamLayout layout,       \
                                int64_t rows, int64_t cols, int32_t code_max, uint8_t* q) {                   \
    simd::affine_quantize<Vec, T>(x, scale, shift, layout, rows, cols, code_max, q);                          \
  }                                                                                                           \
  void affine_quantize_zp_##suffix(const T* x, const float* scale, const uint8_t* zero_point,                 \
                                   ParamLayout layout, int64_t rows, int64_t cols, int32_t code_max,          \
                                   uint8_t* q) {                                                              \
    simd::affine_quantize_zp<Vec, T>(x, scale, zero_point, layout, rows, cols, code_max, q);                  \
  }

}  // namespace quanto::kernels
