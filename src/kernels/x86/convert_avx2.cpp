// AVX2 + F16C float -> bf16 / fp16, 16 values a step: each 8-float half becomes eight 32-bit
// lanes holding the 16-bit result (NaN lanes set to the reference's NaN), and one unsigned pack
// narrows the two halves; the scalar reference finishes a run.
#include <immintrin.h>

#include "kernels/ref/convert_ref.h"
#include "kernels/x86/bf16_simd.h"
#include "kernels/x86/convert_x86.h"
#include "kernels/x86/vec_avx2.h"

namespace quanto::kernels::avx2 {
namespace {

// bf16 bits in 32-bit lanes: the upper half after adding 0x7FFF plus the kept bit's parity (ties
// to even; a carry moves into the exponent, as in bf16_from_float); NaN as 0x7FC0.
inline __m256i bf16_lanes(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), odd), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
}

// fp16 bits in 32-bit lanes: F16C's conversion rounds to nearest even (subnormals and overflow
// to infinity as fp16_from_float); a NaN keeps its sign with the canonical 0x7E00.
inline __m256i fp16_lanes(__m256 v) {
  const __m256i h = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(v), 16), _mm256_set1_epi32(0x8000));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_epi8(h, _mm256_or_si256(sign, _mm256_set1_epi32(0x7E00)), nan);
}

template <typename Lanes>
int64_t convert16(const float* src, uint16_t* dst, int64_t n, Lanes lanes) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i packed = _mm256_packus_epi32(lanes(_mm256_loadu_ps(src + i)), lanes(_mm256_loadu_ps(src + i + 8)));
    // packus interleaves the halves per 128-bit lane: 0-3, 8-11, 4-7, 12-15.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), _mm256_permute4x64_epi64(packed, 0xD8));
  }
  return i;
}

}  // namespace

void to_bf16(const float* src, bf16* dst, int64_t n) {
  const int64_t done = convert16(src, reinterpret_cast<uint16_t*>(dst), n, bf16_lanes);
  to_bf16_ref(src + done, dst + done, n - done);
}

void to_fp16(const float* src, fp16* dst, int64_t n) {
  const int64_t done = convert16(src, reinterpret_cast<uint16_t*>(dst), n, fp16_lanes);
  to_fp16_ref(src + done, dst + done, n - done);
}

void from_bf16(const bf16* src, float* dst, int64_t n) { simd::bf16_to_floats<Vec>(src, n, dst); }

}  // namespace quanto::kernels::avx2
