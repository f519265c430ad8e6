// A 16 × 16 transpose of 32-bit elements in AVX-512 registers, for kernels that turn weights
// stored row by row (k along a row) into channels-in-lanes blocks at run time. Include only from
// translation units built with AVX-512; the anonymous namespace gives each its own copy.
#pragma once

#include <immintrin.h>

namespace quanto::kernels::avx512 {
namespace {

// The 16 × 16 dword matrix r (row i in r[i]) transposed in place: r[j] lane i = old r[i] lane j.
inline void transpose16_epi32(__m512i r[16]) {
  __m512i t[16], u[16];
  for (int i = 0; i < 16; i += 2) {  // pairs of rows interleaved per 128-bit lane
    t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
  }
  // u[4b + c], 128-bit lane L: rows 4b .. 4b + 3 of column 4L + c.
  for (int b = 0; b < 4; ++b) {
    u[4 * b + 0] = _mm512_unpacklo_epi64(t[4 * b], t[4 * b + 2]);
    u[4 * b + 1] = _mm512_unpackhi_epi64(t[4 * b], t[4 * b + 2]);
    u[4 * b + 2] = _mm512_unpacklo_epi64(t[4 * b + 1], t[4 * b + 3]);
    u[4 * b + 3] = _mm512_unpackhi_epi64(t[4 * b + 1], t[4 * b + 3]);
  }
  for (int c = 0; c < 4; ++c) {  // column 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c]
    const __m512i v = _mm512_shuffle_i32x4(u[c], u[4 + c], 0x88), w = _mm512_shuffle_i32x4(u[c], u[4 + c], 0xDD);
    const __m512i v2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0x88);
    const __m512i w2 = _mm512_shuffle_i32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = _mm512_shuffle_i32x4(v, v2, 0x88);
    r[8 + c] = _mm512_shuffle_i32x4(v, v2, 0xDD);
    r[4 + c] = _mm512_shuffle_i32x4(w, w2, 0x88);
    r[12 + c] = _mm512_shuffle_i32x4(w, w2, 0xDD);
  }
}

}  // namespace
}  // namespace quanto::kernels::avx512
