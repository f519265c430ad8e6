// Linear kernels that take bfloat16 activations directly (AVX-512 BF16). Contracts as in
// kernels/ref/tiled_ref.h, with x in bf16 and y in float.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels::avx512bf16 {

void linear_w4_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels::avx512bf16
