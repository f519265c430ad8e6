// Vector traits for AVX2 + FMA + F16C: include only from translation units built with those flags.
// The anonymous namespace gives every including TU its own copy (internal linkage), so
// templates instantiated with this Vec never collide with another ISA's.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/numeric.h"

namespace quanto::kernels::avx2 {
namespace {

struct Vec {
  using F = __m256;
  static constexpr int kWidth = 8;
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load(const bf16* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  static constexpr int kGemmRows = 2;  // rows of x per GEMM micro-tile (16 ymm registers)
  // Weight-only GEMM micro-tile (gemm_simd.h): kGemmMR rows of x × kGemmNV vectors of channels,
  // 12 accumulators + 2 weight vectors + 1 broadcast of x.
  static constexpr int kGemmMR = 6, kGemmNV = 2;
  static F set1(float v) { return _mm256_set1_ps(v); }
  static F zero() { return _mm256_setzero_ps(); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(F v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
  }
  // The sums of four vectors' lanes, in order: three adjacent-pair adds instead of four hsums.
  static __m128 hsum4(F a, F b, F c, F d) {
    const F s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  }
  // kWidth float8 weights as floats, exactly: the 7 magnitude bits go under the float's exponent
  // field and a multiply by 2^(127 - bias) rebiases normals and subnormals alike (needs
  // denormals on, PyTorch's default). The NaN codes are never produced by quantization.
  static F load_fp8(const uint8_t* p, Fp8Format format) {
    const auto b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const int shift = format == Fp8Format::e5m2 ? 21 : 20;
    const float rebias = format == Fp8Format::e5m2 ? 0x1p112f : format == Fp8Format::e4m3fnuz ? 0x1p119f : 0x1p120f;
    const auto magnitude = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7F)), shift);
    const auto sign = _mm256_slli_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x80)), 24);
    return _mm256_mul_ps(_mm256_castsi256_ps(_mm256_or_si256(magnitude, sign)), _mm256_set1_ps(rebias));
  }
  // kWidth int8 weights as floats.
  static F load_i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  // A tiled block of 32 4-bit codes (16 bytes: byte i = code i | code i+16 << 4) as 4 registers.
  static void decode_u4_block(const uint8_t* p, F out[4]) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i mask = _mm_set1_epi8(0x0F);
    const __m128i lo = _mm_and_si128(b, mask), hi = _mm_and_si128(_mm_srli_epi16(b, 4), mask);
    out[0] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(lo));
    out[1] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
    out[2] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi));
    out[3] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
  }
  // A tiled block of 64 2-bit codes (16 bytes: byte i = codes i, i+16, i+32, i+48 at bits 0, 2, 4, 6)
  // as 8 registers, in order.
  static void decode_u2_block(const uint8_t* p, F out[8]) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i lo = _mm256_cvtepu8_epi32(b), hi = _mm256_cvtepu8_epi32(_mm_srli_si128(b, 8));
    const __m256i mask = _mm256_set1_epi32(3);
    for (int j = 0; j < 4; ++j) {
      out[2 * j] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(lo, 2 * j), mask));
      out[2 * j + 1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(hi, 2 * j), mask));
    }
  }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  // kWidth float8 codes as float bit patterns w · 2^-rebias_exp (fp8_bits_to_float): each byte
  // sign-extended, shifted by Shift (fp8_bits' shift) and masked to sign + magnitude. No
  // multiply: callers fold 2^rebias_exp into x and the result.
  template <int Shift>
  static F load_fp8_bits(const uint8_t* p, uint32_t mask) {
    const __m256i b = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    const __m256i m = _mm256_set1_epi32(static_cast<int>(mask));
    return _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(b, Shift), m));
  }
  // ---- Codes packed in 32-bit lanes (kernels/x86/qbits_gemv_simd.h) ----
  static constexpr int64_t kPackedBytes = 32;  // bytes of codes per register
  static __m256i load_packed(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  // The first `bytes` (a multiple of 4) bytes at p, zeros after; reads nothing past them.
  static __m256i load_packed_partial(const uint8_t* p, int64_t bytes) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(bytes / 4)), lane);
    return _mm256_maskload_epi32(reinterpret_cast<const int*>(p), mask);
  }
  // The lanes' codes under a mask register (at mask, aligned), as floats: code · 2^(field's
  // shift), exact below 2^31.
  static F cvt_masked(__m256i w, const uint32_t* mask) {
    return _mm256_cvtepi32_ps(_mm256_and_si256(w, _mm256_load_si256(reinterpret_cast<const __m256i*>(mask))));
  }
  // The lanes' top (32 - Shift) bits as floats.
  template <int Shift>
  static F cvt_top(__m256i w) { return _mm256_cvtepi32_ps(_mm256_srli_epi32(w, Shift)); }
  // Lanes split into `runs` equal runs, run i holding s[i] (1 or 2 runs: a register holds two
  // tiled blocks).
  static F lane_runs(const float* s, int runs) {
    if (runs == 1) return _mm256_set1_ps(s[0]);
    return _mm256_set_m128(_mm_set1_ps(s[1]), _mm_set1_ps(s[0]));
  }
  static constexpr int kMaxLaneRuns = 2;
  // Block b (lanes 4b..4b+3) holding s[offset[4b]]; offsets below span.
  static F lane_blocks(const float* s, const int32_t* offset, int /*span*/) {
    return _mm256_set_m128(_mm_set1_ps(s[offset[4]]), _mm_set1_ps(s[offset[0]]));
  }
  // int8 dot products through int16 (no saturation: |a·b| <= 2^14, two per int32 lane).
  using I = __m256i;
  static constexpr int kI8Step = 16;  // int8 values per widened register
  static I zero_i() { return _mm256_setzero_si256(); }
  static I widen_i8(const int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static I madd(I acc, I a, I b) { return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b)); }
  static int32_t hsum_i32(I v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }
  // ---- W4A8 (kernels/x86/w4a8_simd.h): u8 codes × s8 activations, exact int32 sums ----
  static I load_i(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  // The low / high nibble of every byte, as u8.
  static I nibbles_lo(I w) { return _mm256_and_si256(w, _mm256_set1_epi8(0x0F)); }
  static I nibbles_hi(I w) { return _mm256_and_si256(_mm256_srli_epi16(w, 4), _mm256_set1_epi8(0x0F)); }
  // acc + Σ over each int32 lane's 4 bytes of u1·s1 + u2·s2. vpmaddubsw pairs stay inside int16
  // for u <= 15 (2 · 15 · 128 = 3840), and so does the sum of two of them, so nothing saturates.
  static I dot2_u8s8(I acc, I u1, I s1, I u2, I s2) {
    const I pairs = _mm256_add_epi16(_mm256_maddubs_epi16(u1, s1), _mm256_maddubs_epi16(u2, s2));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static F cvt_i32(I v) { return _mm256_cvtepi32_ps(v); }
  // ---- W4A8 prefill, channels in lanes (kernels/x86/w4a8_prefill_simd.h) ----
  static I load_u8(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static void store_u8_vec(uint8_t* p, I v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); }
  static I set1_i32(int32_t v) { return _mm256_set1_epi32(v); }
  // Per int16 lane, u[2i]·s[2i] + u[2i+1]·s[2i+1] (u8 × s8; callers keep it from saturating).
  static I pair_products(I u, I s) { return _mm256_maddubs_epi16(u, s); }
  static I add_i16(I a, I b) { return _mm256_add_epi16(a, b); }
  static I add_i32(I a, I b) { return _mm256_add_epi32(a, b); }
  // Adjacent int16 lanes summed into int32 lanes.
  static I widen_pairs(I v) { return _mm256_madd_epi16(v, _mm256_set1_epi16(1)); }
  // The 8 × 8 dword matrix r (row i in r[i]) transposed in place.
  static void transpose_i32(I r[8]) {
    I t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
      t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
      t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int b = 0; b < 8; b += 4) {  // u[b + c], 128-bit lane L: rows b .. b + 3 of column 4L + c
      u[b + 0] = _mm256_unpacklo_epi64(t[b], t[b + 2]);
      u[b + 1] = _mm256_unpackhi_epi64(t[b], t[b + 2]);
      u[b + 2] = _mm256_unpacklo_epi64(t[b + 1], t[b + 3]);
      u[b + 3] = _mm256_unpackhi_epi64(t[b + 1], t[b + 3]);
    }
    for (int c = 0; c < 4; ++c) {
      r[c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x20);
      r[4 + c] = _mm256_permute2x128_si256(u[c], u[4 + c], 0x31);
    }
  }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  // The first n (0 < n <= kWidth) lanes of v to p; nothing past them is written.
  static void store_first(float* p, F v, int64_t n) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), lane), v);
  }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F abs(F v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
  static F zero_nan(F v) { return _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q)); }
  static F nan_mask_or(F acc, F v) { return _mm256_or_ps(acc, _mm256_cmp_ps(v, v, _CMP_UNORD_Q)); }
  static bool any(F mask) { return !_mm256_testz_ps(mask, mask); }
  static F round_even(F v) { return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  static F round_bf16(F v) {
    __m256i b = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    b = _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32(0x7FFF), lsb));
    return _mm256_castsi256_ps(_mm256_and_si256(b, _mm256_set1_epi32(static_cast<int>(0xFFFF0000u))));
  }
  static float reduce_max(F v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  static float reduce_min(F v) {
    __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_min_ps(m, _mm_movehl_ps(m, m));
    m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
  }
  // Lanes hold integers already inside the target range.
  static __m128i narrow16(F v) {
    const __m256i i32 = _mm256_cvtps_epi32(v);
    return _mm_packs_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
  }
  static void store_i8(int8_t* p, F v) {
    const __m128i i16 = narrow16(v);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packs_epi16(i16, i16));
  }
  static void store_u8(uint8_t* p, F v) {
    const __m128i i16 = narrow16(v);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(i16, i16));
  }
};

}  // namespace

}  // namespace quanto::kernels::avx2
