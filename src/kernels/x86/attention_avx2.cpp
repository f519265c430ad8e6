// AVX2 build of decode attention (kernels/ref/attention_impl.h): same arithmetic, its own vectors.
#include "kernels/ref/attention_impl.h"
#include "kernels/x86/attention_x86.h"

namespace quanto::kernels::avx2 {

template <typename T>
void decode_attention(const T* q, const T* k, const T* v, const DecodeAttentionMask& mask, float scale,
                      const DecodeAttentionShape& shape, int64_t item_begin, int64_t item_end, float* partial) {
  attention_detail::decode_attention_impl(q, k, v, mask, scale, shape, item_begin, item_end, partial);
}
template void decode_attention<float>(const float*, const float*, const float*, const DecodeAttentionMask&, float,
                                      const DecodeAttentionShape&, int64_t, int64_t, float*);
template void decode_attention<bf16>(const bf16*, const bf16*, const bf16*, const DecodeAttentionMask&, float,
                                     const DecodeAttentionShape&, int64_t, int64_t, float*);

}  // namespace quanto::kernels::avx2
