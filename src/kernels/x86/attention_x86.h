// x86 builds of decode attention; call only through the dispatch table, after cpu_supports().
// Same contract as decode_attention_ref (kernels/ref/attention_ref.h).
#pragma once

#include <cstdint>

#include "kernels/ref/attention_ref.h"

namespace quanto::kernels {
namespace avx2 {
template <typename T>
void decode_attention(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,
                      const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end, float* partial);
}  // namespace avx2
namespace avx512 {
template <typename T>
void decode_attention(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,
                      const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end, float* partial);
}  // namespace avx512
}  // namespace quanto::kernels
