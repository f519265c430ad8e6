// Attention for one query position per head (the decode step of an LLM), reading the KV cache
// in place: grouped-query heads share their key/value head without copies, and masked
// positions are skipped, not computed (a static cache's unused tail costs nothing).
//
// For batch b and query head h (kv head g = h / (heads / kv_heads)):
//   s_l   = scale * <q[b, h], k[b, g, l]> + bias[b, h, l]     over the kept positions l
//   out   = sum_l softmax(s)_l * v[b, g, l]
// A position is kept where the boolean mask is true (or there is none) and the additive bias is
// not -inf. A query with no kept position gets zeros (PyTorch's scaled_dot_product_attention
// does the same). Scores, softmax and sums are float whatever the element type.
//
// The work is split into items, one per (b, g, chunk of chunk_len positions); each item writes
// a partial result (running max, sum of exponentials, unnormalised output per query head of
// the group) and decode_attention_merge combines the chunks. Kernels allocate only per-item
// scratch and create no threads (the op layer runs items in parallel).
#pragma once

#include <cstdint>
#include <limits>

#include "kernels/numeric.h"

namespace quanto::kernels {

// Element strides; the last dimension of q, k and v is contiguous.
struct DecodeAttentionShape {
  int64_t batch, heads, kv_heads, kv_len, head_dim, v_dim;
  int64_t q_b, q_h;       // q[b, h, 0, :]
  int64_t k_b, k_h, k_l;  // k[b, g, l, :]
  int64_t v_b, v_h, v_l;  // v[b, g, l, :]
  int64_t chunk_len;      // positions per work item
  int64_t chunks() const { return (kv_len + chunk_len - 1) / chunk_len; }
  int64_t items() const { return batch * kv_heads * chunks(); }
  int64_t group() const { return heads / kv_heads; }
  // floats of one item's partial result: per query head of the group, max, sum, then v_dim sums.
  int64_t partial_floats() const { return group() * (2 + v_dim); }
};

// Optional masks over [batch, heads, kv_len], with element strides (0 where broadcast).
struct DecodeAttentionMask {
  const uint8_t* keep = nullptr;  // bool: position attended where nonzero
  int64_t keep_b = 0, keep_h = 0, keep_l = 0;
  const float* bias = nullptr;  // additive, float
  int64_t bias_b = 0, bias_h = 0, bias_l = 0;
  // The additive term of query head h of batch b at position l: -inf where masked.
  float term(int64_t b, int64_t h, int64_t l) const {
    if (keep && !keep[b * keep_b + h * keep_h + l * keep_l]) return -std::numeric_limits<float>::infinity();
    return bias ? bias[b * bias_b + h * bias_h + l * bias_l] : 0.0f;
  }
};

template <typename T>
using DecodeAttentionFn = void (*)(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,
                                   const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end,
                                   float* partial);

// Plain loops (std::exp, one query head and one position at a time): the reference the
// vectorised builds (kernels/ref/attention_impl.h) are tested against.
template <typename T>
void decode_attention_ref(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,
                          const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end, float* partial);

// Combines every item's partial result into out [batch, heads, v_dim] (contiguous).
template <typename T>
void decode_attention_merge(const float* partial, const DecodeAttentionShape& shape, T* out);

}  // namespace quanto::kernels
