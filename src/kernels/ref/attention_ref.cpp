// Reference decode attention (contract: kernels/ref/attention_ref.h) and the chunk merge.
#include "kernels/ref/attention_ref.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace quanto::kernels {

template <typename T>
void decode_attention_ref(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,
                          const DecodeAttentionShape& s, int64_t item_begin, int64_t item_end, float* partial) {
  const int64_t group = s.group(), chunks = s.chunks();
  std::vector<float> scores(static_cast<size_t>(s.chunk_len));
  for (int64_t item = item_begin; item < item_end; ++item) {
    const int64_t c = item % chunks, bg = item / chunks, b = bg / s.kv_heads, g = bg % s.kv_heads;
    const int64_t l0 = c * s.chunk_len, l1 = std::min(s.kv_len, l0 + s.chunk_len);
    for (int64_t r = 0; r < group; ++r) {
      const int64_t h = g * group + r;
      float* out = partial + item * s.partial_floats() + r * (2 + s.v_dim);
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t l = l0; l < l1; ++l) {
        float& sc = scores[static_cast<size_t>(l - l0)];
        sc = -std::numeric_limits<float>::infinity();
        if (mask.keep && !mask.keep[b * mask.keep_b + h * mask.keep_h + l * mask.keep_l]) continue;
        const float add = mask.bias ? mask.bias[b * mask.bias_b + h * mask.bias_h + l * mask.bias_l] : 0.0f;
        if (add == -std::numeric_limits<float>::infinity()) continue;
        float dot = 0.0f;
        for (int64_t d = 0; d < s.head_dim; ++d)
          dot += to_float(q[b * s.q_b + h * s.q_h + d]) * to_float(k[b * s.k_b + g * s.k_h + l * s.k_l + d]);
        sc = dot * scale + add;
        mx = std::max(mx, sc);
      }
      float sum = 0.0f;
      for (int64_t e = 0; e < s.v_dim; ++e) out[2 + e] = 0.0f;
      for (int64_t l = l0; l < l1; ++l) {
        const float sc = scores[static_cast<size_t>(l - l0)];
        if (sc == -std::numeric_limits<float>::infinity()) continue;
        const float p = std::exp(sc - mx);
        sum += p;
        for (int64_t e = 0; e < s.v_dim; ++e) out[2 + e] += p * to_float(v[b * s.v_b + g * s.v_h + l * s.v_l + e]);
      }
      out[0] = mx;
      out[1] = sum;
    }
  }
}

template <typename T>
void decode_attention_merge(const float* partial, const DecodeAttentionShape& s, T* out) {
  const int64_t group = s.group(), chunks = s.chunks(), stride = s.partial_floats();
  std::vector<float> acc(static_cast<size_t>(s.v_dim));
  for (int64_t bg = 0; bg < s.batch * s.kv_heads; ++bg) {
    for (int64_t r = 0; r < group; ++r) {
      const float* first = partial + bg * chunks * stride + r * (2 + s.v_dim);
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t c = 0; c < chunks; ++c)
        if (first[c * stride + 1] != 0.0f) mx = std::max(mx, first[c * stride]);
      float total = 0.0f;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t c = 0; c < chunks; ++c) {
        const float* p = first + c * stride;
        if (p[1] == 0.0f) continue;  // no kept position in this chunk (a NaN sum is kept, and spreads)
        const float w = std::exp(p[0] - mx);
        total += w * p[1];
        for (int64_t e = 0; e < s.v_dim; ++e) acc[static_cast<size_t>(e)] += w * p[2 + e];
      }
      // bg = b * kv_heads + g, so the query head's row is bg * group + r.
      T* o = out + (bg * group + r) * s.v_dim;
      for (int64_t e = 0; e < s.v_dim; ++e)
        o[e] = from_float<T>(total != 0.0f ? acc[static_cast<size_t>(e)] / total : 0.0f);
    }
  }
}

template void decode_attention_ref<float>(const float*, const float*, const float*, const DecodeAttentionMask&, float,
                                          const DecodeAttentionShape&, int64_t, int64_t, float*);
template void decode_attention_ref<bf16>(const bf16*, const bf16*, const bf16*, const DecodeAttentionMask&, float,
                                         const DecodeAttentionShape&, int64_t, int64_t, float*);
template void decode_attention_ref<fp16>(const fp16*, const fp16*, const fp16*, const DecodeAttentionMask&, float,
                                         const DecodeAttentionShape&, int64_t, int64_t, float*);
template void decode_attention_merge<float>(const float*, const DecodeAttentionShape&, float*);
template void decode_attention_merge<bf16>(const float*, const DecodeAttentionShape&, bf16*);
template void decode_attention_merge<fp16>(const float*, const DecodeAttentionShape&, fp16*);

}  // namespace quanto::kernels
