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
#include "kernels/x86/vec_avx512.h"
#include "kernels/x86/w4a8_prefill_simd.h"
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

// ---- W4A8 prefill (M >= kW4A8PrefillMinRows): channels in lanes (w4a8_prefill_simd.h) ----
// Each vpdpbusd adds 4 consecutive k of 16 channels straight into int32 lanes, with the codes
// as its unsigned operand and x as its signed one, so the sums are Σ code · x exactly.
//
// A tile: kRows rows of x × kRegs channel vectors (8 int32 sums + 8 float accumulators + 2 codes
// + 1 x), so the float sums stay in registers across groups. Measured on Zen 4 (one thread,
// 1536 x 576 and 576 x 1536, M = 512): 4 x 2 ran groups of 32 24% faster than 6 rows x 4 vectors
// with their float sums in memory, and 6 x 2, 8 x 1, 12 x 1, 3 x 2 and 2 x 4 were all slower
// than 4 x 2.
struct DpbusdTile {
  static constexpr int kRows = 4;
  static constexpr int kRegs = 2;

  template <int MR, int NR>
  [[gnu::always_inline]] static inline void tile(const int8_t* x, int64_t K, const uint8_t* quads, int r0,
                                                 int64_t groups, int64_t group_quads, const float* block_scale,
                                                 __m512 (&sums)[MR][NR]) {
    __m512 acc[MR][NR];  // local, so the sums live in registers (sums is read and written once)
    for (int i = 0; i < MR; ++i)
      for (int r = 0; r < NR; ++r) acc[i][r] = sums[i][r];
    const int64_t stride = K / 4 * 64;  // bytes between channel vectors (w4_block_quads)
    const uint8_t* wq = quads + r0 * stride;
    const int8_t* xq = x;
    for (int64_t g = 0; g < groups; ++g) {
      __m512i dots[MR][NR];
      for (int i = 0; i < MR; ++i)
        for (int r = 0; r < NR; ++r) dots[i][r] = _mm512_setzero_si512();
      for (int64_t q = 0; q < group_quads; ++q, wq += 64, xq += 4) {
        __m512i w[NR];
        for (int r = 0; r < NR; ++r) w[r] = _mm512_loadu_si512(wq + r * stride);
        for (int i = 0; i < MR; ++i) {
          int32_t quad;
          std::memcpy(&quad, xq + i * K, sizeof(quad));
          const __m512i xb = _mm512_set1_epi32(quad);
          for (int r = 0; r < NR; ++r) dots[i][r] = _mm512_dpbusd_epi32(dots[i][r], w[r], xb);
        }
      }
      for (int r = 0; r < NR; ++r) {
        const __m512 sv = _mm512_loadu_ps(block_scale + g * kW4A8ChannelBlock + 16 * (r0 + r));
        for (int i = 0; i < MR; ++i) acc[i][r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dots[i][r]), sv, acc[i][r]);
      }
    }
    for (int i = 0; i < MR; ++i)
      for (int r = 0; r < NR; ++r) sums[i][r] = acc[i][r];
  }
};

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
    simd::w4a8_prefill<avx512::Vec, DpbusdTile>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s,
                                                 y);
    return;
  }
  simd::linear_w4a8_tiled<VnniVec>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
}

void linear_w4a8_gemv_bf16_params_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride,
                                       const uint8_t* tiled, int64_t group_size, const bf16* scale, const bf16* shift,
                                       const float* bias, LinearShape s, float* y) {
  simd::linear_w4a8_tiled<VnniVec, bf16>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
}

}  // namespace quanto::kernels::avx512vnni
