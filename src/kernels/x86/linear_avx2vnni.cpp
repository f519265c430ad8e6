// Kernels for the avx2vnni tier (AVX2 plus AVX-VNNI, the VEX-encoded vpdpbusd of Alder Lake and
// later Intel client CPUs, Sapphire Rapids and Zen 5; built with -mavxvnni on top of the AVX2
// flags): W8A8 and W4A8 with 256-bit vpdpbusd, 32 u8 × s8 products summed into int32 lanes per
// instruction, where plain AVX2 needs vpmaddubsw/vpmaddwd pairs. The weight-only kernels are the
// avx2 tier's.
#include <immintrin.h>

#include <vector>

#include "kernels/x86/linear_simd.h"
#include "kernels/x86/linear_vnni_x86.h"
#include "kernels/x86/vec_avx2.h"
#include "kernels/x86/w4a8_simd.h"

namespace quanto::kernels::avx2vnni {
namespace {

using simd::kRowBlock;
constexpr int kMaxRows = 2;      // rows of x per W8A8 tile: 8 accumulators + 4 weights + 1 x of 16 ymm
constexpr int64_t kStep = 32;    // k per vpdpbusd

// The AVX2 traits with AVX-VNNI's vpdpbusd for W4A8's u8 (code) × s8 (x) dot products.
struct VnniVec : avx2::Vec {
  static I dot2_u8s8(I acc, I u1, I s1, I u2, I s2) {
    return _mm256_dpbusd_avx_epi32(_mm256_dpbusd_avx_epi32(acc, u1, s1), u2, s2);
  }
};

// Accumulators typed as vpdpbusd's own int32 vectors: arrays of __m512i (64-bit lanes) reached
// through the intrinsic's casts were kept in memory by GCC 12 in a 512-bit test tile (its scalar
// replacement gives up on the type mismatch); int32-typed arrays stayed in registers.
typedef int32_t v8si __attribute__((vector_size(32)));
inline v8si dpbusd(v8si acc, __m256i u, __m256i s) { return (v8si)_mm256_dpbusd_avx_epi32((__m256i)acc, u, s); }
int32_t hsum_i32(v8si v) { return avx2::Vec::hsum_i32((__m256i)v); }

// W8A8 rows: vpdpbusd multiplies u8 × s8, so the weights are offset to u8 by flipping their sign
// bit, w + 128 (one XOR per weight vector, shared by the MR rows of x), and 128 · Σ_k x[m, k]
// is taken back out per row of x. (Offsetting x instead needs Σ_k w per weight row: one more
// vpdpbusd per weight vector, which at batch 1 doubled the work.)
template <int MR>
[[gnu::noinline]] void w8a8_tile(const int8_t* x, const int32_t* xsum, int64_t K, const int8_t* w,
                                 int32_t dots[][kRowBlock]) {
  v8si acc[MR][kRowBlock];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) acc[i][r] = v8si{};
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  const int64_t body = K - K % kStep;
  for (int64_t k = 0; k < body; k += kStep) {
    // The rows kPrefetchRows ahead, a line at a time (as the AVX2 tile does).
    if (k % 64 == 0)
      for (int r = 0; r < kRowBlock; ++r) simd::prefetch_l2(w + (r + simd::kPrefetchRows) * K + k);
    __m256i wu[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r)
      wu[r] = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + r * K + k)), flip);
    for (int i = 0; i < MR; ++i) {
      const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i * K + k));
      for (int r = 0; r < kRowBlock; ++r) acc[i][r] = dpbusd(acc[i][r], wu[r], xv);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) {
      int32_t d = hsum_i32(acc[i][r]) - 128 * xsum[i];
      for (int64_t k = body; k < K; ++k) d += static_cast<int32_t>(x[i * K + k]) * w[r * K + k];
      dots[i][r] = d;
    }
}

}  // namespace

void linear_w8a8_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                      const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  // Σ_k x[m, k] over the vectorized part of each row (the tail is summed exactly apart).
  const int64_t body = s.K - s.K % kStep;
  std::vector<int32_t> xsum(static_cast<size_t>(s.M));
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t k = 0; k < body; ++k) xsum[m] += x[m * s.K + k];
  simd::w8a8_blocks<kMaxRows>(w, x_scale, x_scale_stride, w_scale, w_scale_stride, bias, s, y,
                              [&](auto mr, int64_t m, const int8_t* rows, int32_t dots[][kRowBlock]) {
                                w8a8_tile<decltype(mr)::value>(x + m * s.K, xsum.data() + m, s.K, rows, dots);
                              });
}

void linear_w4a8_tiled_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                            int64_t group_size, const float* scale, const float* shift, const float* bias,
                            LinearShape s, float* y) {
  simd::linear_w4a8_tiled<VnniVec>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
}

void linear_w4a8_gemv_bf16_params_vnni(const int8_t* x, const float* x_scale, int64_t x_scale_stride,
                                       const uint8_t* tiled, int64_t group_size, const bf16* scale, const bf16* shift,
                                       const float* bias, LinearShape s, float* y) {
  simd::linear_w4a8_tiled<VnniVec, bf16>(x, x_scale, x_scale_stride, tiled, group_size, scale, shift, bias, s, y);
}

}  // namespace quanto::kernels::avx2vnni
