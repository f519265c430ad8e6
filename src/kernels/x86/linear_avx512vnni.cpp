// Kernels for the avx512vnni tier (AVX-512 plus VNNI; built with -mavx512vnni on top of the
// AVX-512 flags), which the avx512bf16 tier reuses: W8A8 and W4A8 with vpdpbusd, 64 u8 × s8
// products per instruction summed exactly into int32 lanes. Cascade Lake and Ice Lake have VNNI
// without AVX-512 BF16; Zen 4 and Sapphire Rapids have both.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/x86/linear_simd.h"
#include "kernels/x86/linear_vnni_x86.h"
#include "kernels/x86/transpose_avx512.h"
#include "kernels/x86/vec_avx512.h"
#include "kernels/x86/w4a8_simd.h"

namespace quanto::kernels::avx512vnni {
namespace {

using simd::kRowBlock;
constexpr int kMaxRows = 4;  // rows of x per W8A8 micro-tile: 16 accumulators + 4 weights + 1 x

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
// into u8 quads, and 4 bytes of x are broadcast. The codes are vpdpbusd's unsigned operand and x
// its signed one, so the dot products are Σ code · x exactly, with no offset to take back out, and
// a group costs one conversion and one FMA per 16 channels and row against group_size / 4
// vpdpbusd.
constexpr int64_t kW4A8BlockN = kW4A8ChannelBlock;  // channels per block (kernels/dispatch.h): 4 zmm
constexpr int kW4A8BlockRegs = static_cast<int>(kW4A8BlockN / 16);
// A tile: kW4A8PrefillRows rows of x × kW4A8TileRegs channel vectors (8 int32 sums + 8 float
// accumulators + 2 codes + 1 x), so the float sums stay in registers across groups. Measured on
// Zen 4 (one thread, 1536 x 576 and 576 x 1536, M = 512): 4 x 2 ran groups of 32 24% faster than
// 6 rows x 4 vectors with their float sums in memory, and 6 x 2, 8 x 1, 12 x 1, 3 x 2 and 2 x 4
// were all slower than 4 x 2.
constexpr int kW4A8PrefillRows = 4;
constexpr int kW4A8TileRegs = 2;

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

// MR rows of x (K apart) against NR of the block's channel vectors, from vector r0: acc[i][r] lane
// l = Σ_g scale[g, 16(r0 + r) + l] · dot_g(row i, that channel), dot_g exact in int32, converted
// and scaled once a group.
template <int MR, int NR>
[[gnu::always_inline]] inline void w4a8_quads_tile(const int8_t* x, int64_t K, const uint8_t* quads, int r0,
                                                   int64_t groups, int64_t group_quads, const float* block_scale,
                                                   __m512 (&acc)[MR][NR]) {
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < NR; ++r) acc[i][r] = _mm512_setzero_ps();
  const uint8_t* wq = quads + 64 * r0;
  const int8_t* xq = x;
  for (int64_t g = 0; g < groups; ++g) {
    __m512i dots[MR][NR];
    for (int i = 0; i < MR; ++i)
      for (int r = 0; r < NR; ++r) dots[i][r] = _mm512_setzero_si512();
    for (int64_t q = 0; q < group_quads; ++q, wq += kW4A8BlockN * 4, xq += 4) {
      __m512i w[NR];
      for (int r = 0; r < NR; ++r) w[r] = _mm512_loadu_si512(wq + 64 * r);
      for (int i = 0; i < MR; ++i) {
        int32_t quad;
        std::memcpy(&quad, xq + i * K, sizeof(quad));
        const __m512i xb = _mm512_set1_epi32(quad);
        for (int r = 0; r < NR; ++r) dots[i][r] = _mm512_dpbusd_epi32(dots[i][r], w[r], xb);
      }
    }
    for (int r = 0; r < NR; ++r) {
      const __m512 sv = _mm512_loadu_ps(block_scale + g * kW4A8BlockN + 16 * (r0 + r));
      for (int i = 0; i < MR; ++i) acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[i][r]), sv, acc[i][r]);
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
  std::vector<uint8_t> codes(static_cast<size_t>(K * kW4A8BlockN)), quads(static_cast<size_t>(K * kW4A8BlockN));
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
      constexpr int MR = decltype(mr)::value, NR = kW4A8TileRegs;
      for (int r0 = 0; r0 < kW4A8BlockRegs; r0 += NR) {
        if (mask[r0] == 0) break;
        __m512 acc[MR][NR];
        w4a8_quads_tile<MR, NR>(x + m0 * K, K, quads.data(), r0, groups, group_size / 4, block_scale.data(), acc);
        // The shift terms of every row and channel vector as independent chains over the groups
        // (one chain per output vector in turn waited ~4 cycles a group: ~17% of a call with
        // groups of 32).
        __m512 corr[MR][NR];
        for (int i = 0; i < MR; ++i)
          for (int r = 0; r < NR; ++r) corr[i][r] = _mm512_setzero_ps();
        for (int64_t g = 0; g < groups; ++g) {
          __m512 h[NR];
          for (int r = 0; r < NR; ++r) h[r] = _mm512_loadu_ps(block_shift.data() + g * kW4A8BlockN + 16 * (r0 + r));
          for (int i = 0; i < MR; ++i) {
            const __m512 xg = _mm512_set1_ps(xsum[(m0 + i) * groups + g]);
            for (int r = 0; r < NR; ++r) corr[i][r] = _mm512_fmadd_ps(h[r], xg, corr[i][r]);
          }
        }
        for (int i = 0; i < MR; ++i) {
          const int64_t m = m0 + i;
          const __m512 xs = _mm512_set1_ps(x_scale[m * x_scale_stride]);
          for (int r = 0; r < NR; ++r) {
            if (mask[r0 + r] == 0) continue;
            const __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(acc[i][r], corr[i][r]), xs, bias_v[r0 + r]);
            _mm512_mask_storeu_ps(y + m * s.N + n0 + 16 * (r0 + r), mask[r0 + r], v);
          }
        }
      }
    };
    int64_t m0 = 0;
    for (; m0 + kW4A8PrefillRows <= M; m0 += kW4A8PrefillRows) tile(std::integral_constant<int, kW4A8PrefillRows>{}, m0);
    simd::with_static_rows<1, kW4A8PrefillRows - 1>(M - m0, [&](auto mb) { tile(mb, m0); });
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
  const std::vector<uint8_t> xu = x_as_u8(x, s.M, s.K, s.K);
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

}  // namespace quanto::kernels::avx512vnni
