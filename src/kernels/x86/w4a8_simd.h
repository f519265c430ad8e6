// W4A8: int8 activation codes × tiled 4-bit weights with integer dot products (contract:
// linear_w4a8_tiled_ref in kernels/ref/tiled_ref.h), over vector traits V (vec_avx2.h,
// vec_avx512.h, or the VNNI traits of linear_avx512vnni.cpp).
//
// Why it is shaped this way: y = x_scale · Σ_g (scale_g · Σ_{k in g} x_k·code_k − shift_g · Σ_{k in g} x_k),
// so the inner loop is a u8 (code) × s8 (x) dot product per group, and the shift term needs only
// x's group sums, taken once per call. The tiled layout already suits it: a register of
// V::kPackedBytes bytes (a "chunk" of 2 · kPackedBytes codes) holds whole 16-byte blocks whose
// low nibbles are codes 0-15 and high nibbles codes 16-31 of the block, so one AND and one
// shift + AND give two registers of u8 codes; x is permuted once per call into the same order
// (the chunk's low-nibble codes, then its high-nibble ones). Each int32 lane of the dot products
// then sums 4 + 4 codes of one block: lanes 4b..4b+3 belong to block b, exactly the lane order
// of the float slot kernels (qbits_gemv_simd.h), so their ScalePlan scales them (a scale per
// group when groups span whole chunks, lane runs when a chunk holds several groups, per block
// otherwise).
//
// Loops: weight rows outermost, w4a8_rows<V>() (NR) at a time, and every tile of MB <= 4 rows of
// x against them, so the codes are read from memory once for all of x and stay in L1 for the
// following tiles. This serves batches below kW4A8PrefillMinRows rows (and the avx2vnni tier's
// prefill); larger ones run w4a8_prefill_simd.h, channels in lanes. Sums are exact int32 per
// group (or per chunk); only the float sums over groups differ in order from the reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/ref/tiled_ref.h"
#include "kernels/x86/qbits_gemv_simd.h"

namespace quanto::kernels::simd {

inline constexpr int kW4A8MaxTileRows = 4;  // rows of x per tile

// Weight rows per tile for MB rows of x: MB · NR int32 and as many float accumulators, plus
// 2 · NR code registers, fit the register file (16 ymm, 32 zmm).
template <class V>
constexpr int w4a8_rows(int MB) {
  if (V::kWidth >= 16) return MB == 1 ? 4 : 2;
  return MB == 1 ? 2 : 1;
}

// One row of int8 x in chunk order (low-nibble codes of the chunk, then high-nibble ones),
// zero-padded to whole chunks (ldx codes). A tiled block's low nibbles hold its codes 0-15 and
// its high nibbles 16-31, so the order is x's 16-code runs, the even ones (first halves of the
// chunk's blocks) then the odd ones: whole 16-byte copies.
template <class V>
void w4a8_chunk_order_x(const int8_t* x, int64_t K, int64_t ldx, int8_t* out) {
  constexpr int64_t kBytes = V::kPackedBytes, kCodes = 2 * kBytes;
  for (int64_t c = 0; c < ldx; c += kCodes)
    for (int64_t h = 0; h < kCodes / 16; ++h) {  // the chunk's run h of 16 codes
      const int64_t from = c + h * 16;
      int8_t* to = out + c + (h % 2) * kBytes + (h / 2) * 16;
      if (from + 16 <= K) {
        std::memcpy(to, x + from, 16);
      } else {
        const int64_t n = std::max<int64_t>(K - from, 0);
        std::memcpy(to, x + from, static_cast<size_t>(n));
        std::memset(to + n, 0, static_cast<size_t>(16 - n));
      }
    }
}

// iacc[m][r] += the int32 dot products of chunk c (Partial: the short last chunk of a row).
template <class V, bool Partial, int MB, int NR>
[[gnu::always_inline]] inline void w4a8_chunk(const int8_t* xs, int64_t ldx, const uint8_t* rows, int64_t row_bytes,
                                              int64_t c, typename V::I (&iacc)[MB][NR]) {
  using I = typename V::I;
  constexpr int64_t kBytes = V::kPackedBytes, kCodes = 2 * kBytes;
  I w[NR], lo[NR], hi[NR];
  load_rows<V, Partial, NR>(rows, row_bytes, c * kBytes, w);
  for (int r = 0; r < NR; ++r) {
    lo[r] = V::nibbles_lo(w[r]);
    hi[r] = V::nibbles_hi(w[r]);
  }
  for (int m = 0; m < MB; ++m) {
    const I xl = V::load_i(xs + m * ldx + c * kCodes), xh = V::load_i(xs + m * ldx + c * kCodes + kBytes);
    for (int r = 0; r < NR; ++r) iacc[m][r] = V::dot2_u8s8(iacc[m][r], lo[r], xl, hi[r], xh);
  }
}

// acc[m][r] += float(iacc[m][r]) · sv[r].
template <class V, int MB, int NR>
[[gnu::always_inline]] inline void w4a8_scale_into(const typename V::I (&iacc)[MB][NR], const typename V::F (&sv)[NR],
                                                   typename V::F (&acc)[MB][NR]) {
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = V::fma(V::cvt_i32(iacc[m][r]), sv[r], acc[m][r]);
}

// MB rows of x (chunk order, ldx apart) × NR weight rows: dots[m][r] = Σ_g scale[r, g] · dot_g.
// Accumulators are plain arrays in unrolled loops (kept in registers; see qbits_gemv_simd.h).
template <class V, int MB, int NR>
[[gnu::noinline]] void w4a8_tile(const int8_t* xs, int64_t ldx, const uint8_t* rows, int64_t row_bytes, int64_t K,
                                 const ScalePlan<V, 4>& plan, const float* scale, float dots[][NR]) {
  using F = typename V::F;
  using I = typename V::I;
  constexpr int64_t kCodes = 2 * V::kPackedBytes;
  F acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = V::zero();
  if (plan.whole()) {  // groups of whole chunks (K is then whole chunks too): one scale per group
    for (int64_t g = 0; g < plan.groups; ++g) {
      I iacc[MB][NR];
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) iacc[m][r] = V::zero_i();
      for (int64_t c = g * plan.per_group; c < (g + 1) * plan.per_group; ++c)
        w4a8_chunk<V, false>(xs, ldx, rows, row_bytes, c, iacc);
      F sv[NR];
      for (int r = 0; r < NR; ++r) sv[r] = V::set1(scale[r * plan.groups + g]);
      w4a8_scale_into<V>(iacc, sv, acc);
    }
  } else {  // lanes scaled by their block's group (GroupCursor); the last chunk may be short
    const int64_t chunks = (K + kCodes - 1) / kCodes, full = K / kCodes;
    GroupCursor<ScalePlan<V, 4>> group(plan);
    for (int64_t c = 0; c < chunks; ++c, group.next()) {
      I iacc[MB][NR];
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) iacc[m][r] = V::zero_i();
      F sv[NR];
      if (c < full) {
        w4a8_chunk<V, false>(xs, ldx, rows, row_bytes, c, iacc);
        for (int r = 0; r < NR; ++r) sv[r] = group.lanes(scale + r * plan.groups);
      } else {
        w4a8_chunk<V, true>(xs, ldx, rows, row_bytes, c, iacc);
        for (int r = 0; r < NR; ++r) sv[r] = group.lanes_tail(scale + r * plan.groups);
      }
      w4a8_scale_into<V>(iacc, sv, acc);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) dots[m][r] = V::hsum(acc[m][r]);
}

// P: the storage of the scales and shifts, float or a bf16 model's own bf16 (batch 1: the
// decode step's entry, linear_w4a8_gemv_bf16_params); bf16 ones are converted a block of rows at
// a time into L1 just before the block's codes are read and prefetched kPrefetchRows rows ahead,
// as qbits_gemv_row does, so equal values give equal results.
template <class V, class P = float>
void linear_w4a8_tiled(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                       int64_t group_size, const P* scale, const P* shift, const float* bias, LinearShape s,
                       float* y) {
  constexpr bool kConvert = !std::is_same_v<P, float>;
  constexpr int64_t kCodes = 2 * V::kPackedBytes;
  const int64_t K = s.K, M = s.M, row_bytes = tiled_row_bytes(4, K);
  if (!slot_gemv_supports<V, 4>(group_size)) {  // not whole 32-code blocks: the tiled layout never has those
    if constexpr (kConvert) {
      const int64_t groups = K / group_size, count = s.N * groups;
      std::vector<float> sf(static_cast<size_t>(count)), hf(sf.size());
      bf16_to_floats<V>(scale, count, sf.data());
      bf16_to_floats<V>(shift, count, hf.data());
      linear_w4a8_tiled_ref(x, x_scale, x_scale_stride, tiled, group_size, sf.data(), hf.data(), bias, s, y);
    } else {
      linear_w4a8_tiled_ref(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
    }
    return;
  }
  const ScalePlan<V, 4> plan(group_size, K);
  const int64_t groups = plan.groups, ldx = (K + kCodes - 1) / kCodes * kCodes;
  constexpr int kMaxRows = w4a8_rows<V>(1) > w4a8_rows<V>(2) ? w4a8_rows<V>(1) : w4a8_rows<V>(2);
  // x's exact group sums (as float: what the shift term multiplies), a block's converted
  // parameters, then x in chunk order, in this thread's scratch (a decode step calls this for
  // each part of each thread's rows).
  const int64_t param_floats = kConvert ? 2 * kMaxRows * groups : 0;
  float* xsum = thread_scratch<2>(static_cast<size_t>(M * groups + param_floats + (M * ldx + 3) / 4));
  float* params = xsum + M * groups;
  int8_t* xs = reinterpret_cast<int8_t*>(params + param_floats);
  for (int64_t m = 0; m < M; ++m) w4a8_chunk_order_x<V>(x + m * K, K, ldx, xs + m * ldx);
  w4a8_x_group_sums(x, M, K, group_size, xsum);
  // Rows [n, n + NR) of the weights against every row of x, MB rows at a time.
  auto rows_against_x = [&](auto nr, int64_t n) {
    constexpr int NR = decltype(nr)::value;
    const auto [sc, sh] = block_params<V>(scale, shift, n, NR, groups, params);
    auto tile = [&](auto mb, int64_t m0) {
      constexpr int MB = decltype(mb)::value;
      float d[MB][NR];
      w4a8_tile<V, MB, NR>(xs + m0 * ldx, ldx, tiled + n * row_bytes, row_bytes, K, plan, sc, d);
      for (int m = 0; m < MB; ++m) {
        const int64_t row = m0 + m;
        float terms[NR];  // the rows' shift terms
        dot_rows<V, NR>(sh, xsum + row * groups, groups, terms);
        for (int r = 0; r < NR; ++r) {
          const float v = x_scale[row * x_scale_stride] * (d[m][r] - terms[r]);
          y[row * s.N + n + r] = bias ? v + bias[n + r] : v;
        }
      }
    };
    int64_t m0 = 0;
    for (; m0 + kW4A8MaxTileRows <= M; m0 += kW4A8MaxTileRows) tile(std::integral_constant<int, kW4A8MaxTileRows>{}, m0);
    with_static_rows<1, kW4A8MaxTileRows - 1>(M - m0, [&](auto mb) { tile(mb, m0); });
  };
  // The tile width follows the largest tile of x this call runs (a single row: 2 or 4 rows).
  auto over_rows = [&](auto nr) {
    constexpr int NR = decltype(nr)::value;
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) rows_against_x(nr, n);
    for (; n < s.n_end; ++n) rows_against_x(std::integral_constant<int, 1>{}, n);
  };
  if (M == 1) over_rows(std::integral_constant<int, w4a8_rows<V>(1)>{});
  else over_rows(std::integral_constant<int, w4a8_rows<V>(2)>{});
}

}  // namespace quanto::kernels::simd
