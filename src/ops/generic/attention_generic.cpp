// Generic decode attention: ATen's scaled_dot_product_attention (every backend picks its own
// kernel), with the same checks as the CPU kernel.
#include <ATen/ops/scaled_dot_product_attention.h>
#include <torch/library.h>

#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::generic {

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::optional<at::Tensor>& mask, double scale) {
  decode_attention_spec(q, k, v, mask, scale);
  // SDPA broadcasts fewer mask dims less generously than the op's contract: expand first.
  std::optional<at::Tensor> m;
  if (mask) {
    m = mask->expand({q.size(0), q.size(1), 1, k.size(2)});
    if (m->scalar_type() != at::kBool) m = m->to(q.scalar_type());
  }
  return at::scaled_dot_product_attention(q, k, v, m, 0.0, false, scale, /*enable_gqa=*/true);
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) { m.impl("decode_attention", &decode_attention); }

}  // namespace quanto::ops::generic
