// Weight-only linear kernels written once over a vector-traits type V (see quantize_simd.h for
// why everything here is a template of V). x and y are float; the op layer converts bf16/fp16.
//
// Two paths, both reading the quantized weights exactly once per call:
//  - GEMV (fewer than kGemmMinRows rows of x): weights are decoded in registers and fed to FMAs
//    for kRowBlock output channels at a time, sharing each load of x. Bandwidth-bound: the float
//    weight never exists in memory.
//  - GEMM: kRowBlock weight rows are decoded once into a small float buffer (L1/L2-resident),
//    then a register-blocked micro-kernel (V::kGemmRows rows of x × kRowBlock channels) reuses
//    them across every row of x.
// Results match the scalar references up to float summation order.
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/ref/linear_ref.h"
#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels::simd {

inline constexpr int64_t kGemmMinRows = 4;
inline constexpr int kRowBlock = 4;

// Batch-1 paths read kRowBlock weight rows side by side; the hardware prefetcher alone kept one
// core well below its read bandwidth on weights larger than the LLC. Each row stream prefetches
// (into L2) the same offset kPrefetchRows rows ahead, once per 64-byte line.
inline constexpr int64_t kPrefetchRows = 16;
inline void prefetch_l2(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }

// dots[i][r] = x[i] · wbuf[r] for MR rows of x and kRowBlock rows of decoded weights.
template <class V, int MR>
void gemm_tile(const float* x, int64_t K, const float* wbuf, float dots[][kRowBlock]) {
  typename V::F acc[MR][kRowBlock];
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) acc[i][r] = V::zero();
  const int64_t body = K - K % V::kWidth;
  for (int64_t k = 0; k < body; k += V::kWidth) {
    typename V::F w[kRowBlock];
    for (int r = 0; r < kRowBlock; ++r) w[r] = V::load(wbuf + r * K + k);
    for (int i = 0; i < MR; ++i) {
      const typename V::F xv = V::load(x + i * K + k);
      for (int r = 0; r < kRowBlock; ++r) acc[i][r] = V::fma(xv, w[r], acc[i][r]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int r = 0; r < kRowBlock; ++r) {
      float d = V::hsum(acc[i][r]);
      for (int64_t k = body; k < K; ++k) d += x[i * K + k] * wbuf[r * K + k];
      dots[i][r] = d;
    }
}

// Runs the micro-kernel over every row of x; emit(m, r, dot) receives each result.
template <class V, typename Emit>
void gemm_rows(const float* x, int64_t M, int64_t K, const float* wbuf, Emit emit) {
  constexpr int MR = V::kGemmRows;
  float dots[MR][kRowBlock];
  int64_t m = 0;
  for (; m + MR <= M; m += MR) {
    gemm_tile<V, MR>(x + m * K, K, wbuf, dots);
    for (int i = 0; i < MR; ++i)
      for (int r = 0; r < kRowBlock; ++r) emit(m + i, r, dots[i][r]);
  }
  for (; m < M; ++m) {
    gemm_tile<V, 1>(x + m * K, K, wbuf, dots);
    for (int r = 0; r < kRowBlock; ++r) emit(m, r, dots[0][r]);
  }
}

// ---- 8-bit weights [N, K] (int8 or float8), y = (x · w_n) * scale[n] + bias[n] ----
// A decoder turns weight bytes into floats: vec(p) for kWidth of them, one(byte) for a tail.

template <class V>
struct Int8Decoder {
  using Byte = int8_t;
  typename V::F vec(const int8_t* p) const { return V::load_i8(p); }
  float one(int8_t b) const { return static_cast<float>(b); }
};

template <class V>
struct Fp8Decoder {
  using Byte = uint8_t;
  Fp8Format format;
  typename V::F vec(const uint8_t* p) const { return V::load_fp8(p, format); }
  float one(uint8_t b) const { return fp8_to_float(b, format); }
};

template <class V, int NR, class D>
void bytes_dot_rows(const float* x, const typename D::Byte* w, int64_t K, const D& dec, float* dots) {
  typename V::F acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = V::zero();
  const int64_t body = K - K % V::kWidth;
  for (int64_t k = 0; k < body; k += V::kWidth) {
    if (k % 64 == 0)
      for (int r = 0; r < NR; ++r) prefetch_l2(w + (r + kPrefetchRows) * K + k);
    const typename V::F xv = V::load(x + k);
    for (int r = 0; r < NR; ++r) acc[r] = V::fma(dec.vec(w + r * K + k), xv, acc[r]);
  }
  for (int r = 0; r < NR; ++r) {
    float d = V::hsum(acc[r]);
    for (int64_t k = body; k < K; ++k) d += x[k] * dec.one(w[r * K + k]);
    dots[r] = d;
  }
}

template <class V, class D>
void linear_bytes(const float* x, const typename D::Byte* w, const D& dec, const float* scale, int64_t scale_stride,
                  const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K;
  auto emit = [&](int64_t m, int64_t n, float d) {
    const float out = d * scale[n * scale_stride];
    y[m * s.N + n] = bias ? out + bias[n] : out;
  };
  if (s.M < kGemmMinRows) {
    for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kRowBlock) {
      const int64_t nr = std::min<int64_t>(kRowBlock, s.n_end - n0);
      for (int64_t m = 0; m < s.M; ++m) {
        float dots[kRowBlock];
        if (nr == kRowBlock) bytes_dot_rows<V, kRowBlock>(x + m * K, w + n0 * K, K, dec, dots);
        else
          for (int64_t r = 0; r < nr; ++r) bytes_dot_rows<V, 1>(x + m * K, w + (n0 + r) * K, K, dec, dots + r);
        for (int64_t r = 0; r < nr; ++r) emit(m, n0 + r, dots[r]);
      }
    }
    return;
  }
  std::vector<float> wbuf(static_cast<size_t>(kRowBlock * K));
  const int64_t body = K - K % V::kWidth;
  for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kRowBlock) {
    const int64_t nr = std::min<int64_t>(kRowBlock, s.n_end - n0);
    std::fill(wbuf.begin(), wbuf.end(), 0.0f);
    for (int64_t r = 0; r < nr; ++r) {
      const typename D::Byte* row = w + (n0 + r) * K;
      float* dst = wbuf.data() + r * K;
      for (int64_t k = 0; k < body; k += V::kWidth) V::store(dst + k, dec.vec(row + k));
      for (int64_t k = body; k < K; ++k) dst[k] = dec.one(row[k]);
    }
    gemm_rows<V>(x, s.M, K, wbuf.data(), [&](int64_t m, int r, float d) {
      if (r < nr) emit(m, n0 + r, d);
    });
  }
}

template <class V>
void linear_w8(const float* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
               LinearShape s, float* y) {
  linear_bytes<V>(x, w, Int8Decoder<V>{}, scale, scale_stride, bias, s, y);
}

template <class V>
void linear_fp8(const float* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                const float* bias, LinearShape s, float* y) {
  linear_bytes<V>(x, w, Fp8Decoder<V>{format}, scale, scale_stride, bias, s, y);
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

// Σ_i a_i b_i, kWidth at a time (a serial scalar chain costs ~4 cycles an element).
template <class V>
float dot(const float* a, const float* b, int64_t n) {
  typename V::F acc = V::zero();
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) acc = V::fma(V::load(a + i), V::load(b + i), acc);
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return V::hsum(acc) + tail;
}

// The batch-1 driver of the W4 kernels (float or bf16 activations): per row of x, its group
// sums, then blocks of kRowBlock output channels handed to
// dot_rows(std::integral_constant<int, NR>, x_row, tiled_rows, scale_rows, shift_rows, xsum, dots).
template <int Bits = 4, typename X, typename DotRows>
void w4_tiled_gemv(const X* x, const uint8_t* tiled, int64_t group_size, const float* scale, const float* shift,
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
      const float* sc = scale + n0 * groups;
      const float* sh = shift + n0 * groups;
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
// Both put a block of 128 / Bits codes in 16 bytes, in order once decoded.

template <class V, int Bits>
struct TiledBlock {
  static constexpr int64_t kCodes = 128 / Bits;
  static constexpr int kRegs = static_cast<int>(kCodes) / V::kWidth;
  static void decode(const uint8_t* p, typename V::F* out) {
    if constexpr (Bits == 4) V::decode_u4_block(p, out);
    else V::decode_u2_block(p, out);
  }
};

template <class V, int Bits, int NR>
void qbits_dot_rows(const float* x, const uint8_t* tiled, int64_t K, int64_t group_size, const float* scale,
                    const float* shift, const float* xsum, float* dots) {
  using B = TiledBlock<V, Bits>;
  const int64_t groups = K / group_size, row_bytes = K * Bits / 8;
  typename V::F acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = V::zero();
  for (int64_t g = 0; g < groups; ++g) {
    typename V::F group_acc[NR];
    for (int r = 0; r < NR; ++r) group_acc[r] = V::zero();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += B::kCodes) {
      if (k * Bits % 512 == 0)  // a new 64-byte line of each row
        for (int r = 0; r < NR; ++r) prefetch_l2(tiled + (r + kPrefetchRows) * row_bytes + k * Bits / 8);
      typename V::F xv[B::kRegs];
      for (int j = 0; j < B::kRegs; ++j) xv[j] = V::load(x + k + j * V::kWidth);
      for (int r = 0; r < NR; ++r) {
        typename V::F codes[B::kRegs];
        B::decode(tiled + r * row_bytes + k * Bits / 8, codes);
        for (int j = 0; j < B::kRegs; ++j) group_acc[r] = V::fma(codes[j], xv[j], group_acc[r]);
      }
    }
    for (int r = 0; r < NR; ++r) acc[r] = V::fma(group_acc[r], V::set1(scale[r * groups + g]), acc[r]);
  }
  // Σ_k x_k (c_k s_g - h_g) = Σ_g s_g Σ_k x_k c_k - Σ_g h_g Σ_k x_k: the shift needs only x's group sums.
  for (int r = 0; r < NR; ++r) dots[r] = V::hsum(acc[r]) - dot<V>(shift + r * groups, xsum, groups);
}

template <class V, int Bits>
void linear_qbits_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                        const float* shift, const float* bias, LinearShape s, float* y) {
  using B = TiledBlock<V, Bits>;
  const int64_t K = s.K, groups = K / group_size, row_bytes = K * Bits / 8;
  auto emit = [&](int64_t m, int64_t n, float d) { y[m * s.N + n] = bias ? d + bias[n] : d; };
  if (s.M < kGemmMinRows) {
    w4_tiled_gemv<Bits>(x, tiled, group_size, scale, shift, bias, s, y,
                        [&](auto nr, const float* xm, const uint8_t* t, const float* sc, const float* sh,
                            const float* xsum, float* dots) {
                          qbits_dot_rows<V, Bits, decltype(nr)::value>(xm, t, K, group_size, sc, sh, xsum, dots);
                        });
    return;
  }
  std::vector<float> wbuf(static_cast<size_t>(kRowBlock * K));
  for (int64_t n0 = s.n_begin; n0 < s.n_end; n0 += kRowBlock) {
    const int64_t nr = std::min<int64_t>(kRowBlock, s.n_end - n0);
    std::fill(wbuf.begin(), wbuf.end(), 0.0f);
    for (int64_t r = 0; r < nr; ++r) {
      const int64_t n = n0 + r;
      float* dst = wbuf.data() + r * K;
      for (int64_t k = 0; k < K; k += B::kCodes) {
        const int64_t g = n * groups + k / group_size;
        const typename V::F sv = V::set1(scale[g]), hv = V::set1(-shift[g]);
        typename V::F codes[B::kRegs];
        B::decode(tiled + n * row_bytes + k * Bits / 8, codes);
        for (int j = 0; j < B::kRegs; ++j) V::store(dst + k + j * V::kWidth, V::fma(codes[j], sv, hv));
      }
    }
    gemm_rows<V>(x, s.M, K, wbuf.data(), [&](int64_t m, int r, float d) {
      if (r < nr) emit(m, n0 + r, d);
    });
  }
}

template <class V>
void linear_w4_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                     const float* shift, const float* bias, LinearShape s, float* y) {
  linear_qbits_tiled<V, 4>(x, tiled, group_size, scale, shift, bias, s, y);
}

template <class V>
void linear_w2_tiled(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                     const float* shift, const float* bias, LinearShape s, float* y) {
  linear_qbits_tiled<V, 2>(x, tiled, group_size, scale, shift, bias, s, y);
}

}  // namespace quanto::kernels::simd
