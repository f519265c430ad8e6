// Kernels of the avx512bf16 tier (AVX-512 + BF16 + VNNI): linear layers that take bfloat16
// activations directly (contracts as in kernels/ref/tiled_ref.h, x in bf16, y in float), and
// W8A8 and W4A8 on VNNI (contracts of linear_w8a8_ref, linear_w4a8_tiled_ref).
#pragma once

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels::avx512bf16 {

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

// int8 weights [N, K] with K % 32 == 0, bf16 activations: vdpbf16ps on the exactly converted
// weights, a GEMV for M = 2-8 and the panel GEMM above (M = 1 runs the float GEMV).
void linear_w8_bf16x(const bf16* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
                     LinearShape s, float* y);

// float8 weights, same contract as linear_w8_bf16x.
void linear_fp8_bf16x(const bf16* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                      const float* bias, LinearShape s, float* y);

void linear_w4_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y);
// The tiled 2-bit layout, same contract (any M; the bf16 fast path is batch < 4 with group
// sizes % 128 == 0 and K % 256 == 0, the rest runs the float kernel).
void linear_w2_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels::avx512bf16
