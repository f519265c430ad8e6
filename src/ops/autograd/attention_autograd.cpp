// decode_attention computes no gradient (it serves inference): where one is needed it refuses,
// rather than returning an output silently cut off from the graph.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/library.h>

#include <optional>

namespace quanto::ops::autograd_impl {
namespace {

at::Tensor decode_attention_autograd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                     const std::optional<at::Tensor>& mask, double scale) {
  const bool needs_grad = q.requires_grad() || k.requires_grad() || v.requires_grad() || (mask && mask->requires_grad());
  TORCH_CHECK_VALUE(!(at::GradMode::is_enabled() && needs_grad),
                    "decode_attention: an input requires grad, but this op computes no gradient (it is meant for "
                    "inference); use torch.nn.functional.scaled_dot_product_attention to train, or run under "
                    "torch.no_grad()");
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("quanto::decode_attention", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                               const std::optional<at::Tensor>&, double)>();
  c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset);
  return op.call(q, k, v, mask, scale);
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Autograd, m) { m.impl("decode_attention", &decode_attention_autograd); }

}  // namespace quanto::ops::autograd_impl
