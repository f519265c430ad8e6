// CPU decode attention: the kernel table's decode_attention over (batch, kv head, chunk of
// positions) items in parallel, then one merge. float16 takes the generic path (ATen's SDPA).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "kernels/dispatch.h"
#include "kernels/ref/attention_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

at::Tensor last_dim_contiguous(const at::Tensor& t) { return t.stride(-1) == 1 ? t : t.contiguous(); }

// Enough items for every thread (two per thread, so uneven chunks even out), but no chunk under
// kMinChunk positions: a short chunk's fixed cost (query conversion, partial result) would dominate.
constexpr int64_t kMinChunk = 256;
int64_t chunk_len_for(int64_t kv_len, int64_t batch_kv_heads) {
  const int64_t wanted = std::max<int64_t>(1, (2 * at::get_num_threads() + batch_kv_heads - 1) / batch_kv_heads);
  const int64_t chunks = std::clamp<int64_t>((kv_len + kMinChunk - 1) / kMinChunk, 1, wanted);
  return (kv_len + chunks - 1) / chunks;
}

// One past the last position any query attends. A static cache's mask keeps a prefix of its
// capacity and masks the rest, which the kernels would otherwise walk, and split over the threads,
// in full (SmolLM2's shapes, 2 threads, 300 positions used of 4096: 34 us a call without this,
// 19-24 with it, as with a 304-long cache). Scanned from the end, rows broadcast over batch or heads once. A mask that keeps nothing
// leaves the length as it is (the kernels define that case).
int64_t attended_extent(const kernels::DecodeAttentionMask& m, int64_t batch, int64_t heads, int64_t kv_len) {
  if (m.keep == nullptr && m.bias == nullptr) return kv_len;
  const int64_t rows_b = (m.keep ? m.keep_b : m.bias_b) == 0 ? 1 : batch;
  const int64_t rows_h = (m.keep ? m.keep_h : m.bias_h) == 0 ? 1 : heads;
  int64_t extent = 0;
  for (int64_t b = 0; b < rows_b; ++b)
    for (int64_t h = 0; h < rows_h; ++h) {
      int64_t l = kv_len - 1;
      if (m.keep != nullptr && m.keep_l == 1) {  // eight masked positions a test
        const uint8_t* row = m.keep + b * m.keep_b + h * m.keep_h;
        for (uint64_t word; l - 7 >= extent; l -= 8) {
          std::memcpy(&word, row + l - 7, sizeof(word));
          if (word != 0) break;
        }
      }
      for (; l >= extent; --l)
        if (m.term(b, h, l) != -std::numeric_limits<float>::infinity()) {
          extent = l + 1;
          break;
        }
      if (extent == kv_len) return kv_len;
    }
  return extent == 0 ? kv_len : extent;
}

at::Tensor decode_attention(const at::Tensor& q_in, const at::Tensor& k_in, const at::Tensor& v_in,
                            const std::optional<at::Tensor>& mask, double scale) {
  const TensorSpec spec = decode_attention_spec(q_in, k_in, v_in, mask, scale);
  const c10::ScalarType dtype = q_in.scalar_type();
  if (dtype == at::kHalf) return generic::decode_attention(q_in, k_in, v_in, mask, scale);
  const at::Tensor q = last_dim_contiguous(q_in), k = last_dim_contiguous(k_in), v = last_dim_contiguous(v_in);
  kernels::DecodeAttentionShape s{};
  s.batch = q.size(0), s.heads = q.size(1), s.kv_heads = k.size(1), s.kv_len = k.size(2);
  s.head_dim = q.size(3), s.v_dim = v.size(3);
  s.q_b = q.stride(0), s.q_h = q.stride(1);
  s.k_b = k.stride(0), s.k_h = k.stride(1), s.k_l = k.stride(2);
  s.v_b = v.stride(0), s.v_h = v.stride(1), s.v_l = v.stride(2);

  kernels::DecodeAttentionMask m{};
  at::Tensor mask_view;  // keeps the (broadcast) mask alive while the kernel reads it
  if (mask) {
    at::Tensor mt = mask->scalar_type() == at::kBool || mask->scalar_type() == at::kFloat ? *mask : mask->to(at::kFloat);
    mask_view = mt.expand({s.batch, s.heads, 1, s.kv_len});
    if (mt.scalar_type() == at::kBool) {
      m.keep = data_as<const uint8_t>(mask_view);
      m.keep_b = mask_view.stride(0), m.keep_h = mask_view.stride(1), m.keep_l = mask_view.stride(3);
    } else {
      m.bias = mask_view.data_ptr<float>();
      m.bias_b = mask_view.stride(0), m.bias_h = mask_view.stride(1), m.bias_l = mask_view.stride(3);
    }
  }

  // Positions past the last attended one are read by no query: the items cover only the rest.
  s.kv_len = attended_extent(m, s.batch, s.heads, s.kv_len);
  s.chunk_len = chunk_len_for(s.kv_len, s.batch * s.kv_heads);
  const kernels::AttentionKernels& table = kernels::kernels().attention;
  at::Tensor partial = at::empty({s.items() * s.partial_floats()}, q.options().dtype(at::kFloat));
  at::Tensor out = at::empty(concrete(spec.sizes), q.options());
  const auto f = static_cast<float>(scale);
  at::parallel_for(0, s.items(), 1, [&](int64_t i0, int64_t i1) {
    if (dtype == at::kFloat)
      table.decode_f32(q.data_ptr<float>(), k.data_ptr<float>(), v.data_ptr<float>(), m, f, s, i0, i1,
                       partial.data_ptr<float>());
    else
      table.decode_bf16(data_as<const kernels::bf16>(q), data_as<const kernels::bf16>(k),
                        data_as<const kernels::bf16>(v), m, f, s, i0, i1, partial.data_ptr<float>());
  });
  if (dtype == at::kFloat)
    kernels::decode_attention_merge(partial.data_ptr<float>(), s, out.data_ptr<float>());
  else
    kernels::decode_attention_merge(partial.data_ptr<float>(), s, data_as<kernels::bf16>(out));
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  m.impl("decode_attention", &generic::CpuOrGeneric<&decode_attention, &generic::decode_attention>::call);
}

}  // namespace quanto::ops::cpu
