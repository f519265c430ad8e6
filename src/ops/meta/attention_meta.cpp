// Meta (shape-only) implementation of decode_attention.
#include <torch/library.h>

#include "ops/specs.h"

namespace quanto::ops::meta {
namespace {

at::Tensor decode_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                            const std::optional<at::Tensor>& mask, double scale) {
  return empty_from_spec(decode_attention_spec(q, k, v, mask, scale), q);
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Meta, m) { m.impl("decode_attention", &decode_attention); }

}  // namespace quanto::ops::meta
