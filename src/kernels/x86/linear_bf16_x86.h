// Linear kernels that take bfloat16 activations directly (AVX-512 BF16). Contracts as in
// kernels/ref/tiled_ref.h, with x in bf16 and y in float.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels::avx512bf16 {

// int8 weights [N, K] with K % 32 == 0, bf16 activations: the batched (GEMM) path, meant for
// M >= 4 (the op layer sends smaller batches to the float GEMV, which is bandwidth bound).
void linear_w8_bf16x(const bf16* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
                     LinearShape s, float* y);

// float8 weights, same contract as linear_w8_bf16x.
void linear_fp8_bf16x(const bf16* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                      const float* bias, LinearShape s, float* y);

void linear_w4_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels::avx512bf16
