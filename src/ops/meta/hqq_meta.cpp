// Meta (shape-only) implementation of hqq_scale_shift; checks and shapes from ops/specs.
#include <torch/library.h>

#include "ops/specs.h"

namespace quanto::ops::meta {
namespace {

std::tuple<at::Tensor, at::Tensor> hqq_scale_shift(const at::Tensor& x, c10::string_view qtype, int64_t axis,
                                                   std::optional<int64_t> group_size, int64_t iters, double p,
                                                   double beta, double kappa, bool /*optimize_scale*/) {
  const auto [scale, shift] = hqq_scale_shift_spec(x, qtype, axis, group_size, iters, p, beta, kappa);
  return {empty_from_spec(scale, x), empty_from_spec(shift, x)};
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Meta, m) { m.impl("hqq_scale_shift", &hqq_scale_shift); }

}  // namespace quanto::ops::meta
