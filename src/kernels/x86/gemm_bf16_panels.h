// Weight-only GEMM for bf16 activations with vdpbf16ps, channels in lanes: the prefill path
// (M > kGemvMaxRows) of the avx512bf16 tier. Include only from translation units built with
// AVX-512 BF16.
//
// Why channels in lanes: a vector of 16 output channels accumulates 16 outputs at once, so an
// output tile leaves the registers with one multiply-add for its scale and bias and a store,
// with no horizontal sum. The earlier kernel kept k in lanes (weights decoded row by row, as they
// are stored) and reduced every output across 16 lanes: at K = 384 (all-MiniLM-L6-v2) those
// reductions took as long as the dot products.
//
// Each call decodes the weights once, K block by K block, into panels of kPanelN channels:
// rows are decoded as bf16 (the layer's own row decoder), then a 16 × 16 transpose of 32-bit
// pairs puts, for every pair of k, 16 channels' (w[n, 2p], w[n, 2p + 1]) in one vector. The
// micro-kernel broadcasts x's pair (x[m, 2p], x[m, 2p + 1]) and runs kMR rows × kPanelN
// channels: 24 accumulators, 3 weight vectors and one broadcast of the 32 zmm registers.
// bf16 × bf16 products are exact in fp32, so only the summation order differs from decoding
// the weights to float.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/x86/static_rows.h"
#include "kernels/x86/transpose_avx512.h"

namespace quanto::kernels::avx512bf16 {
namespace {

inline constexpr int kPanelVecs = 3;                  // vectors of 16 channels per panel
inline constexpr int64_t kPanelN = 16 * kPanelVecs;   // channels per panel
inline constexpr int kPanelMR = 8;                    // rows of x per micro-tile
// k per K block: the panel (kPanelN × kPanelKc bf16, 96 KiB) stays in L2 and kPanelMR rows of
// x (16 KiB) in L1 for a sweep over M.
inline constexpr int64_t kPanelKc = 1024;

// One vector of a panel: 16 channels' bf16 pairs.
struct alignas(64) PanelVec {
  uint32_t pair[16];
};

// c[i][v] += Σ_p pair p of x row i · pair p of panel vector v, over `pairs` pairs of k. The
// panel holds kPanelVecs vectors per pair; x rows are ldx bf16 apart.
template <int MR>
[[gnu::noinline]] void panel_micro(const bf16* x, int64_t ldx, const PanelVec* panel, int64_t pairs, float* c,
                                   bool first) {
  __m512 acc[MR][kPanelVecs];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kPanelVecs; ++v) acc[i][v] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(c + (i * kPanelVecs + v) * 16);
  const int32_t* xp = reinterpret_cast<const int32_t*>(x);
  const int64_t ldp = ldx / 2;
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh w[kPanelVecs];
    for (int v = 0; v < kPanelVecs; ++v) w[v] = reinterpret_cast<__m512bh>(_mm512_load_si512(panel[p * kPanelVecs + v].pair));
    for (int i = 0; i < MR; ++i) {
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_set1_epi32(xp[i * ldp + p]));
      for (int v = 0; v < kPanelVecs; ++v) acc[i][v] = _mm512_dpbf16_ps(acc[i][v], w[v], xv);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < kPanelVecs; ++v) _mm512_storeu_ps(c + (i * kPanelVecs + v) * 16, acc[i][v]);
}

// y = dot · scale (per channel, or none) + bias for the channels of one panel.
struct PanelEpilogue {
  const float* scale;  // nullptr: the decoded weights carry their scales
  int64_t scale_stride;
  const float* bias;

  // The panel's channels [n0, n0 + count) as vectors, built once for all its rows (loading
  // scalars just stored as a vector stalls store forwarding: once a row, it took longer than
  // the row's dot products at K = 384).
  struct Channels {
    __m512 scale[kPanelVecs], bias[kPanelVecs];
    __mmask16 mask[kPanelVecs];
    int vecs;
  };
  Channels channels(int64_t n0, int64_t count) const {
    alignas(64) float sv[kPanelN], bv[kPanelN];
    for (int64_t j = 0; j < count; ++j) {
      sv[j] = scale ? scale[(n0 + j) * scale_stride] : 1.0f;
      bv[j] = bias ? bias[n0 + j] : 0.0f;
    }
    Channels c{};
    c.vecs = static_cast<int>((count + 15) / 16);
    for (int v = 0; v < c.vecs; ++v) {
      const int64_t left = count - 16 * v;
      c.mask[v] = static_cast<__mmask16>(left >= 16 ? 0xFFFFu : (1u << left) - 1u);
      c.scale[v] = _mm512_maskz_load_ps(c.mask[v], sv + 16 * v);
      c.bias[v] = _mm512_maskz_load_ps(c.mask[v], bv + 16 * v);
    }
    return c;
  }
  static void store(const Channels& c, const float* dots, float* y) {
    for (int v = 0; v < c.vecs; ++v)
      _mm512_mask_storeu_ps(y + 16 * v, c.mask[v], _mm512_fmadd_ps(_mm512_loadu_ps(dots + 16 * v), c.scale[v], c.bias[v]));
  }
};

// y[m, n] (n in [n_begin, n_end), rows N apart) = epilogue(Σ_k x[m, k] · w[n, k]) for bf16 x
// [M, K] (K even). decode(n, k0, count, out) writes weights (n, k0 .. k0 + count) as bf16;
// prefetch(n, k0, count) hints what it will read for them, a block ahead.
template <typename Decode, typename Prefetch>
void gemm_bf16_panels(const bf16* x, int64_t M, int64_t K, int64_t N, int64_t n_begin, int64_t n_end, Decode decode,
                      Prefetch prefetch, const PanelEpilogue& epilogue, float* y) {
  const int64_t kc_max = std::min(kPanelKc, K);
  std::vector<bf16> decoded(static_cast<size_t>(16 * kc_max));
  // kc_max / 2 pairs × kPanelVecs vectors, 64-byte aligned.
  std::vector<PanelVec> panel(static_cast<size_t>(kc_max / 2 * kPanelVecs));
  std::vector<float> cacc(static_cast<size_t>(M * kPanelN));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanelN) {
    const int64_t nc = std::min(kPanelN, n_end - n0);
    for (int64_t k0 = 0; k0 < K; k0 += kPanelKc) {
      const int64_t kc = std::min(kPanelKc, K - k0), pairs = kc / 2;
      for (int v = 0; v < kPanelVecs; ++v) {
        for (int r = 0; r < 16; ++r) {
          const int64_t n = n0 + 16 * v + r;
          bf16* out = decoded.data() + r * kc_max;
          if (16 * v + r < nc) {
            decode(n, k0, kc, out);
            // The block this row's decoding reads next: its next K block, or the next panel's.
            if (k0 + kPanelKc < K) prefetch(n, k0 + kPanelKc, std::min(kPanelKc, K - k0 - kPanelKc));
            else if (n + kPanelN < n_end) prefetch(n + kPanelN, 0, std::min(kPanelKc, K));
          } else {
            std::fill(out, out + kc, bf16{});
          }
        }
        for (int64_t p = 0; p < pairs; p += 16) {
          const int64_t valid = std::min<int64_t>(16, pairs - p);
          const __mmask16 mask = static_cast<__mmask16>(valid == 16 ? 0xFFFFu : (1u << valid) - 1u);
          __m512i t[16];
          for (int r = 0; r < 16; ++r) t[r] = _mm512_maskz_loadu_epi32(mask, decoded.data() + r * kc_max + 2 * p);
          avx512::transpose16_epi32(t);  // t[q]: pair p + q of the 16 channels
          for (int64_t q = 0; q < valid; ++q) _mm512_store_si512(panel[(p + q) * kPanelVecs + v].pair, t[q]);
        }
      }
      const bool first = k0 == 0;
      int64_t m0 = 0;
      for (; m0 + kPanelMR <= M; m0 += kPanelMR)
        panel_micro<kPanelMR>(x + m0 * K + k0, K, panel.data(), pairs, cacc.data() + m0 * kPanelN, first);
      if (m0 < M)
        simd::with_static_rows<1, kPanelMR - 1>(M - m0, [&](auto mr) {
          panel_micro<decltype(mr)::value>(x + m0 * K + k0, K, panel.data(), pairs, cacc.data() + m0 * kPanelN,
                                           first);
        });
    }
    const PanelEpilogue::Channels channels = epilogue.channels(n0, nc);
    for (int64_t m = 0; m < M; ++m) PanelEpilogue::store(channels, cacc.data() + m * kPanelN, y + m * N + n0);
  }
}

}  // namespace
}  // namespace quanto::kernels::avx512bf16
