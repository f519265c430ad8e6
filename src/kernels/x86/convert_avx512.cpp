// AVX-512 float -> bf16 / fp16, 16 values a register, the last ones under a mask: the 16-bit
// results are formed in 32-bit lanes (NaN lanes set to the reference's NaN) and narrowed by
// vpmovdw.
#include <immintrin.h>

#include "kernels/x86/bf16_simd.h"
#include "kernels/x86/convert_x86.h"
#include "kernels/x86/vec_avx512.h"

namespace quanto::kernels::avx512 {
namespace {

// As bf16_from_float: add 0x7FFF plus the kept bit's parity, keep the upper half; NaN as 0x7FC0.
inline __m512i bf16_lanes(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7FFF)), odd), 16);
  return _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
}

// vcvtps2ph rounds to nearest even as fp16_from_float; a NaN keeps its sign with 0x7E00.
inline __m512i fp16_lanes(__m512 v) {
  const __m512i h = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  const __m512i sign = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 16), _mm512_set1_epi32(0x8000));
  return _mm512_mask_mov_epi32(h, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q),
                               _mm512_or_si512(sign, _mm512_set1_epi32(0x7E00)));
}

template <typename Lanes>
void convert16(const float* src, uint16_t* dst, int64_t n, Lanes lanes) {
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 m = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
    _mm256_mask_storeu_epi16(dst + i, m, _mm512_cvtepi32_epi16(lanes(_mm512_maskz_loadu_ps(m, src + i))));
  }
}

}  // namespace

void to_bf16(const float* src, bf16* dst, int64_t n) {
  convert16(src, reinterpret_cast<uint16_t*>(dst), n, bf16_lanes);
}

void to_fp16(const float* src, fp16* dst, int64_t n) {
  convert16(src, reinterpret_cast<uint16_t*>(dst), n, fp16_lanes);
}

void from_bf16(const bf16* src, float* dst, int64_t n) { simd::bf16_to_floats<Vec>(src, n, dst); }

}  // namespace quanto::kernels::avx512
