// Kernels for the avx512bf16 tier (AVX-512 plus BF16 and VNNI; built with -mavx512bf16
// -mavx512vnni on top of the AVX-512 flags): weight-only linear for bfloat16 activations, and
// W8A8 and W4A8 with vpdpbusd.
//
// A 4-bit code c becomes the bf16 weight 128 + c with a single OR (0x4300 | c is exactly
// bf16(128 + c), since bf16's ulp is 1 on [128, 256)), and vdpbf16ps multiplies 32 of them by
// 32 bf16 activations per instruction, accumulating in fp32. bf16 × bf16 products are exact in
// fp32, so this loses nothing against decoding to float. The bias comes back out per group:
//   Σ_k x_k (c_k s_g - h_g) = s_g Σ_k x_k (128 + c_k) - (128 s_g + h_g) Σ_k x_k.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/x86/gemm_bf16_panels.h"
#include "kernels/x86/linear_bf16_x86.h"
#include "kernels/x86/linear_simd.h"
#include "kernels/x86/linear_x86.h"
#include "kernels/x86/transpose_avx512.h"
#include "kernels/x86/vec_avx512.h"
#include "kernels/x86/w4a8_simd.h"

namespace quanto::kernels::avx512bf16 {
namespace {

using simd::kRowBlock;

inline float hsum(__m512 v) { return avx512::Vec::hsum(v); }

// Σ_g (128 s_g + h_g) xsum_g, 16 groups per step (a serial scalar chain would cost ~4 cycles
// a group, a large share of a row's work at K = 4096).
inline float group_correction(const float* scale, const float* shift, const float* xsum, int64_t groups) {
  __m512 c = _mm512_setzero_ps();
  const __m512 bias = _mm512_set1_ps(128.0f);
  int64_t g = 0;
  for (; g + 16 <= groups; g += 16) {
    const __m512 xs = _mm512_loadu_ps(xsum + g);
    c = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_loadu_ps(scale + g), bias, _mm512_loadu_ps(shift + g)), xs, c);
  }
  float tail = 0.0f;
  for (; g < groups; ++g) tail += (128.0f * scale[g] + shift[g]) * xsum[g];
  return hsum(c) + tail;
}

// ---- GEMV, group sizes that are multiples of 128: four tiled blocks per 64-byte load ----
// Read as 32 16-bit words, 64 bytes of a tiled row (blocks b..b+3, codes 128·c … 128·c + 127)
// hold in word j four codes, one per nibble q: byte 2j + (q >> 1), nibble q & 1. Nibble q of every
// word is one shift and one AND/OR (vpternlogd) away from bf16(128 + c): four dot-product inputs
// per load and no shuffle, against a 16-byte load, a shift, an insert, an AND, a widening shuffle
// and an OR per 32 codes decoding block by block. x is permuted once per call to match (a
// permutation inside each 128-code chunk, so group sums are unchanged).
inline int64_t chunk_code(int q, int64_t j) {
  const int64_t b = 2 * j + (q >> 1);  // byte in the 64-byte chunk
  return (b / 16) * kTileCodes + (q & 1) * 16 + b % 16;
}

void permute_x_chunks(const bf16* x, int64_t K, bf16* out) {
  for (int64_t c = 0; c < K; c += 128)
    for (int q = 0; q < 4; ++q)
      for (int64_t j = 0; j < 32; ++j) out[c + q * 32 + j] = x[c + chunk_code(q, j)];
}

// Software prefetch into L2 of the same offset 16 rows ahead (four row blocks, 32 KiB at
// K = 4096): with four row streams interleaved the hardware prefetcher alone left one core at
// ~35% of its read bandwidth on weights larger than the LLC. Measured on 14336 x 4096 (Zen 4, one
// thread): no prefetch 3.8 ms, T0 8 rows ahead 2.8 ms, T1 (L2) 16 rows ahead 1.6 ms; T1 8/32/64
// rows and T0 4/12/16/32 rows and NTA were slower.
constexpr int64_t kPrefetchRows = 16;

template <int NR>
void w4_dot_rows_g128(const bf16* xp, const uint8_t* tiled, int64_t K, int64_t group_size, const float* scale,
                      const float* shift, const float* xsum, float* dots) {
  const int64_t groups = K / group_size, row_bytes = K / 2;
  const __m512i low4 = _mm512_set1_epi16(0x000F), one28 = _mm512_set1_epi16(0x4300);
  constexpr int kTern = 0xEA;  // (a & b) | c
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 ga[NR], gb[NR];
    for (int r = 0; r < NR; ++r) ga[r] = gb[r] = _mm512_setzero_ps();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 128) {
      const __m512bh x0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k));
      const __m512bh x1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + 32));
      const __m512bh x2 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + 64));
      const __m512bh x3 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + 96));
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = tiled + r * row_bytes + k / 2;
        _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
        const __m512i w = _mm512_loadu_si512(wp);
        const __m512i c0 = _mm512_ternarylogic_epi32(w, low4, one28, kTern);
        const __m512i c1 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), low4, one28, kTern);
        const __m512i c2 = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 8), low4, one28, kTern);
        const __m512i c3 = _mm512_or_si512(_mm512_srli_epi16(w, 12), one28);
        ga[r] = _mm512_dpbf16_ps(ga[r], reinterpret_cast<__m512bh>(c0), x0);
        gb[r] = _mm512_dpbf16_ps(gb[r], reinterpret_cast<__m512bh>(c1), x1);
        ga[r] = _mm512_dpbf16_ps(ga[r], reinterpret_cast<__m512bh>(c2), x2);
        gb[r] = _mm512_dpbf16_ps(gb[r], reinterpret_cast<__m512bh>(c3), x3);
      }
    }
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(ga[r], gb[r]), _mm512_set1_ps(scale[r * groups + g]), acc[r]);
  }
  for (int r = 0; r < NR; ++r)
    dots[r] = hsum(acc[r]) - group_correction(scale + r * groups, shift + r * groups, xsum, groups);
}

// Batches of MB rows (2 to 8): the same decoding, each 64-byte load decoded once for every row
// of x. MB × NR × S group accumulators and MB × NR running sums stay in registers; with one
// weight row (NR = 1) each sum has S = 2 accumulators, so that enough independent vdpbf16ps
// chains are in flight.
template <int MB, int NR>
[[gnu::noinline]] void w4_dot_batch_g128(const bf16* xp, int64_t ldx, const uint8_t* tiled, int64_t K,
                                         int64_t group_size, const float* scale, float dots[][NR]) {
  constexpr int S = NR == 1 ? 2 : 1;
  const int64_t groups = K / group_size, row_bytes = K / 2;
  const __m512i low4 = _mm512_set1_epi16(0x000F), one28 = _mm512_set1_epi16(0x4300);
  constexpr int kTern = 0xEA;  // (a & b) | c
  __m512 acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 ga[MB][NR][S];
    for (int m = 0; m < MB; ++m)
      for (int r = 0; r < NR; ++r)
        for (int i = 0; i < S; ++i) ga[m][r][i] = _mm512_setzero_ps();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 128) {
      __m512i c[NR][4];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = tiled + r * row_bytes + k / 2;
        _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
        const __m512i w = _mm512_loadu_si512(wp);
        c[r][0] = _mm512_ternarylogic_epi32(w, low4, one28, kTern);
        c[r][1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), low4, one28, kTern);
        c[r][2] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 8), low4, one28, kTern);
        c[r][3] = _mm512_or_si512(_mm512_srli_epi16(w, 12), one28);
      }
      for (int m = 0; m < MB; ++m)
        for (int q = 0; q < 4; ++q) {
          const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + m * ldx + k + 32 * q));
          for (int r = 0; r < NR; ++r)
            ga[m][r][q % S] = _mm512_dpbf16_ps(ga[m][r][q % S], reinterpret_cast<__m512bh>(c[r][q]), xv);
        }
    }
    for (int r = 0; r < NR; ++r) {
      const __m512 sv = _mm512_set1_ps(scale[r * groups + g]);
      for (int m = 0; m < MB; ++m) {
        __m512 sum = ga[m][r][0];
        for (int i = 1; i < S; ++i) sum = _mm512_add_ps(sum, ga[m][r][i]);
        acc[m][r] = _mm512_fmadd_ps(sum, sv, acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) dots[m][r] = hsum(acc[m][r]);
}

// y for 2 <= M <= 8 rows of x, groups of a multiple of 128 codes: x permuted per 128-code chunk
// (permute_x_chunks); one pass over the weights, two rows at a time up to 4 rows of x, one above.
void w4_batch_g128(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale, const float* shift,
                   const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, groups = K / group_size, row_bytes = K / 2;
  std::vector<bf16> xp(static_cast<size_t>(s.M * K));
  std::vector<float> xsum(static_cast<size_t>(s.M * groups));
  for (int64_t m = 0; m < s.M; ++m) {
    permute_x_chunks(x + m * K, K, xp.data() + m * K);
    for (int64_t g = 0; g < groups; ++g) {
      float t = 0.0f;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) t += to_float(x[m * K + k]);
      xsum[m * groups + g] = t;
    }
  }
  auto store = [&](int64_t m, int64_t n, float d) {
    const float v = d - group_correction(scale + n * groups, shift + n * groups, xsum.data() + m * groups, groups);
    y[m * s.N + n] = bias ? v + bias[n] : v;
  };
  auto rows = [&](auto mb) {
    constexpr int MB = decltype(mb)::value, NR = MB <= 4 ? 2 : 1;  // 2 · MB · NR accumulators
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) {
      float dots[MB][NR];
      w4_dot_batch_g128<MB, NR>(xp.data(), K, tiled + n * row_bytes, K, group_size, scale + n * groups, dots);
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) store(m, n + r, dots[m][r]);
    }
    for (; n < s.n_end; ++n) {
      float dots[MB][1];
      w4_dot_batch_g128<MB, 1>(xp.data(), K, tiled + n * row_bytes, K, group_size, scale + n * groups, dots);
      for (int m = 0; m < MB; ++m) store(m, n, dots[m][0]);
    }
  };
  simd::with_static_rows<2, simd::kGemmMinRows - 1>(s.M, rows);
}

// ---- W2 GEMV, group sizes that are multiples of 128, K % 256 == 0 ----
// The same idea for the tiled 2-bit layout: 64 bytes (four 64-code blocks, 256 codes) as 32
// 16-bit words hold eight codes per word, crumb q at bits 2q: byte 2j + (q >> 2), crumb q & 3.
// Lanes 0-15 of each decoded vector come from blocks 0-1 (codes 0-127 of the chunk), lanes 16-31
// from blocks 2-3, so the fp32 lanes 0-7 / 8-15 of the dot products belong to the chunk's first
// / second 128 codes: one scale vector per chunk handles groups of 128 as well as larger ones.
inline int64_t chunk2_code(int q, int64_t j) {
  const int64_t b = 2 * j + (q >> 2);
  return (b / 16) * kTile2Codes + (q & 3) * 16 + b % 16;
}

void permute_x_chunks2(const bf16* x, int64_t K, bf16* out) {
  for (int64_t c = 0; c < K; c += 256)
    for (int q = 0; q < 8; ++q)
      for (int64_t j = 0; j < 32; ++j) out[c + q * 32 + j] = x[c + chunk2_code(q, j)];
}

template <int NR>
void w2_dot_rows_c256(const bf16* xp, const uint8_t* tiled, int64_t K, int64_t group_size, const float* scale,
                      const float* shift, const float* xsum, float* dots) {
  const int64_t groups = K / group_size, row_bytes = K / 4;
  const __m512i low2 = _mm512_set1_epi16(0x0003), one28 = _mm512_set1_epi16(0x4300);
  constexpr int kTern = 0xEA;  // (a & b) | c
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 256) {
    __m512bh xv[8];
    for (int q = 0; q < 8; ++q) xv[q] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + q * 32));
    const int64_t g0 = k / group_size, g1 = (k + 128) / group_size;
    for (int r = 0; r < NR; ++r) {
      const uint8_t* wp = tiled + r * row_bytes + k / 4;
      _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
      const __m512i w = _mm512_loadu_si512(wp);
      __m512 ca = _mm512_setzero_ps(), cb = _mm512_setzero_ps();
      ca = _mm512_dpbf16_ps(ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(w, low2, one28, kTern)), xv[0]);
      cb = _mm512_dpbf16_ps(
          cb, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 2), low2, one28, kTern)), xv[1]);
      ca = _mm512_dpbf16_ps(
          ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), low2, one28, kTern)), xv[2]);
      cb = _mm512_dpbf16_ps(
          cb, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 6), low2, one28, kTern)), xv[3]);
      ca = _mm512_dpbf16_ps(
          ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 8), low2, one28, kTern)), xv[4]);
      cb = _mm512_dpbf16_ps(
          cb, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 10), low2, one28, kTern)), xv[5]);
      ca = _mm512_dpbf16_ps(
          ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 12), low2, one28, kTern)), xv[6]);
      cb = _mm512_dpbf16_ps(cb, reinterpret_cast<__m512bh>(_mm512_or_si512(_mm512_srli_epi16(w, 14), one28)), xv[7]);
      const __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(scale[r * groups + g0]),
                                           _mm256_set1_ps(scale[r * groups + g1]), 1);
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(ca, cb), sv, acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r)
    dots[r] = hsum(acc[r]) - group_correction(scale + r * groups, shift + r * groups, xsum, groups);
}

// ---- GEMM (M >= kGemmMinRows): channels in lanes with vdpbf16ps (gemm_bf16_panels.h) ----
// Weights are decoded once per call into bf16 panels. W4 and W2 weights are dequantized to bf16
// (c·s − h, rounded once, as in any bf16 GEMM); int8 and float8 weights are exact in bf16 and
// keep their per-channel scale for the epilogue.

using simd::kGemmMinRows;

// Prefetch (into L2) for the GEMM's decoding, which reads each row in K blocks: the hardware
// prefetcher follows those short runs poorly. Codes of 8-bit weights, or 2/4-bit codes with
// their groups' scales and shifts (with groups of 32 those are half as many bytes as the codes).
struct BytePrefetch {
  const void* w;
  int64_t K;
  void operator()(int64_t n, int64_t k0, int64_t count) const { simd::WeightRows{w, K, 8}.prefetch(n, k0, count); }
};
struct GroupedPrefetch {
  const uint8_t* tiled;
  int bits;
  int64_t K, group_size;
  const float *scale, *shift;
  void operator()(int64_t n, int64_t k0, int64_t count) const {
    simd::WeightRows{tiled, K * bits / 8, bits}.prefetch(n, k0, count);
    const int64_t groups = K / group_size, g0 = k0 / group_size, g1 = (k0 + count - 1) / group_size + 1;
    for (const float* p : {scale, shift})
      for (int64_t g = g0; g < g1; g += 16) _mm_prefetch(reinterpret_cast<const char*>(p + n * groups + g), _MM_HINT_T1);
  }
};
constexpr int kMaxRows = 4;  // rows of x per W8A8 micro-tile: 16 accumulators + 4 weights + 1 x

// Tiled 4-bit codes [k0, k0 + count) of one row as bf16(c · s_g − h_g).
void decode_w4_range(const uint8_t* row, int64_t k0, int64_t count, int64_t group_size, const float* scale,
                     const float* shift, bf16* out) {
  // One division a call: with groups of 32 a division per group was the decoding's critical path.
  for (int64_t k = k0, end = k0 + count, g = k0 / group_size; k < end; ++g) {
    const int64_t group_end = std::min(end, (g + 1) * group_size);
    const __m512 sv = _mm512_set1_ps(scale[g]), hv = _mm512_set1_ps(-shift[g]);
    for (; k < group_end; k += kTileCodes) {
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k / 2)));
      const __m512 lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(0x0F))), sv, hv);
      const __m512 hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4)), sv, hv);
      _mm512_storeu_si512(out + (k - k0), reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
}

// Tiled 2-bit codes [k0, k0 + count) of one row as bf16(c · s_g − h_g).
void decode_w2_range(const uint8_t* row, int64_t k0, int64_t count, int64_t group_size, const float* scale,
                     const float* shift, bf16* out) {
  for (int64_t k = k0, end = k0 + count, g = k0 / group_size; k < end; ++g) {
    const int64_t group_end = std::min(end, (g + 1) * group_size);
    const __m512 sv = _mm512_set1_ps(scale[g]), hv = _mm512_set1_ps(-shift[g]);
    for (; k < group_end; k += kTile2Codes) {
      __m512 codes[4];
      avx512::Vec::decode_u2_block(row + k / 4, codes);
      for (int j = 0; j < 4; j += 2) {
        const __m512 lo = _mm512_fmadd_ps(codes[j], sv, hv), hi = _mm512_fmadd_ps(codes[j + 1], sv, hv);
        const __m512bh pair = _mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512(out + (k - k0) + 16 * j, reinterpret_cast<__m512i>(pair));
      }
    }
  }
}

// 8-bit weights (int8 or float8) as bf16: exact, since both fit bf16's significand and exponent
// range.
template <class Decoder>
void decode_bytes_range(const typename Decoder::Byte* row, int64_t count, const Decoder& dec, bf16* out) {
  int64_t k = 0;
  for (; k + 32 <= count; k += 32) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(dec.vec(row + k + 16), dec.vec(row + k));
    _mm512_storeu_si512(out + k, reinterpret_cast<__m512i>(pair));
  }
  for (; k < count; ++k) out[k] = bf16_from_float(dec.one(row[k]));
}

template <class Decoder>
void linear_bytes_bf16x(const bf16* x, const typename Decoder::Byte* w, const Decoder& dec, const float* scale,
                        int64_t scale_stride, const float* bias, LinearShape s, float* y) {
  gemm_bf16_panels(
      x, s.M, s.K, s.N, s.n_begin, s.n_end,
      [&](int64_t n, int64_t k0, int64_t count, bf16* out) { decode_bytes_range(w + n * s.K + k0, count, dec, out); },
      BytePrefetch{w, s.K}, PanelEpilogue{scale, scale_stride, bias}, y);
}

// ---- 8-bit weights, batches of 2 to 8 rows: vdpbf16ps GEMV ----
// 32 weights are decoded once to bf16 (exact) and multiplied against 32 bf16 activations of
// every row of x: one vdpbf16ps per row where the float GEMV needed two FMAs, and x is never
// converted. Lanes hold k, so each output is one horizontal sum at the end of its row.
template <int MB, int NR, class Decoder>
[[gnu::noinline]] void bytes_dot_batch_bf16(const bf16* x, int64_t K, const typename Decoder::Byte* w,
                                            const Decoder& dec, float dots[][NR]) {
  __m512 acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m512bh wv[NR];
    for (int r = 0; r < NR; ++r) {
      const auto* row = w + r * K + k;
      if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(row + simd::kPrefetchRows * K), _MM_HINT_T1);
      wv[r] = _mm512_cvtne2ps_pbh(dec.vec(row + 16), dec.vec(row));
    }
    for (int m = 0; m < MB; ++m) {
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + m * K + k));
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_dpbf16_ps(acc[m][r], wv[r], xv);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) dots[m][r] = hsum(acc[m][r]);
}

template <class Decoder>
void linear_bytes_batch_bf16x(const bf16* x, const typename Decoder::Byte* w, const Decoder& dec, const float* scale,
                              int64_t scale_stride, const float* bias, LinearShape s, float* y) {
  auto store = [&](int64_t m, int64_t n, float d) {
    const float v = d * scale[n * scale_stride];
    y[m * s.N + n] = bias ? v + bias[n] : v;
  };
  simd::with_static_rows<2, simd::kGemmMinRows - 1>(s.M, [&](auto mb) {
    constexpr int MB = decltype(mb)::value, NR = MB <= 4 ? 4 : 2;  // MB · NR accumulators
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) {
      float dots[MB][NR];
      bytes_dot_batch_bf16<MB, NR>(x, s.K, w + n * s.K, dec, dots);
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) store(m, n + r, dots[m][r]);
    }
    for (; n < s.n_end; ++n) {
      float dots[MB][1];
      bytes_dot_batch_bf16<MB, 1>(x, s.K, w + n * s.K, dec, dots);
      for (int m = 0; m < MB; ++m) store(m, n, dots[m][0]);
    }
  });
}

// Exact float8 -> float for the bf16 panels.
struct Fp8ExactDecoder {
  using Byte = uint8_t;
  Fp8Format format;
  __m512 vec(const uint8_t* p) const { return avx512::Vec::load_fp8(p, format); }
  float one(uint8_t b) const { return fp8_to_float(b, format); }
};

// Rows of bf16 x as float, for the float kernels.
std::vector<float> to_float_rows(const bf16* x, int64_t n) {
  std::vector<float> xf(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) xf[i] = to_float(x[i]);
  return xf;
}

// ---- W8A8 with VNNI: vpdpbusd multiplies u8 × s8, so x (s8) is offset to u8 by flipping its
// sign bit, x + 128, and 128 · Σ_k w[n, k] is taken back out per row. 64 MACs per instruction.

constexpr int64_t kVnniStep = 64;

template <int MR>
void w8a8_tile_vnni(const uint8_t* xu, const int8_t* x, int64_t K, const int8_t* w, int32_t dots[][kRowBlock]) {
  __m512i acc[MR][kRowBlock], wsum[kRowBlock];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) acc[i][r] = _mm512_setzero_si512();
  for (int r = 0; r < kRowBlock; ++r) wsum[r] = _mm512_setzero_si512();
  const __m512i ones = _mm512_set1_epi8(1);
  const int64_t body = K - K % kVnniStep;
  for (int64_t k = 0; k < body; k += kVnniStep) {
    __m512i wv[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r) {
      wv[r] = _mm512_loadu_si512(w + r * K + k);
      wsum[r] = _mm512_dpbusd_epi32(wsum[r], ones, wv[r]);
    }
    for (int i = 0; i < MR; ++i) {
      const __m512i xv = _mm512_loadu_si512(xu + i * K + k);
      for (int r = 0; r < kRowBlock; ++r) acc[i][r] = _mm512_dpbusd_epi32(acc[i][r], xv, wv[r]);
    }
  }
  for (int r = 0; r < kRowBlock; ++r) {
    const int32_t offset = 128 * _mm512_reduce_add_epi32(wsum[r]);
    for (int i = 0; i < MR; ++i) {
      int32_t d = _mm512_reduce_add_epi32(acc[i][r]) - offset;
      for (int64_t k = body; k < K; ++k) d += static_cast<int32_t>(x[i * K + k]) * w[r * K + k];
      dots[i][r] = d;
    }
  }
}

// W8A8 on the packed layout (kernels/ref/linear_ref.h): channels in lanes. Each quad of a block
// is kW8A8BlockN channels × 4 consecutive k (one int32 lane a channel), so a kPackRows ×
// kW8A8BlockN micro-tile broadcasts 4 bytes of x per row: kLanes · kPackRows vpdpbusd per 4 k,
// no horizontal sums. The packed block also carries 128 · Σ_k w, so no per-call work remains.
constexpr int kLanes = static_cast<int>(kW8A8BlockN / 16);  // zmm registers per quad
constexpr int kPackRows = 6;                                 // 24 accumulators + 4 weights + 1 x
constexpr int64_t kPackedMinRows = 16;                       // below this, unpacked weights keep the row path

// Always inlined: compiled out of line, with `out` a pointer, GCC 12 kept every accumulator both
// in a register and on the stack, moving it out and back around each vpdpbusd (half speed).
template <int MR>
[[gnu::always_inline]] inline void w8a8_packed_tile(const uint8_t* xu, int64_t ldx, const uint8_t* block,
                                                    int64_t quads, __m512i out[][kLanes]) {
  __m512i acc[MR][kLanes];  // local, so the accumulators live in registers
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kLanes; ++j) acc[i][j] = _mm512_setzero_si512();
  const uint8_t* wq = block;
  for (int64_t q = 0; q < quads; ++q, wq += kW8A8BlockN * 4) {
    __m512i w[kLanes];
    for (int j = 0; j < kLanes; ++j) w[j] = _mm512_loadu_si512(wq + 64 * j);
    for (int i = 0; i < MR; ++i) {
      int32_t quad;
      std::memcpy(&quad, xu + i * ldx + 4 * q, sizeof(quad));
      const __m512i xb = _mm512_set1_epi32(quad);
      for (int j = 0; j < kLanes; ++j) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], xb, w[j]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kLanes; ++j) out[i][j] = acc[i][j];
}

// Rows [m, m + MR) of x against one block; store(i, acc) receives each row's sums.
template <int MR, typename Store>
void w8a8_packed_rows(const uint8_t* xu, int64_t ldx, int64_t m, const uint8_t* block, int64_t quads, Store store) {
  __m512i acc[MR][kLanes];
  w8a8_packed_tile<MR>(xu + m * ldx, ldx, block, quads, acc);
  for (int i = 0; i < MR; ++i) store(m + i, acc[i]);
}

// xu: rows of x as u8 (x + 128), ldx = 4 · quads bytes apart (padding meets zero weights).
void linear_w8a8_packed_u8(const uint8_t* xu, int64_t ldx, const uint8_t* packed, const float* x_scale,
                           int64_t x_scale_stride, const float* w_scale, int64_t w_scale_stride, const float* bias,
                           LinearShape s, float* y) {
  const int64_t quads = w8a8_quads(s.K), bytes = w8a8_block_bytes(s.K);
  for (int64_t b = s.n_begin / kW8A8BlockN; b * kW8A8BlockN < s.n_end; ++b) {
    const int64_t base = b * kW8A8BlockN;
    const int64_t c0 = std::max(s.n_begin, base) - base, c1 = std::min(s.n_end, base + kW8A8BlockN) - base;
    const uint8_t* block = packed + b * bytes;
    alignas(64) float ws[kW8A8BlockN] = {}, bs[kW8A8BlockN] = {};
    for (int64_t j = c0; j < c1; ++j) {
      ws[j] = w_scale[(base + j) * w_scale_stride];
      if (bias) bs[j] = bias[base + j];
    }
    __m512i offsets[kLanes];
    for (int j = 0; j < kLanes; ++j) offsets[j] = _mm512_loadu_si512(w8a8_block_offsets(block, s.K) + 16 * j);
    // float(acc) * (x_scale * w_scale) + bias: w8a8_output lane by lane, so results match it bit for bit.
    auto store = [&](int64_t m, const __m512i* acc) {
      const __m512 xs = _mm512_set1_ps(x_scale[m * x_scale_stride]);
      alignas(64) float out[kW8A8BlockN];
      for (int j = 0; j < kLanes; ++j) {
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[j], offsets[j])),
                                 _mm512_mul_ps(xs, _mm512_load_ps(ws + 16 * j)));
        if (bias) v = _mm512_add_ps(v, _mm512_load_ps(bs + 16 * j));
        _mm512_store_ps(out + 16 * j, v);
      }
      std::memcpy(y + m * s.N + base + c0, out + c0, static_cast<size_t>(c1 - c0) * sizeof(float));
    };
    int64_t m = 0;
    for (; m + kPackRows <= s.M; m += kPackRows) w8a8_packed_rows<kPackRows>(xu, ldx, m, block, quads, store);
    switch (s.M - m) {
      case 5: w8a8_packed_rows<5>(xu, ldx, m, block, quads, store); break;
      case 4: w8a8_packed_rows<4>(xu, ldx, m, block, quads, store); break;
      case 3: w8a8_packed_rows<3>(xu, ldx, m, block, quads, store); break;
      case 2: w8a8_packed_rows<2>(xu, ldx, m, block, quads, store); break;
      case 1: w8a8_packed_rows<1>(xu, ldx, m, block, quads, store); break;
      default: break;
    }
  }
}

// Rows of x as u8 (x + 128), padded to whole quads with the u8 code of 0.
std::vector<uint8_t> x_as_u8(const int8_t* x, int64_t M, int64_t K, int64_t ldx) {
  std::vector<uint8_t> xu(static_cast<size_t>(M * ldx));
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t m = 0; m < M; ++m) {
    // 64 bytes a step; the masked tail reads nothing past the row and writes 0x80 (x = 0) up to ldx.
    for (int64_t k = 0; k < ldx; k += 64) {
      const int64_t left = std::max<int64_t>(0, K - k);
      const __mmask64 mask = left >= 64 ? ~__mmask64{0} : (__mmask64{1} << left) - 1;
      const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, x + m * K + k), flip);
      _mm512_mask_storeu_epi8(xu.data() + m * ldx + k, ldx - k >= 64 ? ~__mmask64{0} : (__mmask64{1} << (ldx - k)) - 1,
                              v);
    }
  }
  return xu;
}

// The AVX-512 traits with vpdpbusd for W4A8's u8 (code) × s8 (x) dot products: one instruction
// per 64 products where AVX-512BW needs vpmaddubsw, vpmaddwd and an add per 64 (w4a8_simd.h).
struct VnniVec : avx512::Vec {
  static I dot2_u8s8(I acc, I u1, I s1, I u2, I s2) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(acc, u1, s1), u2, s2);
  }
};

// ---- W4A8 prefill (M >= kW4A8PrefillMinRows): channels in lanes ----
// The GEMV-shaped kernel (w4a8_simd.h) holds k in its lanes, so every (row of x, weight row,
// group) pays an int -> float conversion and an FMA, as much as its dot products when a group is
// one 128-code register. Here, as in the packed W8A8 kernel, each int32 lane is one output channel
// and each vpdpbusd adds 4 consecutive k: a block of kW4A8BlockN channels is unpacked once per call
// into u8 quads (codes, the unsigned operand, so x needs no offset), 4 bytes of x are broadcast,
// and a group costs one conversion and one FMA per 16 channels against group_size / 4 vpdpbusd.
constexpr int64_t kW4A8BlockN = kW4A8ChannelBlock;  // channels per block (kernels/dispatch.h): 4 zmm
constexpr int kW4A8BlockRegs = static_cast<int>(kW4A8BlockN / 16);
constexpr int kW4A8PrefillRows = 6;  // rows of x per tile: 24 int32 accumulators + 4 codes + 1 x

// Codes of channels [n0, n0 + nb) of a tiled 4-bit weight as u8 quads:
// out[(q · kW4A8BlockN + j) · 4 + i] = code(n0 + j, 4q + i), 0 for j >= nb. K % 32 == 0.
// codes: kW4A8BlockN · K bytes of scratch (the block's codes in natural order, row by row), from
// which 16 channels × 16 quads at a time are one dword transpose (scalar copies cost most of a
// prefill call, gathers more).
void w4_block_quads(const uint8_t* tiled, int64_t K, int64_t n0, int64_t nb, uint8_t* codes, uint8_t* out) {
  const int64_t quads = K / 4, row_bytes = K / 2;
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t j = 0; j < kW4A8BlockN; ++j) {
    uint8_t* row = codes + j * K;
    if (j >= nb) {
      std::memset(row, 0, static_cast<size_t>(K));
      continue;
    }
    const uint8_t* t = tiled + (n0 + j) * row_bytes;
    for (int64_t k = 0; k < K; k += kTileCodes) {  // a tiled block: codes k..k+15 low, k+16..k+31 high
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t + k / 2));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + k), _mm_and_si128(b, low4));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + k + 16), _mm_and_si128(_mm_srli_epi16(b, 4), low4));
    }
  }
  const int64_t whole = quads - quads % 16;
  for (int64_t j0 = 0; j0 < kW4A8BlockN; j0 += 16)
    for (int64_t q0 = 0; q0 < whole; q0 += 16) {
      __m512i r[16];
      for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_si512(codes + (j0 + i) * K + 4 * q0);
      avx512::transpose16_epi32(r);
      for (int i = 0; i < 16; ++i) _mm512_storeu_si512(out + ((q0 + i) * kW4A8BlockN + j0) * 4, r[i]);
    }
  for (int64_t q = whole; q < quads; ++q)
    for (int64_t j = 0; j < kW4A8BlockN; ++j) std::memcpy(out + (q * kW4A8BlockN + j) * 4, codes + j * K + 4 * q, 4);
}

// MR rows of x against one block: acc[i][16r + l] = Σ_g scale[g, 16r + l] · dot_g(row i, channel
// 16r + l), dot_g exact in int32 (block_csum128: 128 · the group's code sum per channel). The
// float sums are updated once a group.
template <int MR>
void w4a8_quads_tile(const uint8_t* xu, int64_t K, const uint8_t* quads, int64_t groups, int64_t group_quads,
                     const float* block_scale, const int32_t* block_csum128, float acc[][kW4A8BlockN]) {
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kW4A8BlockRegs; ++r) _mm512_store_ps(acc[i] + 16 * r, _mm512_setzero_ps());
  for (int64_t g = 0; g < groups; ++g) {
    // The group's Σ (x + 128) · code: the packed W8A8 tile, whose quads have this block's shape
    // (x the unsigned operand, codes the signed one).
    __m512i dots[MR][kW4A8BlockRegs];
    w8a8_packed_tile<MR>(xu + 4 * g * group_quads, K, quads + g * group_quads * kW4A8BlockN * 4, group_quads, dots);
    for (int r = 0; r < kW4A8BlockRegs; ++r) {
      const __m512 sv = _mm512_loadu_ps(block_scale + g * kW4A8BlockN + 16 * r);
      const __m512i cv = _mm512_loadu_si512(block_csum128 + g * kW4A8BlockN + 16 * r);
      for (int i = 0; i < MR; ++i)
        _mm512_store_ps(acc[i] + 16 * r, _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(dots[i][r], cv)), sv,
                                                         _mm512_load_ps(acc[i] + 16 * r)));
    }
  }
}

void w4a8_prefill_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                       int64_t group_size, const float* scale, const float* shift, const float* bias, LinearShape s,
                       float* y) {
  const int64_t K = s.K, M = s.M, groups = K / group_size;
  std::vector<float> xsum(static_cast<size_t>(M * groups));  // exact int32 group sums of x, as float
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < groups; ++g) {
      int32_t t = 0;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) t += x[m * K + k];
      xsum[m * groups + g] = static_cast<float>(t);
    }
  const std::vector<uint8_t> xu = x_as_u8(x, M, K, K);
  std::vector<uint8_t> codes(static_cast<size_t>(K * kW4A8BlockN)), quads(static_cast<size_t>(K * kW4A8BlockN));
  std::vector<int32_t> block_csum128(static_cast<size_t>(groups * kW4A8BlockN));
  // The block's scales and shifts group by group, channels in lanes (0 past the last channel).
  std::vector<float> block_scale(static_cast<size_t>(groups * kW4A8BlockN)),
      block_shift(static_cast<size_t>(groups * kW4A8BlockN));
  for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kW4A8BlockN) {
    const int64_t nb = std::min(kW4A8BlockN, s.n_end - n0);
    w4_block_quads(tiled, K, n0, nb, codes.data(), quads.data());
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t j = 0; j < kW4A8BlockN; ++j) {
        block_scale[g * kW4A8BlockN + j] = j < nb ? scale[(n0 + j) * groups + g] : 0.0f;
        block_shift[g * kW4A8BlockN + j] = j < nb ? shift[(n0 + j) * groups + g] : 0.0f;
        int32_t c = 0;  // codes past the last channel are 0
        for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) c += codes[j * K + k];
        block_csum128[g * kW4A8BlockN + j] = 128 * c;
      }
    __m512 bias_v[kW4A8BlockRegs];
    __mmask16 mask[kW4A8BlockRegs];
    for (int r = 0; r < kW4A8BlockRegs; ++r) {
      const int64_t left = std::clamp<int64_t>(nb - 16 * r, 0, 16);
      mask[r] = static_cast<__mmask16>((1u << left) - 1u);
      bias_v[r] = bias ? _mm512_maskz_loadu_ps(mask[r], bias + n0 + 16 * r) : _mm512_setzero_ps();
    }
    // y = x_scale · (Σ_g s_g dot_g − Σ_g h_g xsum_g) + bias, 16 channels a vector (a scalar
    // shift dot product per output cost as much as the integer dot products at K = 384).
    auto tile = [&](auto mr, int64_t m0) {
      constexpr int MR = decltype(mr)::value;
      alignas(64) float acc[MR][kW4A8BlockN];
      w4a8_quads_tile<MR>(xu.data() + m0 * K, K, quads.data(), groups, group_size / 4, block_scale.data(),
                          block_csum128.data(), acc);
      for (int i = 0; i < MR; ++i) {
        const int64_t m = m0 + i;
        const __m512 xs = _mm512_set1_ps(x_scale[m * x_scale_stride]);
        for (int r = 0; r < kW4A8BlockRegs; ++r) {
          if (mask[r] == 0) continue;
          __m512 corr = _mm512_setzero_ps();
          for (int64_t g = 0; g < groups; ++g)
            corr = _mm512_fmadd_ps(_mm512_loadu_ps(block_shift.data() + g * kW4A8BlockN + 16 * r),
                                   _mm512_set1_ps(xsum[m * groups + g]), corr);
          const __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(_mm512_load_ps(acc[i] + 16 * r), corr), xs, bias_v[r]);
          _mm512_mask_storeu_ps(y + m * s.N + n0 + 16 * r, mask[r], v);
        }
      }
    };
    int64_t m0 = 0;
    for (; m0 + kW4A8PrefillRows <= M; m0 += kW4A8PrefillRows) tile(std::integral_constant<int, kW4A8PrefillRows>{}, m0);
    simd::with_static_rows<1, kW4A8PrefillRows - 1>(M - m0, [&](auto mb) { tile(mb, m0); });
    static_assert(kW4A8BlockN == kW8A8BlockN, "W4A8 blocks run the packed W8A8 tile");
  }
}

}  // namespace

void linear_w8a8_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                      const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  if (s.M >= kPackedMinRows) {
    // Weights packed per call (the packed op, linear_w8a8_packed, does this once at freeze):
    // channels [n_begin, n_end) as a weight of their own, so y, bias and scales shift with them.
    const int64_t n = s.n_end - s.n_begin, ldx = 4 * w8a8_quads(s.K);
    std::vector<uint8_t> packed(static_cast<size_t>(w8a8_block_count(n) * w8a8_block_bytes(s.K)));
    pack_w8a8_ref(w + s.n_begin * s.K, n, s.K, 0, w8a8_block_count(n), packed.data());
    const std::vector<uint8_t> xu = x_as_u8(x, s.M, s.K, ldx);
    linear_w8a8_packed_u8(xu.data(), ldx, packed.data(), x_scale, x_scale_stride, w_scale + s.n_begin * w_scale_stride,
                          w_scale_stride, bias ? bias + s.n_begin : nullptr, LinearShape{s.M, s.K, s.N, 0, n},
                          y + s.n_begin);
    return;
  }
  std::vector<uint8_t> xu(static_cast<size_t>(s.M * s.K));
  for (size_t i = 0; i < xu.size(); ++i) xu[i] = static_cast<uint8_t>(x[i]) ^ 0x80u;
  simd::w8a8_blocks<kMaxRows>(w, x_scale, x_scale_stride, w_scale, w_scale_stride, bias, s, y,
                              [&](auto mr, int64_t m, const int8_t* rows, int32_t dots[][kRowBlock]) {
                                w8a8_tile_vnni<decltype(mr)::value>(xu.data() + m * s.K, x + m * s.K, s.K, rows,
                                                                    dots);
                              });
}

void linear_w8a8_packed_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,
                             const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s,
                             float* y) {
  const int64_t ldx = 4 * w8a8_quads(s.K);
  const std::vector<uint8_t> xu = x_as_u8(x, s.M, s.K, ldx);
  linear_w8a8_packed_u8(xu.data(), ldx, packed, x_scale, x_scale_stride, w_scale, w_scale_stride, bias, s, y);
}

void linear_w4a8_tiled_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                            int64_t group_size, const float* scale, const float* shift, const float* bias,
                            LinearShape s, float* y) {
  if (s.M >= kW4A8PrefillMinRows) {
    w4a8_prefill_vnni(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  simd::linear_w4a8_tiled<VnniVec>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
}

void linear_w8_bf16x(const bf16* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
                     LinearShape s, float* y) {
  if (s.M == 1) {  // bandwidth-bound: the float GEMV
    avx512::linear_w8(to_float_rows(x, s.K).data(), w, scale, scale_stride, bias, s, y);
    return;
  }
  if (s.M < kGemmMinRows) {
    linear_bytes_batch_bf16x(x, w, simd::Int8Decoder<avx512::Vec>{}, scale, scale_stride, bias, s, y);
    return;
  }
  linear_bytes_bf16x(x, w, simd::Int8Decoder<avx512::Vec>{}, scale, scale_stride, bias, s, y);
}

void linear_fp8_bf16x(const bf16* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                      const float* bias, LinearShape s, float* y) {
  if (s.M == 1) {
    avx512::linear_fp8(to_float_rows(x, s.K).data(), w, format, scale, scale_stride, bias, s, y);
    return;
  }
  if (s.M < kGemmMinRows) {
    linear_bytes_batch_bf16x(x, w, Fp8ExactDecoder{format}, scale, scale_stride, bias, s, y);
    return;
  }
  linear_bytes_bf16x(x, w, Fp8ExactDecoder{format}, scale, scale_stride, bias, s, y);
}

void linear_w4_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, groups = K / group_size, row_bytes = K / 2;
  if (s.M >= kGemmMinRows) {
    gemm_bf16_panels(
        x, s.M, K, s.N, s.n_begin, s.n_end,
        [&](int64_t n, int64_t k0, int64_t count, bf16* out) {
          decode_w4_range(tiled + n * row_bytes, k0, count, group_size, scale + n * groups, shift + n * groups, out);
        },
        GroupedPrefetch{tiled, 4, K, group_size, scale, shift}, PanelEpilogue{nullptr, 0, bias}, y);
    return;
  }
  if (group_size % 128 != 0) {
    // Smaller groups need a scale per 32-code block inside each 64-byte load: the float GEMV
    // scales its registers lane by lane and was faster there than bf16 dot products a block at
    // a time.
    avx512::linear_w4_tiled(to_float_rows(x, s.M * K).data(), tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  if (s.M > 1) {  // small batches: each weight decoded once for every row of x
    w4_batch_g128(x, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  std::vector<bf16> xp(static_cast<size_t>(K));
  permute_x_chunks(x, K, xp.data());
  simd::w4_tiled_gemv(xp.data(), tiled, group_size, scale, shift, bias, s, y,
                      [&](auto nr, const bf16* xm, const uint8_t* t, const float* sc, const float* sh,
                          const float* xsum, float* dots) {
                        w4_dot_rows_g128<decltype(nr)::value>(xm, t, K, group_size, sc, sh, xsum, dots);
                      });
}

void linear_w2_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K;
  if (s.M >= kGemmMinRows) {
    const int64_t groups = K / group_size, row_bytes = K / 4;
    gemm_bf16_panels(
        x, s.M, K, s.N, s.n_begin, s.n_end,
        [&](int64_t n, int64_t k0, int64_t count, bf16* out) {
          decode_w2_range(tiled + n * row_bytes, k0, count, group_size, scale + n * groups, shift + n * groups, out);
        },
        GroupedPrefetch{tiled, 2, K, group_size, scale, shift}, PanelEpilogue{nullptr, 0, bias}, y);
    return;
  }
  if (s.M > 1 || group_size % 128 != 0 || K % 256 != 0) {
    // Small batches (and other group sizes): the float kernels on converted activations.
    avx512::linear_w2_tiled(to_float_rows(x, s.M * K).data(), tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  std::vector<bf16> xp(static_cast<size_t>(K));
  permute_x_chunks2(x, K, xp.data());
  // The driver takes group sums from x in its own order (a 256-code chunk of xp mixes two groups
  // of 128); the dot products read the permuted row.
  simd::w4_tiled_gemv<2>(x, tiled, group_size, scale, shift, bias, s, y,
                         [&](auto nr, const bf16* xm, const uint8_t* t, const float* sc, const float* sh,
                             const float* xsum, float* dots) {
                           w2_dot_rows_c256<decltype(nr)::value>(xp.data() + (xm - x), t, K, group_size, sc, sh, xsum,
                                                                 dots);
                         });
}

}  // namespace quanto::kernels::avx512bf16
