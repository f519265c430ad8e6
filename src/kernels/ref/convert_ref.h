// float -> bf16 / fp16 over a run of values: how a kernel's float output (the fused linear
// kernels accumulate and write float) becomes the layer's own dtype. Round to nearest, ties to
// even, as c10 does (numeric.h); NaN stays NaN (the vector builds may keep a NaN's payload where
// c10 writes its canonical NaN: both are NaN). And bf16 -> float, exact (the bits shifted up,
// NaN payloads included): how a bf16 model's scales and shifts reach the float kernels.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace quanto::kernels {

using ToBf16Fn = void (*)(const float* src, bf16* dst, int64_t n);
using ToFp16Fn = void (*)(const float* src, fp16* dst, int64_t n);
using FromBf16Fn = void (*)(const bf16* src, float* dst, int64_t n);

void to_bf16_ref(const float* src, bf16* dst, int64_t n);
void to_fp16_ref(const float* src, fp16* dst, int64_t n);
void from_bf16_ref(const bf16* src, float* dst, int64_t n);

}  // namespace quanto::kernels
