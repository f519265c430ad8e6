#include "kernels/ref/convert_ref.h"

namespace quanto::kernels {

void to_bf16_ref(const float* src, bf16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_from_float(src[i]);
}

void to_fp16_ref(const float* src, fp16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_from_float(src[i]);
}

void from_bf16_ref(const bf16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

}  // namespace quanto::kernels
