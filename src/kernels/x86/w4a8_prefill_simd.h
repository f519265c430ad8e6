// W4A8 prefill (M >= kW4A8PrefillMinRows rows of x), channels in lanes, over vector traits V
// (vec_avx2.h, vec_avx512.h) and a tile policy: the integer dot products of the tier.
//
// Why channels in lanes: the GEMV-shaped kernel (w4a8_simd.h) holds k in its lanes, so every
// (row of x, weight row) output ends in a horizontal sum and every group in an int -> float
// conversion and an FMA per lane vector: at K = 384 (all-MiniLM-L6-v2) those cost as much as the
// dot products. Here each int32 lane is one output channel and each step adds 4 consecutive k of
// it: a block of kW4A8ChannelBlock channels is unpacked once per call into u8 quads (4 codes of
// a channel per dword), and 4 bytes of a row of x are broadcast. The codes are the unsigned
// operand and x the signed one, so the sums are Σ code · x exactly, and a group costs one
// conversion and one FMA per vector of channels and row of x.
//
// Tiles: PairProductTile (AVX2, AVX-512BW) multiplies with vpmaddubsw, whose int16 pair sums
// stay exact for up to 8 quads (8 · 2 · 15 · 128 = 30720 < 2^15), so 8 quads are summed in int16
// and widened once (vpmaddwd by ones); the VNNI tier has its own tile with vpdpbusd
// (linear_avx512vnni.cpp). Group sums are exact int32; only the float sums over groups differ in
// order from the reference (linear_w4a8_tiled_ref).
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/ref/tiled_ref.h"
#include "kernels/x86/channel_lanes_simd.h"
#include "kernels/x86/static_rows.h"

namespace quanto::kernels::simd {

inline constexpr int64_t kW4A8BlockN = kW4A8ChannelBlock;  // channels per unpacked block (dispatch.h)

// Codes of channels [n0, n0 + nb) of a tiled 4-bit weight as u8 quads (4 codes of a channel a
// dword), vector by vector of W = V::kWidth channels (rows_to_lanes):
// out[((j / W · K / 4 + q) · W + j % W) · 4 + i] = code(n0 + j, 4q + i), 0 for j >= nb. K % 32 == 0.
// codes: kW4A8BlockN · K bytes of scratch (the block's codes in natural order, row by row).
template <class V>
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
    // The same row of the next block, a line at a time (64 rows unpacked one after another left
    // each row's first loads waiting on memory).
    const uint8_t* next = t + kW4A8BlockN * row_bytes;
    for (int64_t k = 0; k < K; k += kTileCodes) {  // a tiled block: codes k..k+15 low, k+16..k+31 high
      if (k % 128 == 0) _mm_prefetch(reinterpret_cast<const char*>(next + k / 2), _MM_HINT_T1);
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t + k / 2));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + k), _mm_and_si128(b, low4));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(row + k + 16), _mm_and_si128(_mm_srli_epi16(b, 4), low4));
    }
  }
  rows_to_lanes<V>(codes, K, kW4A8BlockN, quads, out);
}

// vpmaddubsw tiles: MR rows of x (K apart) × NR of the block's channel vectors from vector r0:
// sums[i][r] lane l += Σ_g scale[g, W(r0 + r) + l] · dot_g(row i, that channel).
template <class V>
struct PairProductTile {
  using F = typename V::F;
  using I = typename V::I;
  // MR · NR int16 sums, as many int32 ones and float accumulators, NR codes and 1 x: 27 of 32
  // zmm registers at 4 x 2. With 16 ymm registers 3 x 2 spills a few, and still ran 12% faster
  // than 2 x 2 (which fits) at all-MiniLM-L6-v2's shapes on Zen 4 (one thread, M = 144); 4 x 1,
  // 4 x 2 and 6 x 1 were slower.
  static constexpr int kRows = V::kWidth >= 16 ? 4 : 3;
  static constexpr int kRegs = 2;
  static constexpr int64_t kExactQuads = 8;  // int16 pair sums stay exact this many quads

  template <int MR, int NR>
  [[gnu::always_inline]] static inline void tile(const int8_t* x, int64_t K, const uint8_t* quads, int r0,
                                                 int64_t groups, int64_t group_quads, const float* block_scale,
                                                 F (&sums)[MR][NR]) {
    constexpr int W = V::kWidth;
    F acc[MR][NR];  // local, so the sums live in registers (sums is read and written once)
    for (int i = 0; i < MR; ++i)
      for (int r = 0; r < NR; ++r) acc[i][r] = sums[i][r];
    const int64_t stride = K / 4 * W * 4;  // bytes between channel vectors
    const uint8_t* wq = quads + r0 * stride;
    const int8_t* xq = x;
    for (int64_t g = 0; g < groups; ++g) {
      I dots[MR][NR];
      for (int i = 0; i < MR; ++i)
        for (int r = 0; r < NR; ++r) dots[i][r] = V::zero_i();
      for (int64_t q0 = 0; q0 < group_quads; q0 += kExactQuads) {
        I pairs[MR][NR];
        for (int i = 0; i < MR; ++i)
          for (int r = 0; r < NR; ++r) pairs[i][r] = V::zero_i();
        const int64_t q1 = std::min(group_quads, q0 + kExactQuads);
        for (int64_t q = q0; q < q1; ++q, wq += W * 4, xq += 4) {
          I w[NR];
          for (int r = 0; r < NR; ++r) w[r] = V::load_u8(wq + r * stride);
          for (int i = 0; i < MR; ++i) {
            int32_t quad;
            std::memcpy(&quad, xq + i * K, sizeof(quad));
            const I xb = V::set1_i32(quad);
            for (int r = 0; r < NR; ++r) pairs[i][r] = V::add_i16(pairs[i][r], V::pair_products(w[r], xb));
          }
        }
        for (int i = 0; i < MR; ++i)
          for (int r = 0; r < NR; ++r)
            dots[i][r] = V::add_i32(dots[i][r], V::widen_pairs(pairs[i][r]));
      }
      for (int r = 0; r < NR; ++r) {
        const F sv = V::load(block_scale + g * kW4A8BlockN + W * (r0 + r));
        for (int i = 0; i < MR; ++i) acc[i][r] = V::fma(V::cvt_i32(dots[i][r]), sv, acc[i][r]);
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int r = 0; r < NR; ++r) sums[i][r] = acc[i][r];
  }
};

// y[m, n] for channels [n_begin, n_end) (whole blocks of kW4A8BlockN from n_begin, as the op
// layer splits prefill work): y = x_scale · (Σ_g s_g dot_g − Σ_g h_g xsum_g) + bias.
template <class V, class Tile>
void w4a8_prefill(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                  int64_t group_size, const float* scale, const float* shift, const float* bias, LinearShape s,
                  float* y) {
  using F = typename V::F;
  constexpr int W = V::kWidth, kBlockRegs = static_cast<int>(kW4A8BlockN / W);
  const int64_t K = s.K, M = s.M, groups = K / group_size;
  std::vector<float> xsum(static_cast<size_t>(M * groups));
  w4a8_x_group_sums(x, M, K, group_size, xsum.data());
  std::vector<uint8_t> codes(static_cast<size_t>(K * kW4A8BlockN)), quads(static_cast<size_t>(K * kW4A8BlockN));
  // The block's scales, shifts and bias, channels in lanes (0 past the last channel).
  std::vector<float> block_scale(static_cast<size_t>(groups * kW4A8BlockN)),
      block_shift(static_cast<size_t>(groups * kW4A8BlockN)), block_bias(static_cast<size_t>(kW4A8BlockN));
  for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kW4A8BlockN) {
    const int64_t nb = std::min(kW4A8BlockN, s.n_end - n0);
    w4_block_quads<V>(tiled, K, n0, nb, codes.data(), quads.data());
    for (int64_t g = 0; g < groups; ++g)
      for (int64_t j = 0; j < kW4A8BlockN; ++j) {
        block_scale[g * kW4A8BlockN + j] = j < nb ? scale[(n0 + j) * groups + g] : 0.0f;
        block_shift[g * kW4A8BlockN + j] = j < nb ? shift[(n0 + j) * groups + g] : 0.0f;
      }
    for (int64_t j = 0; j < kW4A8BlockN; ++j) block_bias[j] = bias && j < nb ? bias[n0 + j] : 0.0f;
    const int live_regs = static_cast<int>((nb + W - 1) / W);
    auto tile = [&](auto mr, int64_t m0) {
      constexpr int MR = decltype(mr)::value, NR = Tile::kRegs;
      static_assert(kBlockRegs % NR == 0, "tiles cover a block");
      for (int r0 = 0; r0 < live_regs; r0 += NR) {
        // The shift terms first, −Σ_g h_g xsum_g, as independent chains over the groups (one
        // chain per output vector in turn waited ~4 cycles a group: ~17% of a call with groups
        // of 32); the tile starts its sums from them, so everything stays in registers (with
        // the shift terms taken after the tile, GCC 12 kept them on the stack as well).
        F acc[MR][NR];
        for (int i = 0; i < MR; ++i)
          for (int r = 0; r < NR; ++r) acc[i][r] = V::zero();
        for (int64_t g = 0; g < groups; ++g) {
          F h[NR];
          for (int r = 0; r < NR; ++r) h[r] = V::load(block_shift.data() + g * kW4A8BlockN + W * (r0 + r));
          for (int i = 0; i < MR; ++i) {
            const F xg = V::set1(-xsum[(m0 + i) * groups + g]);
            for (int r = 0; r < NR; ++r) acc[i][r] = V::fma(h[r], xg, acc[i][r]);
          }
        }
        Tile::template tile<MR, NR>(x + m0 * K, K, quads.data(), r0, groups, group_size / 4, block_scale.data(), acc);
        for (int i = 0; i < MR; ++i) {
          const int64_t m = m0 + i;
          const F xs = V::set1(x_scale[m * x_scale_stride]);
          for (int r = 0; r < NR; ++r) {
            const int64_t c = W * (r0 + r), valid = std::min<int64_t>(W, nb - c);
            if (valid <= 0) continue;
            const F v = V::fma(acc[i][r], xs, V::load(block_bias.data() + c));
            V::store_first(y + m * s.N + n0 + c, v, valid);
          }
        }
      }
    };
    int64_t m0 = 0;
    for (; m0 + Tile::kRows <= M; m0 += Tile::kRows) tile(std::integral_constant<int, Tile::kRows>{}, m0);
    with_static_rows<1, Tile::kRows - 1>(M - m0, [&](auto mb) { tile(mb, m0); });
  }
}

}  // namespace quanto::kernels::simd
