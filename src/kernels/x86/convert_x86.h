// x86 builds of the float <-> bf16 and float -> fp16 conversions (kernels/ref/convert_ref.h); call only
// through the dispatch table. Bit-exact with the references, NaN included.
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace quanto::kernels {
namespace avx2 {
void to_bf16(const float* src, bf16* dst, int64_t n);
void to_fp16(const float* src, fp16* dst, int64_t n);
void from_bf16(const bf16* src, float* dst, int64_t n);
}  // namespace avx2
namespace avx512 {
void to_bf16(const float* src, bf16* dst, int64_t n);
void to_fp16(const float* src, fp16* dst, int64_t n);
void from_bf16(const bf16* src, float* dst, int64_t n);
}  // namespace avx512
}  // namespace quanto::kernels
