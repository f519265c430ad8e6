// Blocked GEMM for weight-only linear layers at prefill sizes (M > kGemvMaxRows): each weight is
// decoded once per call into a small panel (NC rows × KC codes, L1-resident), and a
// register-blocked micro-kernel (MR rows of x × NR rows of the panel, vector accumulators along
// k) runs every row of x against it.
//
// Why blocked this way: without K blocking, every block of decoded rows streamed all of x (2 MiB
// at M = 128, K = 4096) from L3 and the micro-kernel ran at L2 speed. Here x's MR rows × KC codes
// and the panel stay in L1 for a whole sweep; the vector accumulators of the panel's outputs
// (M × NC vectors, L2) carry over from one K block to the next, and each is summed across lanes
// once, at the end. The decoded panel keeps rows contiguous along k (as the weights are stored),
// so decoding needs no transposition.
//
// A policy P names the element types and the multiply-accumulate (FloatTile below: the float
// kernels of the avx2 and avx512 tiers; bf16 activations have their own driver,
// gemm_bf16_panels.h).
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace quanto::kernels::simd {

// float activations × float decoded weights, over vector traits V.
template <class V>
struct FloatTile {
  using Elem = float;
  using In = typename V::F;
  using Acc = typename V::F;
  static constexpr int kStep = V::kWidth;     // elements of k per multiply-accumulate
  static constexpr int kAccFloats = V::kWidth;
  static constexpr int kMR = V::kGemmMR, kNR = V::kGemmNR;
  static constexpr int64_t kKc = 512;         // k per panel: NC · KC · 4 bytes in L1
  static constexpr int kPanelTiles = 2;       // NC = kPanelTiles · NR rows per panel
  static In load(const float* p) { return V::load(p); }
  static Acc madd(Acc acc, In x, In w) { return V::fma(x, w, acc); }
  static Acc zero() { return V::zero(); }
  static Acc load_acc(const float* p) { return V::load(p); }
  static void store_acc(float* p, Acc v) { V::store(p, v); }
  static float hsum(Acc v) { return V::hsum(v); }
};

// acc(MR × NR) over kc elements of k; c holds the accumulators between K blocks. Not inlined
// (like the GEMV kernels): the register-blocked loop gets every register to itself.
template <class P>
[[gnu::noinline]] void gemm_micro(const typename P::Elem* x, int64_t ldx, const typename P::Elem* w, int64_t ldw,
                                  int64_t kc, float* c, bool first) {
  constexpr int MR = P::kMR, NR = P::kNR;
  typename P::Acc acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < NR; ++r) acc[i][r] = first ? P::zero() : P::load_acc(c + (i * NR + r) * P::kAccFloats);
  for (int64_t k = 0; k < kc; k += P::kStep) {
    typename P::In xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = P::load(x + i * ldx + k);
    for (int r = 0; r < NR; ++r) {
      const typename P::In wv = P::load(w + r * ldw + k);
      for (int i = 0; i < MR; ++i) acc[i][r] = P::madd(acc[i][r], xv[i], wv);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < NR; ++r) P::store_acc(c + (i * NR + r) * P::kAccFloats, acc[i][r]);
}

// Where the quantized weights are (row-major, bits per code), for software prefetch: decoding
// reads each row in short K blocks, which the hardware prefetcher follows poorly.
struct WeightRows {
  const void* base;
  int64_t row_bytes;
  int bits;
  // Prefetches (into L2) the bytes of codes [k0, k0 + count) of row n.
  void prefetch(int64_t n, int64_t k0, int64_t count) const {
    const char* p = static_cast<const char*>(base) + n * row_bytes + k0 * bits / 8;
    for (int64_t b = 0; b < count * bits / 8; b += 64) _mm_prefetch(p + b, _MM_HINT_T1);
  }
};

// y rows [n_begin, n_end): decode(n, k0, count, out) writes weights (n, k0 .. k0 + count) as
// P::Elem (k0 a multiple of P::kKc); emit(m, n, dot) receives Σ_k x[m, k] · w[n, k].
template <class P, typename Decode, typename Emit>
void gemm_blocked(const typename P::Elem* x, int64_t M, int64_t K, int64_t n_begin, int64_t n_end,
                  const WeightRows& rows, Decode decode, Emit emit) {
  using Elem = typename P::Elem;
  constexpr int MR = P::kMR, NR = P::kNR, W = P::kAccFloats;
  constexpr int64_t NC = int64_t{NR} * P::kPanelTiles, KC = P::kKc;
  static_assert(KC % P::kStep == 0, "K blocks are whole vectors");
  const int64_t Kp = (K + P::kStep - 1) / P::kStep * P::kStep, Mp = (M + MR - 1) / MR * MR;
  // x padded with zeros to whole vectors and whole micro-tiles (extra rows are never emitted).
  std::vector<Elem> xpad;
  const Elem* xp = x;
  int64_t ldx = K;
  if (Kp != K || Mp != M) {
    xpad.assign(static_cast<size_t>(Mp * Kp), Elem{});
    for (int64_t m = 0; m < M; ++m) std::memcpy(xpad.data() + m * Kp, x + m * K, static_cast<size_t>(K) * sizeof(Elem));
    xp = xpad.data();
    ldx = Kp;
  }
  std::vector<Elem> panel(static_cast<size_t>(NC * KC));
  std::vector<float> cacc(static_cast<size_t>(Mp * NC * W));
  auto acc_at = [&](int64_t m, int64_t r) {
    return cacc.data() + (((m / MR) * (NC / NR) + r / NR) * MR * NR + (m % MR) * NR + r % NR) * W;
  };
  for (int64_t n0 = n_begin; n0 < n_end; n0 += NC) {
    const int64_t nc = std::min(NC, n_end - n0), tiles = (nc + NR - 1) / NR;
    for (int64_t k0 = 0; k0 < Kp; k0 += KC) {
      const int64_t kc = std::min(KC, Kp - k0), real = std::min(kc, K - k0);
      for (int64_t r = 0; r < tiles * NR; ++r) {
        Elem* out = panel.data() + r * KC;
        if (r < nc) {
          decode(n0 + r, k0, real, out);
          // The block this row's decoding reads next: its next K block, or the next panel's start.
          if (k0 + KC < K) rows.prefetch(n0 + r, k0 + KC, std::min(KC, K - k0 - KC));
          else if (n0 + NC + r < n_end) rows.prefetch(n0 + NC + r, 0, std::min(KC, K));
        }
        std::fill(out + (r < nc ? real : 0), out + kc, Elem{});
      }
      for (int64_t m0 = 0; m0 < Mp; m0 += MR)
        for (int64_t t = 0; t < tiles; ++t)
          gemm_micro<P>(xp + m0 * ldx + k0, ldx, panel.data() + t * NR * KC, KC, kc, acc_at(m0, t * NR), k0 == 0);
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t r = 0; r < nc; ++r) emit(m, n0 + r, P::hsum(P::load_acc(acc_at(m, r))));
  }
}

}  // namespace quanto::kernels::simd
