// Decode attention, written once and compiled by each ISA translation unit with its own flags
// (x86/attention_avx2.cpp, x86/attention_avx512.cpp) and vector traits (Vec: vec_avx2.h,
// vec_avx512.h); the softmax loops vectorised by `omp simd` as in hqq_impl.h (-fopenmp-simd
// -fno-trapping-math; everything `static inline`, so no wider-ISA copy leaks into another unit
// through the linker). Contract: kernels/ref/attention_ref.h.
//
// Per work item: the positions kept by any query head of the group are listed once; each key
// row is read once (converted in registers) and dotted with every query head of the group, up
// to kHeadBlock heads a pass (grouped-query attention reads the cache once per kv head, not once
// per query head); softmax with the polynomial exp; each value row is accumulated into every
// head's sums the same way.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/ref/attention_ref.h"
#include "kernels/ref/poly_math.h"
#include "kernels/x86/static_rows.h"

namespace quanto::kernels::attention_detail {

// Query heads of a group handled together, their accumulators held in registers (16 zmm or 8
// ymm of them), and key positions per dot-product block.
template <typename Vec>
inline constexpr int kHeadBlock = Vec::kWidth >= 16 ? 4 : 2;
inline constexpr int kPosBlock = 4;

// dots[h][p] = qf_h · k_p over D values, for HB heads (qf rows D apart) and kPosBlock key rows:
// each key vector is converted once for all HB heads, and the four dots of a head end in one
// hsum4 (a dot product a head and a position at a time converted each row once per head and
// paid a full horizontal sum per dot, most of the attention's time on SmolLM2).
template <typename Vec, int HB, typename T>
static inline void dot_block(const float* qf, int64_t D, const T* const (&rows)[kPosBlock],
                             float (&dots)[HB][kPosBlock]) {
  constexpr int W = Vec::kWidth;
  typename Vec::F acc[HB][kPosBlock];
#pragma GCC unroll 16
  for (int h = 0; h < HB; ++h)
#pragma GCC unroll 16
    for (int p = 0; p < kPosBlock; ++p) acc[h][p] = Vec::zero();
  int64_t d = 0;
  for (; d + W <= D; d += W) {
    typename Vec::F kv[kPosBlock];
#pragma GCC unroll 16
    for (int p = 0; p < kPosBlock; ++p) kv[p] = Vec::load(rows[p] + d);
#pragma GCC unroll 16
    for (int h = 0; h < HB; ++h) {
      const typename Vec::F qv = Vec::load(qf + h * D + d);
#pragma GCC unroll 16
      for (int p = 0; p < kPosBlock; ++p) acc[h][p] = Vec::fma(qv, kv[p], acc[h][p]);
    }
  }
#pragma GCC unroll 16
  for (int h = 0; h < HB; ++h) {
    const auto sums = Vec::hsum4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);  // four floats
    std::memcpy(dots[h], &sums, sizeof(dots[h]));
    for (int64_t e = d; e < D; ++e)
#pragma GCC unroll 16
      for (int p = 0; p < kPosBlock; ++p) dots[h][p] += qf[h * D + e] * to_float(rows[p][e]);
  }
}

// out_h[0, Dv) = Σ_i p_h[i] · v_i[0, Dv) for HB heads (p rows p_stride apart, out rows out_stride
// apart) over the kept positions' value rows (v + kept[i] · v_l): each value vector is converted
// once for all HB heads, four vectors of every head's output held in registers across the
// positions (accumulating row by row into memory made each position wait for the previous one's
// store).
template <typename Vec, int HB, typename T>
static inline void weighted_rows(const float* p, int64_t p_stride, const T* v, const int64_t* kept, int64_t n,
                                 int64_t v_l, int64_t Dv, float* out, int64_t out_stride) {
  constexpr int W = Vec::kWidth, R = 4;
  int64_t e = 0;
  for (; e + R * W <= Dv; e += R * W) {
    typename Vec::F acc[HB][R];
#pragma GCC unroll 16
    for (int h = 0; h < HB; ++h)
#pragma GCC unroll 16
      for (int j = 0; j < R; ++j) acc[h][j] = Vec::zero();
    for (int64_t i = 0; i < n; ++i) {
      const T* vr = v + kept[i] * v_l + e;
      typename Vec::F vv[R];
#pragma GCC unroll 16
      for (int j = 0; j < R; ++j) vv[j] = Vec::load(vr + j * W);
#pragma GCC unroll 16
      for (int h = 0; h < HB; ++h) {
        const typename Vec::F pv = Vec::set1(p[h * p_stride + i]);
#pragma GCC unroll 16
        for (int j = 0; j < R; ++j) acc[h][j] = Vec::fma(pv, vv[j], acc[h][j]);
      }
    }
#pragma GCC unroll 16
    for (int h = 0; h < HB; ++h)
#pragma GCC unroll 16
      for (int j = 0; j < R; ++j) Vec::store(out + h * out_stride + e + j * W, acc[h][j]);
  }
  for (; e + W <= Dv; e += W) {
    typename Vec::F acc[HB];
#pragma GCC unroll 16
    for (int h = 0; h < HB; ++h) acc[h] = Vec::zero();
    for (int64_t i = 0; i < n; ++i) {
      const typename Vec::F vv = Vec::load(v + kept[i] * v_l + e);
#pragma GCC unroll 16
      for (int h = 0; h < HB; ++h) acc[h] = Vec::fma(Vec::set1(p[h * p_stride + i]), vv, acc[h]);
    }
#pragma GCC unroll 16
    for (int h = 0; h < HB; ++h) Vec::store(out + h * out_stride + e, acc[h]);
  }
  for (; e < Dv; ++e)
#pragma GCC unroll 16
    for (int h = 0; h < HB; ++h) {
      float a = 0.0f;
      for (int64_t i = 0; i < n; ++i) a += p[h * p_stride + i] * to_float(v[kept[i] * v_l + e]);
      out[h * out_stride + e] = a;
    }
}

// The largest of n scores (-inf for none; a NaN score makes the output NaN through its exp
// whatever this returns). GCC left an `omp simd` max reduction a scalar chain, ~6% of the
// attention's time.
template <typename Vec>
static inline float max_of(const float* a, int64_t n) {
  constexpr int W = Vec::kWidth;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  typename Vec::F m = Vec::set1(kNegInf);
  int64_t i = 0;
  for (; i + W <= n; i += W) m = Vec::max(m, Vec::load(a + i));
  float mx = Vec::reduce_max(m);
  for (; i < n; ++i) mx = std::max(mx, a[i]);
  return mx;
}

// f(r0, std::integral_constant<int, HB>{}) over the group's query heads in blocks of up to
// kHeadBlock, r0 the block's first head.
template <typename Vec, class F>
static inline void over_head_blocks(int64_t group, F&& f) {
  for (int64_t r0 = 0; r0 < group; r0 += kHeadBlock<Vec>)
    simd::with_static_rows<1, kHeadBlock<Vec>>(std::min<int64_t>(kHeadBlock<Vec>, group - r0),
                                               [&](auto hb) { f(r0, hb); });
}

template <typename Vec, typename T>
static inline void decode_attention_impl(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask,
                                         float scale, const DecodeAttentionShape& s, int64_t item_begin,
                                         int64_t item_end, float* partial) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t group = s.group(), chunks = s.chunks(), D = s.head_dim, Dv = s.v_dim, C = s.chunk_len;
  // Whether the masks differ between the query heads of a group (then each head has its own -inf).
  const bool per_head = (mask.keep && mask.keep_h != 0) || (mask.bias && mask.bias_h != 0);
  std::vector<float> qf(static_cast<size_t>(group * D));
  std::vector<float> scores(static_cast<size_t>(group * C)), add(static_cast<size_t>(C));
  std::vector<int64_t> kept(static_cast<size_t>(C));
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t c = item % chunks, bg = item / chunks, b = bg / s.kv_heads, g = bg % s.kv_heads;
    const int64_t l0 = c * C, l1 = std::min(s.kv_len, l0 + C), h0 = g * group;
    for (int64_t r = 0; r < group; ++r) {
      const T* qr = q + b * s.q_b + (h0 + r) * s.q_h;
      float* dst = qf.data() + r * D;
#pragma omp simd
      for (int64_t d = 0; d < D; ++d) dst[d] = to_float(qr[d]) * scale;
    }
    // Positions kept by at least one head of the group; add[] holds the shared additive term.
    int64_t n = 0;
    if (!per_head && mask.bias == nullptr) {  // a shared boolean mask or none: branch-free, term 0
      const uint8_t* keep = mask.keep ? mask.keep + b * mask.keep_b + h0 * mask.keep_h : nullptr;
      for (int64_t l = l0; l < l1; ++l) {
        kept[static_cast<size_t>(n)] = l;
        add[static_cast<size_t>(n)] = 0.0f;
        n += keep == nullptr || keep[l * mask.keep_l] != 0;
      }
    } else {
      for (int64_t l = l0; l < l1; ++l) {
        float term = kNegInf;
        for (int64_t r = 0; r < (per_head ? group : 1) && term == kNegInf; ++r) term = mask.term(b, h0 + r, l);
        if (term == kNegInf) continue;
        kept[static_cast<size_t>(n)] = l;
        add[static_cast<size_t>(n)] = term;
        ++n;
      }
    }
    // Scores, kPosBlock kept positions and up to kHeadBlock heads at a time; a short last block
    // repeats its last row and drops the extra dots.
    const T* kb = k + b * s.k_b + g * s.k_h;
    over_head_blocks<Vec>(group, [&](int64_t r0, auto hb) {
      constexpr int HB = decltype(hb)::value;
      for (int64_t i0 = 0; i0 < n; i0 += kPosBlock) {
        const T* rows[kPosBlock];
#pragma GCC unroll 16
        for (int p = 0; p < kPosBlock; ++p)
          rows[p] = kb + kept[static_cast<size_t>(std::min(i0 + p, n - 1))] * s.k_l;
        float dots[HB][kPosBlock];
        dot_block<Vec, HB>(qf.data() + r0 * D, D, rows, dots);
        const int64_t np = std::min<int64_t>(kPosBlock, n - i0);
#pragma GCC unroll 16
        for (int h = 0; h < HB; ++h) {
          float* dst = scores.data() + (r0 + h) * C + i0;
          if (!per_head) {  // kept positions have a finite (or NaN) shared term
            for (int64_t p = 0; p < np; ++p) dst[p] = dots[h][p] + add[static_cast<size_t>(i0 + p)];
            continue;
          }
          for (int64_t p = 0; p < np; ++p) {
            const float term = mask.term(b, h0 + r0 + h, kept[static_cast<size_t>(i0 + p)]);
            dst[p] = term == kNegInf ? kNegInf : dots[h][p] + term;
          }
        }
      }
    });
    float* out = partial + item * s.partial_floats();
    const int64_t out_stride = 2 + Dv;
    for (int64_t r = 0; r < group; ++r) {
      float* sc = scores.data() + r * C;
      const float mx = max_of<Vec>(sc, n);
      float sum = 0.0f;
      if (mx != kNegInf) {
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < n; ++i) {
          const float p = sc[i] == kNegInf ? 0.0f : exp_clamped(sc[i] - mx);
          sc[i] = p;
          sum += p;
        }
      } else {
        std::fill(sc, sc + n, 0.0f);
      }
      out[r * out_stride] = mx;
      out[r * out_stride + 1] = sum;
    }
    over_head_blocks<Vec>(group, [&](int64_t r0, auto hb) {
      weighted_rows<Vec, decltype(hb)::value>(scores.data() + r0 * C, C, v + b * s.v_b + g * s.v_h, kept.data(), n,
                                              s.v_l, Dv, out + r0 * out_stride + 2, out_stride);
    });
  }
}

}  // namespace quanto::kernels::attention_detail

// Defines decode_attention<float / bf16> in the ISA namespace NS (kernels/x86/attention_x86.h)
// with that namespace's vector traits NS::Vec, one line per translation unit.
#define QUANTO_DEFINE_DECODE_ATTENTION(NS)                                                                  \
  namespace quanto::kernels::NS {                                                                         \
  template <typename T>                                                                                   \
  void decode_attention(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,  \
                        const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end,          \
                        float* partial) {                                                                 \
    attention_detail::decode_attention_impl<Vec>(q, k, v, mask, scale, shape, item_begin, item_end, partial);  \
  }                                                                                                       \
  template void decode_attention<float>(const float*, const float*, const float*, const DecodeAttentionMask&, \
                                        float, const DecodeAttentionShape&, int64_t, int64_t, float*);    \
  template void decode_attention<bf16>(const bf16*, const bf16*, const bf16*, const DecodeAttentionMask&,  \
                                       float, const DecodeAttentionShape&, int64_t, int64_t, float*);     \
  }
