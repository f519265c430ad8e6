// Weight-only linear kernels written once over a vector-traits type V (see quantize_simd.h for
// why everything here is a template of V). x and y are float; the op layer converts bf16/fp16.
//
// Two paths, both reading the quantized weights exactly once per call:
//  - GEMV (up to kGemvMaxRows rows of x): weights are decoded in registers and fed to FMAs
//    against every row of x, a few output channels at a time. Bandwidth-bound: the float weight
//    never exists in memory. The tiled 2/4-bit kernels live in qbits_gemv_simd.h.
//  - GEMM (prefill): weights are decoded once into small float panels and a register-blocked
//    micro-kernel reuses them across every row of x (gemm_simd.h).
// Results match the scalar references up to float summation order.
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/ref/linear_ref.h"
#include "kernels/ref/tiled_ref.h"
#include "kernels/x86/gemm_simd.h"
#include "kernels/x86/qbits_gemv_simd.h"
#include "kernels/x86/static_rows.h"

namespace quanto::kernels::simd {

// Rows of x from which the bf16-activation kernels (linear_avx512bf16.cpp) take their GEMM path,
// and the row block of the W8A8 kernels below.
inline constexpr int64_t kGemmMinRows = kGemvMaxRows + 1;
inline constexpr int kRowBlock = 4;

// ---- 8-bit weights [N, K] (int8 or float8), y = (x · w_n) * scale[n] + bias[n] ----
// A GEMV decoder turns weight bytes into floats: vec(p) for kWidth of them, one(byte) for a tail.
// For float8 its values are the weights times 2^-rebias_exp (a power of two, so products keep
// their rounding): x is then scaled per row (row_scale) and the dot products scaled back.

template <class V>
struct Int8Decoder {
  using Byte = int8_t;
  static constexpr bool kScaled = false;
  typename V::F vec(const int8_t* p) const { return V::load_i8(p); }
  float one(int8_t b) const { return static_cast<float>(b); }
};

// float8 as shifted bit patterns (fp8_bits_to_float, w · 2^-rebias_exp): a shift (by Shift,
// fp8_bits' shift, an immediate) and an AND per vector instead of a multiply and five integer ops.
template <class V, int Shift>
struct Fp8BitsDecoder {
  using Byte = uint8_t;
  static constexpr bool kScaled = true;
  Fp8Bits bits;
  typename V::F vec(const uint8_t* p) const { return V::template load_fp8_bits<Shift>(p, bits.mask); }
  float one(uint8_t b) const { return fp8_bits_to_float(b, bits); }
  int rebias_exp() const { return bits.rebias_exp; }
};

// MB rows of x (ldx apart) × NR weight rows: each weight vector is decoded once and multiplied
// against every row of x.
template <class V, int MB, int NR, class D>
[[gnu::noinline]] void bytes_dot_batch(const float* x, int64_t ldx, const typename D::Byte* w, int64_t K, const D& dec,
                     float dots[][NR]) {
  using F = typename V::F;
  F acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = V::zero();
  const int64_t body = K - K % V::kWidth;
  for (int64_t k = 0; k < body; k += V::kWidth) {
    if (k % 64 == 0)
      for (int r = 0; r < NR; ++r) prefetch_l2(w + (r + kPrefetchRows) * K + k);
    F d[NR];
    for (int r = 0; r < NR; ++r) d[r] = dec.vec(w + r * K + k);
    for (int m = 0; m < MB; ++m) {
      const F xv = V::load(x + m * ldx + k);
      for (int r = 0; r < NR; ++r) acc[m][r] = V::fma(d[r], xv, acc[m][r]);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) {
      float t = V::hsum(acc[m][r]);
      for (int64_t k = body; k < K; ++k) t += x[m * ldx + k] * dec.one(w[r * K + k]);
      dots[m][r] = t;
    }
}

// Exact float decoders for the GEMM panels (decoding cost is spread over every row of x there).
template <class V>
void decode_int8_row(const int8_t* row, int64_t count, float* out) {
  int64_t k = 0;
  for (; k + V::kWidth <= count; k += V::kWidth) V::store(out + k, V::load_i8(row + k));
  for (; k < count; ++k) out[k] = static_cast<float>(row[k]);
}
template <class V>
void decode_fp8_row(const uint8_t* row, int64_t count, Fp8Format format, float* out) {
  int64_t k = 0;
  for (; k + V::kWidth <= count; k += V::kWidth) V::store(out + k, V::load_fp8(row + k, format));
  for (; k < count; ++k) out[k] = fp8_to_float(row[k], format);
}

template <class V, class D, typename DecodeRow>
void linear_bytes(const float* x, const typename D::Byte* w, const D& dec, DecodeRow decode_row, const float* scale,
                  int64_t scale_stride, const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, M = s.M;
  auto emit = [&](int64_t m, int64_t n, float d) {
    const float out = d * scale[n * scale_stride];
    y[m * s.N + n] = bias ? out + bias[n] : out;
  };
  if (M > kGemvMaxRows) {
    gemm_blocked<V>(
        x, M, K, s.n_begin, s.n_end, WeightRows{w, K, 8},
        [&](int64_t n, int64_t k0, int64_t count, float* out) { decode_row(w + n * K + k0, count, out); }, emit);
    return;
  }
  std::vector<float> xs, post(static_cast<size_t>(M), 1.0f);
  const float* xv = x;
  if constexpr (D::kScaled) {
    xs.resize(static_cast<size_t>(M * K));
    for (int64_t m = 0; m < M; ++m) {
      const RowScale rs = row_scale<V>(x + m * K, K, dec.rebias_exp());
      post[m] = rs.post;
      for (int64_t k = 0; k < K; ++k) xs[m * K + k] = x[m * K + k] * rs.x_factor;
    }
    xv = xs.data();
  }
  auto run = [&](auto mb) {
    constexpr int MB = decltype(mb)::value, NR = MB == 1 ? 4 : batch_rows<V>(MB);
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) {
      float dots[MB][NR];
      bytes_dot_batch<V, MB, NR>(xv, K, w + n * K, K, dec, dots);
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) emit(m, n + r, dots[m][r] * post[m]);
    }
    for (; n < s.n_end; ++n) {
      float dots[MB][1];
      bytes_dot_batch<V, MB, 1>(xv, K, w + n * K, K, dec, dots);
      for (int m = 0; m < MB; ++m) emit(m, n, dots[m][0] * post[m]);
    }
  };
  with_static_rows<1, kGemvMaxRows>(M, run);
}

template <class V>
void linear_w8(const float* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
               LinearShape s, float* y) {
  linear_bytes<V>(x, w, Int8Decoder<V>{}, &decode_int8_row<V>, scale, scale_stride, bias, s, y);
}

template <class V>
void linear_fp8(const float* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                const float* bias, LinearShape s, float* y) {
  const auto decode_row = [format](const uint8_t* row, int64_t count, float* out) {
    decode_fp8_row<V>(row, count, format, out);
  };
  const Fp8Bits bits = fp8_bits(format);
  if (bits.shift == 20)  // e4m3fn, e4m3fnuz
    linear_bytes<V>(x, w, Fp8BitsDecoder<V, 20>{bits}, decode_row, scale, scale_stride, bias, s, y);
  else  // e5m2
    linear_bytes<V>(x, w, Fp8BitsDecoder<V, 21>{bits}, decode_row, scale, scale_stride, bias, s, y);
}

// ---- W8A8: int8 x [M, K] × int8 w [N, K], exact int32 sums, w8a8_output epilogue ----

// Runs tile(m, rows, dots) over kRowBlock weight rows at a time and every row of x, MR rows per
// tile, and writes y. rows_at(n0, nr, buf) returns kRowBlock rows of K weights starting at
// channel n0, the nr real ones followed by zero rows (buf: kRowBlock · K scratch bytes it may use).
template <int MR, typename RowsAt, typename Tile>
void w8a8_blocks_with(RowsAt rows_at, const float* x_scale, int64_t x_scale_stride, const float* w_scale,
                      int64_t w_scale_stride, const float* bias, LinearShape s, float* y, Tile tile) {
  std::vector<int8_t> buf(static_cast<size_t>(kRowBlock * s.K));
  for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kRowBlock) {
    const int64_t nr = std::min<int64_t>(kRowBlock, s.n_end - n0);
    const int8_t* rows = rows_at(n0, nr, buf.data());
    int32_t dots[MR][kRowBlock];
    auto emit = [&](int64_t m, int count) {
      for (int i = 0; i < count; ++i)
        for (int64_t r = 0; r < nr; ++r)
          y[(m + i) * s.N + n0 + r] = w8a8_output(dots[i][r], x_scale[(m + i) * x_scale_stride],
                                                  w_scale[(n0 + r) * w_scale_stride], bias, n0 + r);
    };
    int64_t m = 0;
    for (; m + MR <= s.M; m += MR) {
      tile(std::integral_constant<int, MR>{}, m, rows, dots);
      emit(m, MR);
    }
    for (; m < s.M; ++m) {
      tile(std::integral_constant<int, 1>{}, m, rows, dots);
      emit(m, 1);
    }
  }
}

// The same over row-major int8 weights [N, K] (zero-padded past n_end, so tiles always see full
// blocks).
template <int MR, typename Tile>
void w8a8_blocks(const int8_t* w, const float* x_scale, int64_t x_scale_stride, const float* w_scale,
                 int64_t w_scale_stride, const float* bias, LinearShape s, float* y, Tile tile) {
  auto rows_at = [&](int64_t n0, int64_t nr, int8_t* buf) -> const int8_t* {
    if (nr == kRowBlock) return w + n0 * s.K;
    std::fill(buf, buf + kRowBlock * s.K, int8_t{0});
    std::copy(w + n0 * s.K, w + (n0 + nr) * s.K, buf);
    return buf;
  };
  w8a8_blocks_with<MR>(rows_at, x_scale, x_scale_stride, w_scale, w_scale_stride, bias, s, y, tile);
}

template <class V, int MR>
void w8a8_tile(const int8_t* x, int64_t K, const int8_t* w, int32_t dots[][kRowBlock]) {
  typename V::I acc[MR][kRowBlock];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) acc[i][r] = V::zero_i();
  const int64_t body = K - K % V::kI8Step;
  for (int64_t k = 0; k < body; k += V::kI8Step) {
    // The rows kPrefetchRows ahead, a line at a time: with kRowBlock row streams the hardware
    // prefetcher alone leaves batch 1 short of the read bandwidth (as for the float GEMV).
    if (k % 64 == 0)
      for (int r = 0; r < kRowBlock; ++r) prefetch_l2(w + (r + kPrefetchRows) * K + k);
    typename V::I wv[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r) wv[r] = V::widen_i8(w + r * K + k);
    for (int i = 0; i < MR; ++i) {
      const typename V::I xv = V::widen_i8(x + i * K + k);
      for (int r = 0; r < kRowBlock; ++r) acc[i][r] = V::madd(acc[i][r], xv, wv[r]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) {
      int32_t d = V::hsum_i32(acc[i][r]);
      for (int64_t k = body; k < K; ++k) d += static_cast<int32_t>(x[i * K + k]) * w[r * K + k];
      dots[i][r] = d;
    }
}

template <class V>
void linear_w8a8(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                 const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  w8a8_blocks<V::kGemmRows>(w, x_scale, x_scale_stride, w_scale, w_scale_stride, bias, s, y,
                            [&](auto mr, int64_t m, const int8_t* rows, int32_t dots[][kRowBlock]) {
                              w8a8_tile<V, decltype(mr)::value>(x + m * s.K, s.K, rows, dots);
                            });
}

// W8A8 on the packed layout (kernels/ref/linear_ref.h) for ISAs without VNNI: kRowBlock rows
// are gathered back to row-major (an L1-sized buffer) and fed to the same tile as linear_w8a8.
template <class V>
void linear_w8a8_packed(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,
                        const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, bytes = w8a8_block_bytes(K);
  auto rows_at = [&](int64_t n0, int64_t nr, int8_t* buf) -> const int8_t* {
    for (int64_t r = 0; r < kRowBlock; ++r) {
      int8_t* dst = buf + r * K;
      if (r >= nr) {
        std::fill(dst, dst + K, int8_t{0});
        continue;
      }
      const int64_t n = n0 + r;
      const uint8_t* lane = packed + (n / kW8A8BlockN) * bytes + (n % kW8A8BlockN) * 4;
      for (int64_t k = 0; k < K; k += 4)
        for (int64_t i = 0; i < 4 && k + i < K; ++i) dst[k + i] = static_cast<int8_t>(lane[k * kW8A8BlockN + i]);
    }
    return buf;
  };
  w8a8_blocks_with<V::kGemmRows>(rows_at, x_scale, x_scale_stride, w_scale, w_scale_stride, bias, s, y,
                                 [&](auto mr, int64_t m, const int8_t* rows, int32_t dots[][kRowBlock]) {
                                   w8a8_tile<V, decltype(mr)::value>(x + m * s.K, s.K, rows, dots);
                                 });
}

// The batch-1 driver of the W4 kernels (float or bf16 activations): per row of x, its group
// sums, then blocks of kRowBlock output channels handed to
// dot_rows(std::integral_constant<int, NR>, x_row, tiled_rows, scale_rows, shift_rows, xsum, dots).
template <int Bits = 4, typename X, typename P, typename DotRows>
void w4_tiled_gemv(const X* x, const uint8_t* tiled, int64_t group_size, const P* scale, const P* shift,
                   const float* bias, LinearShape s, float* y, DotRows dot_rows) {
  const int64_t K = s.K, groups = K / group_size, row_bytes = K * Bits / 8;
  std::vector<float> xsum(static_cast<size_t>(groups));
  for (int64_t m = 0; m < s.M; ++m) {
    const X* xm = x + m * K;
    for (int64_t g = 0; g < groups; ++g) {
      float t = 0.0f;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) t += to_float(xm[k]);
      xsum[g] = t;
    }
    for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kRowBlock) {
      const int64_t nr = std::min<int64_t>(kRowBlock, s.n_end - n0);
      float dots[kRowBlock];
      const uint8_t* t = tiled + n0 * row_bytes;
      const P* sc = scale + n0 * groups;
      const P* sh = shift + n0 * groups;
      if (nr == kRowBlock) {
        dot_rows(std::integral_constant<int, kRowBlock>{}, xm, t, sc, sh, xsum.data(), dots);
      } else {
        for (int64_t r = 0; r < nr; ++r)
          dot_rows(std::integral_constant<int, 1>{}, xm, t + r * row_bytes, sc + r * groups, sh + r * groups,
                   xsum.data(), dots + r);
      }
      for (int64_t r = 0; r < nr; ++r) y[m * s.N + n0 + r] = bias ? dots[r] + bias[n0 + r] : dots[r];
    }
  }
}

// ---- W4 / W2, tiled layouts (kernels/ref/tiled_ref.h): w(n, k) = code * scale[n, g] - shift[n, g] ----

// One tiled row's codes [k0, k0 + count) as code · s_g − h_g (the reference's per-weight value),
// a tiled block (128 / Bits codes) at a time.
template <class V, int Bits>
void decode_tiled_row(const uint8_t* row, int64_t k0, int64_t count, int64_t group_size, const float* scale,
                      const float* shift, float* out) {
  constexpr int64_t kCodes = tile_block_codes(Bits);
  constexpr int kRegs = static_cast<int>(kCodes) / V::kWidth;
  for (int64_t k = k0, end = k0 + count; k < end;) {
    const int64_t g = k / group_size, group_end = std::min(end, (g + 1) * group_size);  // a division a group
    const typename V::F sv = V::set1(scale[g]), hv = V::set1(-shift[g]);
    for (; k < group_end; k += kCodes) {
      typename V::F codes[kRegs];
      if constexpr (Bits == 4) V::decode_u4_block(row + k / 2, codes);
      else V::decode_u2_block(row + k / 4, codes);
      for (int j = 0; j < kRegs; ++j) V::store(out + (k - k0) + j * V::kWidth, V::fma(codes[j], sv, hv));
    }
  }
}

template <class V, int Bits>
void linear_qbits_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                        const float* shift, const float* bias, LinearShape s, float* y) {
  if (s.M <= kGemvMaxRows && slot_gemv_supports<V, Bits>(group_size)) {
    linear_qbits_gemv<V, Bits>(x, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  // Prefill, and group sizes that are not whole tiled blocks (W2 groups of 32).
  const int64_t K = s.K, groups = K / group_size, row_bytes = tiled_row_bytes(Bits, K);
  gemm_blocked<V>(
      x, s.M, K, s.n_begin, s.n_end, WeightRows{tiled, row_bytes, Bits},
      [&](int64_t n, int64_t k0, int64_t count, float* out) {
        decode_tiled_row<V, Bits>(tiled + n * row_bytes, k0, count, group_size, scale + n * groups,
                                  shift + n * groups, out);
      },
      [&](int64_t m, int64_t n, float d) { y[m * s.N + n] = bias ? d + bias[n] : d; });
}

template <class V>
void linear_w4_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                     const float* shift, const float* bias, LinearShape s, float* y) {
  linear_qbits_tiled<V, 4>(x, tiled, group_size, scale, shift, bias, s, y);
}

// Batch 1 (s.M == 1) of the tiled 4-bit layout with bf16 x and a bf16 model's scales and shifts
// read in place (LinearW4GemvBf16ParamsFn): x converted once, then the float-x GEMV, whose
// results equal linear_w4_tiled's on the same values.
template <class V>
void linear_w4_gemv_bf16_params(const bf16* x, const uint8_t* tiled, int64_t group_size, const bf16* scale,
                                const bf16* shift, const float* bias, LinearShape s, float* y) {
  float* xf = thread_scratch<1>(static_cast<size_t>(s.K));
  bf16_to_floats<V>(x, s.K, xf);
  qbits_gemv_row<V, 4, bf16>(xf, tiled, group_size, scale, shift, bias, s, y);
}

template <class V>
void linear_w2_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                     const float* shift, const float* bias, LinearShape s, float* y) {
  linear_qbits_tiled<V, 2>(x, tiled, group_size, scale, shift, bias, s, y);
}

}  // namespace quanto::kernels::simd
