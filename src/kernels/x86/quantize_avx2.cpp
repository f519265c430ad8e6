// AVX2 + FMA + F16C variants (built with -mavx2 -mfma -mf16c). Tails go to the reference.
#include <immintrin.h>

#include <cstring>

#include "kernels/x86/quantize_x86.h"

namespace quanto::kernels::avx2 {
namespace {

inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const bf16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

// Rounds each float to the nearest bf16 (ties to even); NaNs must be removed beforehand.
inline __m256 round_to_bf16(__m256 v) {
  __m256i b = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
  b = _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
  return _mm256_castsi256_ps(_mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
}
inline __m256 round_to(__m256 v, const float*) { return v; }
inline __m256 round_to(__m256 v, const bf16*) { return round_to_bf16(v); }

template <typename T>
void absmax_rows(const T* x, int64_t rows, int64_t cols, float* amax) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const int64_t body = cols - cols % 8;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    __m256 m = _mm256_setzero_ps();
    __m256 nan = _mm256_setzero_ps();
    for (int64_t c = 0; c < body; c += 8) {
      const __m256 v = _mm256_andnot_ps(sign, load8(row + c));
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      m = _mm256_max_ps(m, v);
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, m);
    float result = 0.0f;
    for (float l : lanes) result = l > result ? l : result;
    if (!_mm256_testz_ps(nan, nan)) result = __builtin_nanf("");
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
  const __m256 lo = _mm256_set1_ps(static_cast<float>(range.qmin));
  const __m256 hi = _mm256_set1_ps(static_cast<float>(range.qmax));
  const int64_t body = cols - cols % 8;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    int8_t* out = q + r * cols;
    const float* s = scale + r * layout.row_stride;
    if (*s == 0.0f) {  // documented policy: a zero scale quantizes to 0
      std::memset(out, 0, static_cast<size_t>(cols));
      continue;
    }
    const __m256 sv = _mm256_set1_ps(*s);
    for (int64_t c = 0; c < body; c += 8) {
      __m256 v = _mm256_div_ps(load8(row + c), sv);
      v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));  // NaN -> 0
      v = round_to(v, static_cast<const T*>(nullptr));
      v = _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i i32 = _mm256_cvtps_epi32(v);
      const __m128i i16 = _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(out + c), _mm_packs_epi16(i16, i16));
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

}  // namespace quanto::kernels::avx2
