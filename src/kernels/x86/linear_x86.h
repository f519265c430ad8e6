// x86 variants of the linear kernels (contracts: kernels/ref/linear_ref.h and
// kernels/ref/tiled_ref.h, with float x and y, or int8 x for W8A8 / W4A8). One namespace per ISA translation unit.
#pragma once

#include <cstdint>

#include "kernels/ref/linear_ref.h"

namespace quanto::kernels {

#define QUANTO_DECLARE_LINEAR_X86                                                                          \
  void linear_w8(const float* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias, \
                 LinearShape s, float* y);                                                                 \
  void linear_w4_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,        \
                       const float* shift, const float* bias, LinearShape s, float* y);                    \
  void linear_w2_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,        \
                       const float* shift, const float* bias, LinearShape s, float* y);                    \
  void linear_w4_gemv_bf16_params(const bf16* x, const uint8_t* tiled, int64_t group_size, const bf16* scale, \
                                  const bf16* shift, const float* bias, LinearShape s, float* y);          \
  void linear_fp8(const float* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride, \
                  const float* bias, LinearShape s, float* y);                                             \
  void linear_w8a8(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,          \
                   const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y); \
  void linear_w8a8_packed(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,  \
                          const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y); \
  void linear_w4a8_tiled(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,    \
                         int64_t group_size, const float* scale, const float* shift, const float* bias,          \
                         LinearShape s, float* y);                                                         \
  void linear_w4a8_gemv_bf16_params(const int8_t* x, const float* x_scale, int64_t x_scale_stride,          \
                                    const uint8_t* tiled, int64_t group_size, const bf16* scale,            \
                                    const bf16* shift, const float* bias, LinearShape s, float* y);

namespace avx2 {
QUANTO_DECLARE_LINEAR_X86
}
namespace avx512 {
QUANTO_DECLARE_LINEAR_X86
}

#undef QUANTO_DECLARE_LINEAR_X86

// Each ISA translation unit defines its entry points with this, over its own vector traits.
#define QUANTO_DEFINE_LINEAR_X86(Vec)                                                                      \
  void linear_w8(const float* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias, \
                 LinearShape s, float* y) {                                                                \
    simd::linear_w8<Vec>(x, w, scale, scale_stride, bias, s, y);                                           \
  }                                                                                                        \
  void linear_w4_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,        \
                       const float* shift, const float* bias, LinearShape s, float* y) {                   \
    simd::linear_w4_tiled<Vec>(x, tiled, group_size, scale, shift, bias, s, y);                            \
  }                                                                                                        \
  void linear_w2_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,        \
                       const float* shift, const float* bias, LinearShape s, float* y) {                   \
    simd::linear_w2_tiled<Vec>(x, tiled, group_size, scale, shift, bias, s, y);                            \
  }                                                                                                        \
  void linear_w4_gemv_bf16_params(const bf16* x, const uint8_t* tiled, int64_t group_size, const bf16* scale, \
                                  const bf16* shift, const float* bias, LinearShape s, float* y) {         \
    simd::linear_w4_gemv_bf16_params<Vec>(x, tiled, group_size, scale, shift, bias, s, y);                 \
  }                                                                                                        \
  void linear_fp8(const float* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride, \
                  const float* bias, LinearShape s, float* y) {                                            \
    simd::linear_fp8<Vec>(x, w, format, scale, scale_stride, bias, s, y);                                  \
  }                                                                                                        \
  void linear_w8a8(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,          \
                   const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) { \
    if (s.M >= simd::kW8A8PrefillMinRows)                                                                  \
      simd::w8a8_prefill<Vec>(x, x_scale, x_scale_stride, w, w_scale, w_scale_stride, bias, s, y);         \
    else                                                                                                   \
      simd::linear_w8a8<Vec>(x, x_scale, x_scale_stride, w, w_scale, w_scale_stride, bias, s, y);          \
  }                                                                                                        \
  void linear_w8a8_packed(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,  \
                          const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) { \
    simd::linear_w8a8_packed<Vec>(x, x_scale, x_scale_stride, packed, w_scale, w_scale_stride, bias, s, y);  \
  }                                                                                                        \
  void linear_w4a8_tiled(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,    \
                         int64_t group_size, const float* scale, const float* shift, const float* bias,          \
                         LinearShape s, float* y) {                                                        \
    if (s.M >= kW4A8PrefillMinRows && simd::slot_gemv_supports<Vec, 4>(group_size))                        \
      simd::w4a8_prefill<Vec, simd::PairProductTile<Vec>>(x, x_scale, x_scale_stride, tiled, group_size, scale,  \
                                                          shift, bias, s, y);                               \
    else                                                                                                   \
      simd::linear_w4a8_tiled<Vec>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);   \
  }                                                                                                        \
  void linear_w4a8_gemv_bf16_params(const int8_t* x, const float* x_scale, int64_t x_scale_stride,          \
                                    const uint8_t* tiled, int64_t group_size, const bf16* scale,            \
                                    const bf16* shift, const float* bias, LinearShape s, float* y) {        \
    simd::linear_w4a8_tiled<Vec, bf16>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y); \
  }

}  // namespace quanto::kernels
