#include "ops/gptq_hessian.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace quanto::ops {

at::Tensor gptq_inverse_hessian_factor(const char* op, const at::Tensor& hessian, double percdamp,
                                       c10::ScalarType wide) {
  at::Tensor h = hessian.to(wide).clone(at::MemoryFormat::Contiguous);
  TORCH_CHECK_VALUE(at::isfinite(h).all().item<bool>(), op, ": hessian holds NaN or inf");
  at::Tensor diag = h.diagonal();
  // An input never seen in calibration (zero diagonal) has no error to spread: unit diagonal.
  diag.masked_fill_(diag.eq(0), 1.0);
  const double mean = diag.mean().item<double>();
  TORCH_CHECK_VALUE(mean > 0.0, op, ": hessian has a negative mean diagonal (", mean,
                    "); it must be X^T X of the layer's inputs");
  diag.add_(percdamp * mean);
  auto [l, info] = at::linalg_cholesky_ex(h);
  TORCH_CHECK_VALUE(info.item<int64_t>() == 0, op, ": hessian is not positive definite after dampening with percdamp=",
                    percdamp, "; increase percdamp (or check that it is X^T X of the layer's inputs)");
  auto [u, info2] = at::linalg_cholesky_ex(at::cholesky_inverse(l), /*upper=*/true);
  TORCH_CHECK_VALUE(info2.item<int64_t>() == 0, op, ": the inverse hessian is not positive definite (percdamp=",
                    percdamp, "); increase percdamp");
  return u.to(at::kFloat).contiguous();
}

}  // namespace quanto::ops
