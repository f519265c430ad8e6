// Kernels of the avx512bf16 tier (AVX-512 + BF16 + VNNI): linear layers that take bfloat16
// activations directly (contracts as in kernels/ref/tiled_ref.h, x in bf16, y in float). Its
// W8A8 and W4A8 kernels are the avx512vnni tier's (linear_vnni_x86.h).
#pragma once

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels::avx512bf16 {

// int8 weights [N, K] with K % 32 == 0, bf16 activations: vdpbf16ps on the exactly converted
// weights, a GEMV for M = 2-8 and the panel GEMM above (M = 1 runs the float GEMV).
void linear_w8_bf16x(const bf16* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
                     LinearShape s, float* y);

// float8 weights, same contract as linear_w8_bf16x.
void linear_fp8_bf16x(const bf16* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                      const float* bias, LinearShape s, float* y);

void linear_w4_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y);
// Batch 1 (s.M == 1) of the tiled 4-bit layout with a bf16 model's scales and shifts read in
// place (groups of any multiple of 32 codes): the decode-time GEMV without a conversion pass.
void linear_w4_gemv_bf16_params(const bf16* x, const uint8_t* tiled, int64_t group_size, const bf16* scale,
                                const bf16* shift, const float* bias, LinearShape s, float* y);
// The tiled 2-bit layout, same contract (any M; the bf16 fast path is batch < 4 with group
// sizes % 128 == 0 and K % 256 == 0, the rest runs the float kernel).
void linear_w2_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels::avx512bf16
