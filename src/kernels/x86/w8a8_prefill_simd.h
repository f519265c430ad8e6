// W8A8 prefill (M >= kW8A8PrefillMinRows rows of x) for tiers without VNNI, channels in lanes,
// over vector traits V (vec_avx2.h, vec_avx512.h).
//
// Why: the row kernel (w8a8_tile, linear_simd.h) holds k in its lanes and ends every output in a
// horizontal sum; at K = 384 (all-MiniLM-L6-v2) that left W8A8 no faster than fp32 on AVX2. Here
// the channels of a block are widened to int16 and laid out (rows_to_lanes) so that each int32
// lane holds one channel's pair (w[n, 2p], w[n, 2p + 1]); a pair of x, widened once per call, is
// broadcast, and one vpmaddwd adds both products to each channel's int32 sum. Sums are exact
// (|pair| <= 2 · 128 · 128 = 2^15), and the epilogue is w8a8_output's, so the results match the
// reference bit for bit. vpmaddubsw would do twice the products per instruction, but needs one
// unsigned operand: x + 128 overflows its int16 pair sums, and the sign trick (|x|, sign(x) · w)
// is wrong for w = -128, which int8 checkpoints may hold.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/ref/linear_ref.h"
#include "kernels/x86/channel_lanes_simd.h"
#include "kernels/x86/static_rows.h"

namespace quanto::kernels::simd {

inline constexpr int64_t kW8A8PrefillMinRows = 16;

// Tile shape: kRows rows of x × kRegs channel vectors of int32 sums, kRegs weight vectors, one
// broadcast of x and a product: 14 of 16 ymm registers at 5 × 2, 30 of 32 zmm at 6 × 4. A tile
// that needs one register more spills a sum, whose store and reload then sit on the loop's
// critical path: 4 × 3 on AVX2 ran at 15 products a cycle on Zen 4, 5 × 2, 4 × 2 and 3 × 3 at 22.
template <class V>
struct W8A8PrefillShape {
  static constexpr int kRows = V::kWidth >= 16 ? 6 : 5;
  static constexpr int kRegs = V::kWidth >= 16 ? 4 : 2;
  static constexpr int64_t kBlockN = int64_t{V::kWidth} * kRegs;  // channels per block
};

// MR rows of x (pairs of int16, ldp pairs apart) × the block's kRegs channel vectors (pairs
// contiguous per vector).
template <class V, int MR>
[[gnu::always_inline]] inline void w8a8_pairs_tile(const int32_t* xp, int64_t ldp, const uint8_t* block, int64_t pairs,
                                                   typename V::I (&sums)[MR][W8A8PrefillShape<V>::kRegs]) {
  constexpr int NR = W8A8PrefillShape<V>::kRegs, W = V::kWidth;
  typename V::I acc[MR][NR];  // local, so the sums live in registers
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < NR; ++r) acc[i][r] = V::zero_i();
  const int64_t stride = pairs * W * 4;  // bytes between channel vectors
  for (int64_t p = 0; p < pairs; ++p) {
    typename V::I w[NR];
    for (int r = 0; r < NR; ++r) w[r] = V::load_u8(block + r * stride + p * W * 4);
    for (int i = 0; i < MR; ++i) {
      const typename V::I xb = V::set1_i32(xp[i * ldp + p]);
      for (int r = 0; r < NR; ++r) acc[i][r] = V::madd(acc[i][r], w[r], xb);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < NR; ++r) sums[i][r] = acc[i][r];
}

// n int8 values as int16, V::kI8Step at a time (the per-call widening of a layer's weights).
template <class V>
void widen_row(const int8_t* src, int64_t n, int16_t* dst) {
  int64_t k = 0;
  for (; k + V::kI8Step <= n; k += V::kI8Step) V::store_u8_vec(reinterpret_cast<uint8_t*>(dst + k), V::widen_i8(src + k));
  for (; k < n; ++k) dst[k] = src[k];
}

template <class V>
void w8a8_prefill(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                  const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  using Shape = W8A8PrefillShape<V>;
  using F = typename V::F;
  constexpr int W = V::kWidth, NR = Shape::kRegs;
  constexpr int64_t CB = Shape::kBlockN;
  const int64_t K = s.K, M = s.M, pairs = (K + 1) / 2;
  // x as int16 pairs, zero-padded to whole pairs.
  std::vector<int16_t> x16(static_cast<size_t>(M * 2 * pairs), 0);
  for (int64_t m = 0; m < M; ++m) widen_row<V>(x + m * K, K, x16.data() + m * 2 * pairs);
  const auto* xp = reinterpret_cast<const int32_t*>(x16.data());
  // The block's rows widened to int16 (zero rows past n_end), then as lanes of pairs.
  std::vector<int16_t> rows(static_cast<size_t>(CB * 2 * pairs));
  std::vector<uint8_t> block(static_cast<size_t>(CB * pairs * 4));
  alignas(64) float ws[CB], bs[CB];
  for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += CB) {
    const int64_t nb = std::min(CB, s.n_end - n0);
    std::fill(rows.begin(), rows.end(), int16_t{0});
    for (int64_t j = 0; j < nb; ++j) widen_row<V>(w + (n0 + j) * K, K, rows.data() + j * 2 * pairs);
    rows_to_lanes<V>(reinterpret_cast<const uint8_t*>(rows.data()), 4 * pairs, CB, pairs, block.data());
    for (int64_t j = 0; j < CB; ++j) {
      ws[j] = j < nb ? w_scale[(n0 + j) * w_scale_stride] : 0.0f;
      bs[j] = bias && j < nb ? bias[n0 + j] : 0.0f;
    }
    auto tile = [&](auto mr, int64_t m0) {
      constexpr int MR = decltype(mr)::value;
      typename V::I sums[MR][NR];
      w8a8_pairs_tile<V, MR>(xp + m0 * pairs, pairs, block.data(), pairs, sums);
      for (int i = 0; i < MR; ++i) {
        const int64_t m = m0 + i;
        const F xs = V::set1(x_scale[m * x_scale_stride]);
        for (int r = 0; r < NR; ++r) {
          const int64_t c = W * r, valid = std::min<int64_t>(W, nb - c);
          if (valid <= 0) continue;
          // w8a8_output lane by lane: float(sum) · (x_scale · w_scale), then the bias.
          F v = V::mul(V::cvt_i32(sums[i][r]), V::mul(xs, V::load(ws + c)));
          if (bias) v = V::add(v, V::load(bs + c));
          V::store_first(y + m * s.N + n0 + c, v, valid);
        }
      }
    };
    int64_t m0 = 0;
    for (; m0 + Shape::kRows <= M; m0 += Shape::kRows) tile(std::integral_constant<int, Shape::kRows>{}, m0);
    with_static_rows<1, Shape::kRows - 1>(M - m0, [&](auto mb) { tile(mb, m0); });
  }
}

}  // namespace quanto::kernels::simd
