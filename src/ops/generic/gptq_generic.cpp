// Generic: gptq_quantize, the CPU kernel's algorithm (src/ops/cpu/gptq_kernel.cpp) with each
// column's step vectorised over the weight's rows instead of a loop per row: same blocks, same
// group parameters taken from the error-updated weights, same float32 updates. Where BLAS and
// rounding agree this gives the CPU's codes; elsewhere a few ties may round the other way.
#include <ATen/TensorOperators.h>
#include <ATen/ops/argsort.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>

#include "ops/generic/generic_ops.h"
#include "ops/generic/generic_utils.h"
#include "ops/gptq_hessian.h"
#include "ops/specs.h"

namespace quanto::ops::generic {

std::tuple<at::Tensor, at::Tensor, at::Tensor> gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian,
                                                             c10::string_view qtype, std::optional<int64_t> group_size,
                                                             double percdamp, int64_t blocksize, bool actorder) {
  NonDifferentiable guard;
  const char* op = "gptq_quantize";
  Grouping g;
  const GptqSpecs specs = gptq_quantize_spec(weight, hessian, qtype, group_size, percdamp, blocksize, &g);
  const QType& q = checked_qtype(op, qtype);
  check_device_dtype(op, hessian.device(), hessian.scalar_type());
  TORCH_CHECK_VALUE(at::isfinite(weight).all().item<bool>(), op, ": weight holds NaN or inf");
  const c10::ScalarType dtype = weight.scalar_type();
  const int64_t rows = weight.size(0), n = weight.size(1);
  const int64_t gs = group_size ? *group_size : n;
  const int64_t groups_per_row = n / gs;
  // Blocks hold whole groups, so a group's parameters see every update made before it; with
  // act-order the parameters are static (min/max of the original weight's groups).
  const int64_t bs = actorder ? blocksize : std::max<int64_t>(blocksize / gs, 1) * gs;
  const int64_t code_max = (1 << q.bits) - 1;

  at::Tensor w = weight.to(at::kFloat).clone(at::MemoryFormat::Contiguous);
  at::Tensor scale = at::empty({rows, groups_per_row}, weight.options());
  at::Tensor shift = at::empty({rows, groups_per_row}, weight.options());
  at::Tensor perm, h_used = hessian, col_scale, col_shift;
  if (actorder) {
    at::Tensor d = hessian.diagonal().to(wide_float(hessian.device())).clone();
    d.masked_fill_(d == 0, 1.0);
    perm = at::argsort(d, /*stable=*/true, 0, /*descending=*/true);
    h_used = hessian.index_select(0, perm).index_select(1, perm);
    const at::Tensor groups = w.view({rows, groups_per_row, gs});
    std::tie(scale, shift) = minmax_params(groups.amin(2), groups.amax(2), code_max, dtype);
    // Each (permuted) column's parameters, as float32 [rows, n].
    const at::Tensor group_of_col = perm.div(gs, "floor");
    col_scale = scale.to(at::kFloat).index_select(1, group_of_col);
    col_shift = shift.to(at::kFloat).index_select(1, group_of_col);
    w = w.index_select(1, perm);
  }
  const at::Tensor hinv = gptq_inverse_hessian_factor(op, h_used, percdamp, wide_float(hessian.device()));
  at::Tensor codes = at::empty({rows, n}, weight.options().dtype(at::kByte));
  at::Tensor err = at::zeros({rows, bs}, w.options());

  at::Tensor s, h;
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    const int64_t i2 = std::min(i1 + bs, n);
    for (int64_t i = i1; i < i2; ++i) {
      if (actorder) {
        s = col_scale.select(1, i);
        h = col_shift.select(1, i);
      } else if ((i - i1) % gs == 0) {
        const at::Tensor group = w.narrow(1, i, gs);
        auto [gscale, gshift] = minmax_params(group.amin(1), group.amax(1), code_max, dtype);
        scale.select(1, i / gs).copy_(gscale);
        shift.select(1, i / gs).copy_(gshift);
        s = gscale.to(at::kFloat);
        h = gshift.to(at::kFloat);
      }
      const at::Tensor wi = w.select(1, i);
      const at::Tensor c = ((wi + h) / s).round().clamp(0.0, static_cast<double>(code_max));
      codes.select(1, i).copy_(c);
      const at::Tensor e = (wi - (c * s - h)) / hinv.select(0, i).select(0, i);
      err.select(1, i - i1).copy_(e);
      if (i + 1 < i2) {
        // The column's error reaches the rest of its block: W[:, j] -= e * Hinv[i, j].
        w.narrow(1, i + 1, i2 - i - 1).sub_(e.unsqueeze(1) * hinv.select(0, i).narrow(0, i + 1, i2 - i - 1));
      }
    }
    if (i2 < n) {
      // The block's errors reach the later columns at once: W[:, i2:] -= E @ Hinv[i1:i2, i2:].
      const at::Tensor hinv_later = hinv.narrow(0, i1, i2 - i1).narrow(1, i2, n - i2);
      w.narrow(1, i2, n - i2).sub_(at::mm(err.narrow(1, 0, i2 - i1), hinv_later));
    }
  }
  if (actorder) {
    // Column j of the permuted weight is column perm[j] of the original.
    codes = at::empty_like(codes).index_copy_(1, perm, codes);
  }
  return {codes.view(concrete(specs.codes.sizes)), scale.view(concrete(specs.scale.sizes)),
          shift.view(concrete(specs.shift.sizes))};
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) { m.impl("gptq_quantize", &gptq_quantize); }

}  // namespace quanto::ops::generic
