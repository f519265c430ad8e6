// CPU decode attention: the kernel table's decode_attention over (batch, kv head, chunk of
// positions) items in parallel, then one merge. float16 takes the generic path (ATen's SDPA).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>

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
// 256 positions: a short chunk's fixed cost (query conversion, partial result) would dominate.
int64_t chunk_len_for(int64_t kv_len, int64_t batch_kv_heads) {
  const int64_t wanted = std::max<int64_t>(1, (2 * at::get_num_threads() + batch_kv_heads - 1) / batch_kv_heads);
  const int64_t chunks = std::clamp<int64_t>((kv_len + 255) / 256, 1, wanted);
  return (kv_len + chunks - 1) / chunks;
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
  s.chunk_len = chunk_len_for(s.kv_len, s.batch * s.kv_heads);

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
