// Kernels of the avx512vnni tier (AVX-512 + VNNI; the avx512bf16 tier uses them too) and of the
// avx2vnni tier (AVX2 + AVX-VNNI): W8A8 and W4A8 with vpdpbusd (contracts of linear_w8a8_ref, linear_w8a8_packed_ref,
// linear_w4a8_tiled_ref).
#pragma once

#include <cstdint>

#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels::avx512vnni {

void linear_w8a8_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                      const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y);
// W8A8 on pre-packed weights (contract of linear_w8a8_packed_ref).
void linear_w8a8_packed_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,
                             const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s,
                             float* y);
// W4A8 with vpdpbusd (contract of linear_w4a8_tiled_ref).
void linear_w4a8_tiled_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                            int64_t group_size, const float* scale, const float* shift, const float* bias,
                            LinearShape s, float* y);
void linear_w4a8_gemv_bf16_params_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride,
                                       const uint8_t* tiled, int64_t group_size, const bf16* scale, const bf16* shift,
                                       const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels::avx512vnni

// The avx2vnni tier (AVX2 + AVX-VNNI): the same contracts with 256-bit vpdpbusd. W8A8 runs on
// the canonical layout only (the packed one is laid out for 512-bit registers).
namespace quanto::kernels::avx2vnni {

void linear_w8a8_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                      const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y);
void linear_w4a8_tiled_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                            int64_t group_size, const float* scale, const float* shift, const float* bias,
                            LinearShape s, float* y);
void linear_w4a8_gemv_bf16_params_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride,
                                       const uint8_t* tiled, int64_t group_size, const bf16* scale, const bf16* shift,
                                       const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels::avx2vnni
