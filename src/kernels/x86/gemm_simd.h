// Blocked GEMM for weight-only linear layers at prefill sizes (M > kGemvMaxRows) on the float
// tiers (avx2, avx512): each weight is decoded once per call, and a register-blocked micro-kernel
// runs every row of x against it, channels in lanes.
//
// Why channels in lanes: a vector holds kWidth output channels, x[m, k] is broadcast and one FMA
// adds its products with kWidth channels' weights, so an output tile leaves the registers as it
// is, with no horizontal sum. The earlier kernel held k in its lanes (weights decoded row by row,
// as they are stored) and summed every output across its lanes: at K = 384 (all-MiniLM-L6-v2)
// that left the avx512 tier's int8 weights at 0.75x of fp32 on Zen 4. Each K block of a panel of
// kGemmNV · kWidth channels is decoded row by row (the layer's own float decoder) and turned into
// lanes by W × W transposes (rows_to_lanes); float products are exact as in the reference, and
// only the summation order differs.
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/x86/channel_lanes_simd.h"
#include "kernels/x86/static_rows.h"

namespace quanto::kernels::simd {

// c[i][v] (+)= Σ_k x[i, k] · panel vector v at k, over kc values of k; the panel holds each of
// its V::kGemmNV vectors' kc_stride k contiguously. Not inlined (like the GEMV kernels): the
// register-blocked loop gets every register to itself.
template <class V, int MR>
[[gnu::noinline]] void lanes_micro(const float* x, int64_t ldx, const float* panel, int64_t kc_stride, int64_t kc,
                                   float* c, bool first) {
  constexpr int NV = V::kGemmNV, W = V::kWidth;
  typename V::F acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = first ? V::zero() : V::load(c + (i * NV + v) * W);
  for (int64_t k = 0; k < kc; ++k) {
    typename V::F w[NV];
    for (int v = 0; v < NV; ++v) w[v] = V::load(panel + (v * kc_stride + k) * W);
    for (int i = 0; i < MR; ++i) {
      const typename V::F xb = V::set1(x[i * ldx + k]);
      for (int v = 0; v < NV; ++v) acc[i][v] = V::fma(xb, w[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NV; ++v) V::store(c + (i * NV + v) * W, acc[i][v]);
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
// floats; emit(m, n, dot) receives Σ_k x[m, k] · w[n, k].
template <class V, typename Decode, typename Emit>
void gemm_blocked(const float* x, int64_t M, int64_t K, int64_t n_begin, int64_t n_end, const WeightRows& rows,
                  Decode decode, Emit emit) {
  constexpr int W = V::kWidth, NV = V::kGemmNV, MR = V::kGemmMR;
  // The panel, PN · KC floats (32 KiB on AVX2, 128 KiB on AVX-512), stays in L2 and x's MR rows
  // in L1. KC = 512 ran 10-15% faster than 256 at K = 4096 on Zen 4 (fewer reloads of the
  // accumulators between K blocks), and 1024 no faster.
  constexpr int64_t PN = int64_t{W} * NV, KC = 512;
  const int64_t kc_max = std::min(KC, (K + W - 1) / W * W);
  std::vector<float> decoded(static_cast<size_t>(PN * kc_max)), panel(decoded.size());
  std::vector<float> cacc(static_cast<size_t>(M * PN));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += PN) {
    const int64_t nc = std::min(PN, n_end - n0);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = std::min(KC, K - k0), kcp = (kc + W - 1) / W * W;  // kcp: whole transposes
      for (int64_t r = 0; r < PN; ++r) {
        float* out = decoded.data() + r * kcp;
        if (r < nc) {
          decode(n0 + r, k0, kc, out);
          // The block this row's decoding reads next: its next K block, or the next panel's start.
          if (k0 + KC < K) rows.prefetch(n0 + r, k0 + KC, std::min(KC, K - k0 - KC));
          else if (n0 + PN + r < n_end) rows.prefetch(n0 + PN + r, 0, std::min(KC, K));
        }
        std::fill(out + (r < nc ? kc : 0), out + kcp, 0.0f);
      }
      rows_to_lanes<V>(reinterpret_cast<const uint8_t*>(decoded.data()), kcp * 4, PN, kcp,
                       reinterpret_cast<uint8_t*>(panel.data()));
      int64_t m0 = 0;
      for (; m0 + MR <= M; m0 += MR)
        lanes_micro<V, MR>(x + m0 * K + k0, K, panel.data(), kcp, kc, cacc.data() + m0 * PN, k0 == 0);
      if (m0 < M)
        with_static_rows<1, MR - 1>(M - m0, [&](auto mr) {
          lanes_micro<V, decltype(mr)::value>(x + m0 * K + k0, K, panel.data(), kcp, kc, cacc.data() + m0 * PN,
                                               k0 == 0);
        });
    }
    for (int64_t m = 0; m < M; ++m)
      for (int64_t j = 0; j < nc; ++j) emit(m, n0 + j, cacc[m * PN + j]);
  }
}

}  // namespace quanto::kernels::simd
