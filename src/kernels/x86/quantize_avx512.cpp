// AVX-512 (F, BW, VL, DQ) variants, built with those -m flags. Tails go to the reference.
#include <immintrin.h>

#include <cstring>

#include "kernels/x86/quantize_x86.h"

namespace quanto::kernels::avx512 {
namespace {

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const bf16* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// Rounds each float to the nearest bf16 (ties to even); NaNs must be removed beforehand.
inline __m512 round_to(__m512 v, const bf16*) {
  __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  b = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
  return _mm512_castsi512_ps(_mm512_and_si512(b, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
inline __m512 round_to(__m512 v, const float*) { return v; }

template <typename T>
void absmax_rows(const T* x, int64_t rows, int64_t cols, float* amax) {
  const int64_t body = cols - cols % 16;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    __m512 m = _mm512_setzero_ps();
    __mmask16 nan = 0;
    for (int64_t c = 0; c < body; c += 16) {
      const __m512 v = _mm512_abs_ps(load16(row + c));
      nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
      m = _mm512_max_ps(m, v);
    }
    float result = _mm512_reduce_max_ps(m);
    if (nan) result = __builtin_nanf("");
    if (body < cols) {
      float tail;
      absmax_rows_ref<T>(row + body, 1, cols - body, &tail);
      if (tail > result || tail != tail) result = tail;
    }
    amax[r] = result;
  }
}

template <typename T>
void symmetric_quantize_int(const T* x, const float* scale, ParamLayout layout, int64_t rows,
                            int64_t cols, IntRange range, int8_t* q) {
  if (layout.col_stride != 0) {  // one scale per column: not specialised yet
    symmetric_quantize_int_ref<T>(x, scale, layout, rows, cols, range, q);
    return;
  }
  const __m512 lo = _mm512_set1_ps(static_cast<float>(range.qmin));
  const __m512 hi = _mm512_set1_ps(static_cast<float>(range.qmax));
  const int64_t body = cols - cols % 16;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    int8_t* out = q + r * cols;
    const float* s = scale + r * layout.row_stride;
    if (*s == 0.0f) {  // documented policy: a zero scale quantizes to 0
      std::memset(out, 0, static_cast<size_t>(cols));
      continue;
    }
    const __m512 sv = _mm512_set1_ps(*s);
    for (int64_t c = 0; c < body; c += 16) {
      __m512 v = _mm512_div_ps(load16(row + c), sv);
      v = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);  // NaN -> 0
      v = round_to(v, static_cast<const T*>(nullptr));
      v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + c), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    if (body < cols)
      symmetric_quantize_int_ref<T>(row + body, s, kPerTensor, 1, cols - body, range, out + body);
  }
}

}  // namespace

void absmax_rows_f32(const float* x, int64_t rows, int64_t cols, float* amax) {
  absmax_rows(x, rows, cols, amax);
}
void absmax_rows_bf16(const bf16* x, int64_t rows, int64_t cols, float* amax) {
  absmax_rows(x, rows, cols, amax);
}
void symmetric_quantize_int_f32(const float* x, const float* scale, ParamLayout layout,
                                int64_t rows, int64_t cols, IntRange range, int8_t* q) {
  symmetric_quantize_int(x, scale, layout, rows, cols, range, q);
}
void symmetric_quantize_int_bf16(const bf16* x, const float* scale, ParamLayout layout,
                                 int64_t rows, int64_t cols, IntRange range, int8_t* q) {
  symmetric_quantize_int(x, scale, layout, rows, cols, range, q);
}

}  // namespace quanto::kernels::avx512
