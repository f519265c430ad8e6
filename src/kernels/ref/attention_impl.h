// Decode attention, written once and compiled by each ISA translation unit with its own flags
// (x86/attention_avx2.cpp, x86/attention_avx512.cpp), the loops vectorised by `omp simd` as in
// hqq_impl.h (-fopenmp-simd -fno-trapping-math; everything `static inline`, so no wider-ISA copy
// leaks into another unit through the linker). Contract: kernels/ref/attention_ref.h.
//
// Per work item: the positions kept by any query head of the group are listed once; each key
// row is converted to float once and dotted with every query head of the group (grouped-query
// attention reads the cache once per kv head, not once per query head); softmax with the
// polynomial exp; each value row is converted once and accumulated into every head's sums.
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

// p[0, n) as float: p itself for float, else converted into buf.
template <typename T>
static inline const float* row_as_float(const T* p, int64_t n, float* buf) {
  if constexpr (std::is_same_v<T, float>) {
    (void)n, (void)buf;
    return p;
  } else {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) buf[i] = to_float(p[i]);
    return buf;
  }
}

static inline float dot(const float* a, const float* b, int64_t n) {
  float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// The additive term of query head h at position l: -inf where masked.
static inline float mask_term(const DecodeAttentionMask& m, int64_t b, int64_t h, int64_t l) {
  if (m.keep && !m.keep[b * m.keep_b + h * m.keep_h + l * m.keep_l]) return -std::numeric_limits<float>::infinity();
  return m.bias ? m.bias[b * m.bias_b + h * m.bias_h + l * m.bias_l] : 0.0f;
}

template <typename T>
static inline void decode_attention_impl(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask,
                                         float scale, const DecodeAttentionShape& s, int64_t item_begin,
                                         int64_t item_end, float* partial) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int64_t group = s.group(), chunks = s.chunks(), D = s.head_dim, Dv = s.v_dim, C = s.chunk_len;
  // Whether the masks differ between the query heads of a group (then each head has its own -inf).
  const bool per_head = (mask.keep && mask.keep_h != 0) || (mask.bias && mask.bias_h != 0);
  std::vector<float> qf(static_cast<size_t>(group * D)), row(static_cast<size_t>(std::max(D, Dv)));
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
      const float* kr = row_as_float(kb + l * s.k_l, D, row.data());
      for (int64_t r = 0; r < group; ++r) {
        const float term = per_head ? mask_term(mask, b, h0 + r, l) : add[static_cast<size_t>(i)];
        scores[static_cast<size_t>(r * C + i)] = term == kNegInf ? kNegInf : dot(qf.data() + r * D, kr, D) + term;
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
      std::fill(o + 2, o + 2 + Dv, 0.0f);
    }
    const T* vb = v + b * s.v_b + g * s.v_h;
    for (int64_t i = 0; i < n; ++i) {
      const float* vr = row_as_float(vb + kept[static_cast<size_t>(i)] * s.v_l, Dv, row.data());
      for (int64_t r = 0; r < group; ++r) {
        const float p = scores[static_cast<size_t>(r * C + i)];
        float* acc = out + r * (2 + Dv) + 2;
#pragma omp simd
        for (int64_t e = 0; e < Dv; ++e) acc[e] += p * vr[e];
      }
    }
  }
}

}  // namespace quanto::kernels::attention_detail

// Defines decode_attention<float / bf16> in the ISA namespace NS (kernels/x86/attention_x86.h),
// one line per translation unit.
#define QUANTO_DEFINE_DECODE_ATTENTION(NS)                                                                  \
  namespace quanto::kernels::NS {                                                                         \
  template <typename T>                                                                                   \
  void decode_attention(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,  \
                        const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end,          \
                        float* partial) {                                                                 \
    attention_detail::decode_attention_impl(q, k, v, mask, scale, shape, item_begin, item_end, partial);  \
  }                                                                                                       \
  template void decode_attention<float>(const float*, const float*, const float*, const DecodeAttentionMask&, \
                                        float, const DecodeAttentionShape&, int64_t, int64_t, float*);    \
  template void decode_attention<bf16>(const bf16*, const bf16*, const bf16*, const DecodeAttentionMask&,  \
                                       float, const DecodeAttentionShape&, int64_t, int64_t, float*);     \
  }
