// Decode attention, written once and compiled by each ISA translation unit with its own flags
// (x86/attention_avx2.cpp, x86/attention_avx512.cpp) and vector traits (Vec: vec_avx2.h,
// vec_avx512.h); the softmax loops vectorised by `omp simd` as in hqq_impl.h (-fopenmp-simd
// -fno-trapping-math; everything `static inline`, so no wider-ISA copy leaks into another unit
// through the linker). Contract: kernels/ref/attention_ref.h.
//
// Per work item: the positions kept by any query head of the group are listed once; each key
// row is read once (converted in registers) and dotted with every query head of the group
// (grouped-query attention reads the cache once per kv head, not once per query head); softmax
// with the polynomial exp; each value row is accumulated into every head's sums the same way.
// The dot products use Vec's shuffle-based horizontal sum: an `omp simd` reduction ended each
// one with 16 dependent scalar adds through the stack, ~3/4 of a SmolLM2 decode step's attention.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels/numeric.h"
#include "kernels/ref/attention_ref.h"
#include "kernels/ref/poly_math.h"

namespace quanto::kernels::attention_detail {

// a · b over n values (a in float, b a cache row): whole vectors, then a scalar tail.
template <typename Vec, typename T>
static inline float dot_row(const float* a, const T* b, int64_t n) {
  constexpr int W = Vec::kWidth;
  typename Vec::F acc = Vec::zero();
  int64_t i = 0;
  for (; i + W <= n; i += W) acc = Vec::fma(Vec::load(a + i), Vec::load(b + i), acc);
  float sum = Vec::hsum(acc);
  for (; i < n; ++i) sum += a[i] * to_float(b[i]);
  return sum;
}

// out[0, Dv) = Σ_i p[i] · v_i[0, Dv) over the kept positions' value rows (v + kept[i] · v_l), four
// vectors of out at a time held in registers across the positions: accumulating row by row into
// memory made each position wait for the previous one's store (~1/3 of the attention's time).
template <typename Vec, typename T>
static inline void weighted_rows(const float* p, const T* v, const int64_t* kept, int64_t n, int64_t v_l,
                                 int64_t Dv, float* out) {
  constexpr int W = Vec::kWidth;
  int64_t e = 0;
  for (; e + 4 * W <= Dv; e += 4 * W) {
    typename Vec::F a0 = Vec::zero(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < n; ++i) {
      const T* vr = v + kept[i] * v_l + e;
      const typename Vec::F pv = Vec::set1(p[i]);
      a0 = Vec::fma(pv, Vec::load(vr), a0);
      a1 = Vec::fma(pv, Vec::load(vr + W), a1);
      a2 = Vec::fma(pv, Vec::load(vr + 2 * W), a2);
      a3 = Vec::fma(pv, Vec::load(vr + 3 * W), a3);
    }
    Vec::store(out + e, a0);
    Vec::store(out + e + W, a1);
    Vec::store(out + e + 2 * W, a2);
    Vec::store(out + e + 3 * W, a3);
  }
  for (; e + W <= Dv; e += W) {
    typename Vec::F a = Vec::zero();
    for (int64_t i = 0; i < n; ++i) a = Vec::fma(Vec::set1(p[i]), Vec::load(v + kept[i] * v_l + e), a);
    Vec::store(out + e, a);
  }
  for (; e < Dv; ++e) {
    float a = 0.0f;
    for (int64_t i = 0; i < n; ++i) a += p[i] * to_float(v[kept[i] * v_l + e]);
    out[e] = a;
  }
}

// The additive term of query head h at position l: -inf where masked.
static inline float mask_term(const DecodeAttentionMask& m, int64_t b, int64_t h, int64_t l) {
  if (m.keep && !m.keep[b * m.keep_b + h * m.keep_h + l * m.keep_l]) return -std::numeric_limits<float>::infinity();
  return m.bias ? m.bias[b * m.bias_b + h * m.bias_h + l * m.bias_l] : 0.0f;
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
    for (int64_t l = l0; l < l1; ++l) {
      float term = kNegInf;
      for (int64_t r = 0; r < (per_head ? group : 1) && term == kNegInf; ++r) term = mask_term(mask, b, h0 + r, l);
      if (term == kNegInf) continue;
      kept[static_cast<size_t>(n)] = l;
      add[static_cast<size_t>(n)] = term;
      ++n;
    }
    const T* kb = k + b * s.k_b + g * s.k_h;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t l = kept[static_cast<size_t>(i)];
      const T* kr = kb + l * s.k_l;
      for (int64_t r = 0; r < group; ++r) {
        const float term = per_head ? mask_term(mask, b, h0 + r, l) : add[static_cast<size_t>(i)];
        scores[static_cast<size_t>(r * C + i)] =
            term == kNegInf ? kNegInf : dot_row<Vec>(qf.data() + r * D, kr, D) + term;
      }
    }
    float* out = partial + item * s.partial_floats();
    for (int64_t r = 0; r < group; ++r) {
      float* sc = scores.data() + r * C;
      float mx = kNegInf;
#pragma omp simd reduction(max : mx)
      for (int64_t i = 0; i < n; ++i) mx = std::max(mx, sc[i]);
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
      float* o = out + r * (2 + Dv);
      o[0] = mx;
      o[1] = sum;
      weighted_rows<Vec>(sc, v + b * s.v_b + g * s.v_h, kept.data(), n, s.v_l, Dv, o + 2);
    }
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
