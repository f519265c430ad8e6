// Vector traits for AVX-512 (F, BW, VL, DQ): include only from translation units built with those flags.
// The anonymous namespace gives every including TU its own copy (internal linkage), so
// templates instantiated with this Vec never collide with another ISA's.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/numeric.h"
#include "kernels/x86/transpose_avx512.h"

namespace quanto::kernels::avx512 {
namespace {

struct Vec {
  using F = __m512;
  static constexpr int kWidth = 16;
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load(const bf16* p) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static constexpr int kGemmRows = 4;  // rows of x per GEMM micro-tile (32 zmm registers)
  // Weight-only GEMM micro-tile (gemm_simd.h): kGemmMR rows of x × kGemmNV vectors of channels,
  // 24 accumulators + 4 weight vectors + 1 broadcast of x.
  static constexpr int kGemmMR = 6, kGemmNV = 4;
  static F set1(float v) { return _mm512_set1_ps(v); }
  static F zero() { return _mm512_setzero_ps(); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(F v) { return reduce(v, [](F a, F b) { return _mm512_add_ps(a, b); }); }
  // The sums of four vectors' lanes, in order: two unpacks, two shuffles and three adds to one
  // vector of per-128-bit-lane partial sums, then two halvings (four separate horizontal sums
  // were ~15% of a 576-wide W4 row's time).
  static __m128 hsum4(F a, F b, F c, F d) {
    const F ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));  // a02 b02 a13 b13
    const F cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const F s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                              _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));  // a b c d per 128 bits
    const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(s),
                                   _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
  // kWidth float8 weights as floats, exactly: the 7 magnitude bits go under the float's exponent
  // field and a multiply by 2^(127 - bias) rebiases normals and subnormals alike (needs
  // denormals on, PyTorch's default). The NaN codes are never produced by quantization.
  static F load_fp8(const uint8_t* p, Fp8Format format) {
    const auto b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const int shift = format == Fp8Format::e5m2 ? 21 : 20;
    const float rebias = format == Fp8Format::e5m2 ? 0x1p112f : format == Fp8Format::e4m3fnuz ? 0x1p119f : 0x1p120f;
    const auto magnitude = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x7F)), shift);
    const auto sign = _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(0x80)), 24);
    return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_or_si512(magnitude, sign)), _mm512_set1_ps(rebias));
  }
  // kWidth int8 weights as floats.
  static F load_i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // A tiled block of 32 4-bit codes (16 bytes: byte i = code i | code i+16 << 4) as 2 registers.
  static void decode_u4_block(const uint8_t* p, F out[2]) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    out[0] = _mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(0x0F)));
    out[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4));
  }
  // A tiled block of 64 2-bit codes (16 bytes: byte i = codes i, i+16, i+32, i+48 at bits 0, 2, 4, 6)
  // as 4 registers, in order.
  static void decode_u2_block(const uint8_t* p, F out[4]) {
    const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i mask = _mm512_set1_epi32(3);
    for (int j = 0; j < 4; ++j) out[j] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(b, 2 * j), mask));
  }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  // kWidth float8 codes as float bit patterns w · 2^-rebias_exp (see vec_avx2.h).
  template <int Shift>
  static F load_fp8_bits(const uint8_t* p, uint32_t mask) {
    const __m512i b = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m512i m = _mm512_set1_epi32(static_cast<int>(mask));
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_slli_epi32(b, Shift), m));
  }
  // ---- Codes packed in 32-bit lanes (kernels/x86/qbits_gemv_simd.h) ----
  static constexpr int64_t kPackedBytes = 64;  // bytes of codes per register
  static __m512i load_packed(const uint8_t* p) { return _mm512_loadu_si512(p); }
  // The first `bytes` (a multiple of 4, < 64) bytes at p, zeros after; reads nothing past them.
  static __m512i load_packed_partial(const uint8_t* p, int64_t bytes) {
    return _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << (bytes / 4)) - 1u), p);
  }
  // The lanes' codes under a mask register (at mask, aligned), as floats: code · 2^(field's
  // shift), exact below 2^31.
  static F cvt_masked(__m512i w, const uint32_t* mask) {
    return _mm512_cvtepi32_ps(_mm512_and_si512(w, _mm512_load_si512(reinterpret_cast<const __m512i*>(mask))));
  }
  // The lanes' top (32 - Shift) bits as floats.
  template <int Shift>
  static F cvt_top(__m512i w) { return _mm512_cvtepi32_ps(_mm512_srli_epi32(w, Shift)); }
  // Lanes split into `runs` equal runs (1, 2 or 4: a register holds four tiled blocks), run i
  // holding s[i].
  static F lane_runs(const float* s, int runs) {
    if (runs == 1) return _mm512_set1_ps(s[0]);
    if (runs == 2) return _mm512_insertf32x8(_mm512_set1_ps(s[0]), _mm256_set1_ps(s[1]), 1);
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                 _mm512_castps128_ps512(_mm_loadu_ps(s)));
  }
  static constexpr int kMaxLaneRuns = 4;
  // Lane l holding s[offset[l]] (offset: 64-byte aligned, values below span <= 4): only the
  // span scales are read, so the last register of the last row reads nothing past the scales.
  static F lane_blocks(const float* s, const int32_t* offset, int span) {
    return _mm512_permutexvar_ps(_mm512_load_si512(offset),
                                 _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << span) - 1u), s));
  }
  // int8 dot products through int16 (no saturation: |a·b| <= 2^14, two per int32 lane).
  using I = __m512i;
  static constexpr int kI8Step = 32;  // int8 values per widened register
  static I zero_i() { return _mm512_setzero_si512(); }
  static I widen_i8(const int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static I madd(I acc, I a, I b) { return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b)); }
  static int32_t hsum_i32(I v) { return _mm512_reduce_add_epi32(v); }
  // ---- W4A8 (kernels/x86/w4a8_simd.h): u8 codes × s8 activations, exact int32 sums ----
  static I load_i(const int8_t* p) { return _mm512_loadu_si512(p); }
  // The low / high nibble of every byte, as u8.
  static I nibbles_lo(I w) { return _mm512_and_si512(w, _mm512_set1_epi8(0x0F)); }
  static I nibbles_hi(I w) { return _mm512_and_si512(_mm512_srli_epi16(w, 4), _mm512_set1_epi8(0x0F)); }
  // acc + Σ over each int32 lane's 4 bytes of u1·s1 + u2·s2 (AVX-512BW, no VNNI): vpmaddubsw
  // pairs stay inside int16 for u <= 15 (2 · 15 · 128 = 3840), and so does the sum of two.
  static I dot2_u8s8(I acc, I u1, I s1, I u2, I s2) {
    const I pairs = _mm512_add_epi16(_mm512_maddubs_epi16(u1, s1), _mm512_maddubs_epi16(u2, s2));
    return _mm512_add_epi32(acc, _mm512_madd_epi16(pairs, _mm512_set1_epi16(1)));
  }
  static F cvt_i32(I v) { return _mm512_cvtepi32_ps(v); }
  // ---- W4A8 prefill, channels in lanes (kernels/x86/w4a8_prefill_simd.h) ----
  static I load_u8(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static void store_u8_vec(uint8_t* p, I v) { _mm512_storeu_si512(p, v); }
  static I set1_i32(int32_t v) { return _mm512_set1_epi32(v); }
  // Per int16 lane, u[2i]·s[2i] + u[2i+1]·s[2i+1] (u8 × s8; callers keep it from saturating).
  static I pair_products(I u, I s) { return _mm512_maddubs_epi16(u, s); }
  static I add_i16(I a, I b) { return _mm512_add_epi16(a, b); }
  static I add_i32(I a, I b) { return _mm512_add_epi32(a, b); }
  // Adjacent int16 lanes summed into int32 lanes.
  static I widen_pairs(I v) { return _mm512_madd_epi16(v, _mm512_set1_epi16(1)); }
  // The 16 × 16 dword matrix r (row i in r[i]) transposed in place.
  static void transpose_i32(I r[16]) { transpose16_epi32(r); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  // The first n (0 < n <= kWidth) lanes of v to p; nothing past them is written.
  static void store_first(float* p, F v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>(n >= 16 ? 0xFFFFu : (1u << n) - 1u), v);
  }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F abs(F v) { return _mm512_abs_ps(v); }
  static F zero_nan(F v) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v); }
  // NaN lanes accumulate as all-ones lanes, so any() can test the register.
  static F nan_mask_or(F acc, F v) {
    const __mmask16 m = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    return _mm512_castsi512_ps(_mm512_mask_set1_epi32(_mm512_castps_si512(acc), m, -1));
  }
  static bool any(F mask) { return _mm512_test_epi32_mask(_mm512_castps_si512(mask), _mm512_castps_si512(mask)) != 0; }
  static F round_even(F v) { return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F round_bf16(F v) {
    __m512i b = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    b = _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), lsb));
    return _mm512_castsi512_ps(_mm512_and_si512(b, _mm512_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static float reduce_max(F v) { return reduce(v, [](F a, F b) { return _mm512_max_ps(a, b); }); }
  static float reduce_min(F v) { return reduce(v, [](F a, F b) { return _mm512_min_ps(a, b); }); }
  // Folds 16 lanes with in-register shuffles (GCC 12's _mm512_reduce_* trip its own
  // uninitialized-value warnings through _mm256_undefined_*).
  template <typename Op>
  static float reduce(F v, Op op) {
    v = op(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = op(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    v = op(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
    v = op(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_cvtss_f32(v);
  }
  // Lanes hold integers already inside the target range.
  static void store_i8(int8_t* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
  }
  static void store_u8(uint8_t* p, F v) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtusepi32_epi8(_mm512_cvtps_epi32(v)));
  }
};

}  // namespace

}  // namespace quanto::kernels::avx512
