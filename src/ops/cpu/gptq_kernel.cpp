// CPU: gptq_quantize (Frantar et al., "GPTQ: Accurate Post-Training Quantization for Generative
// Pre-trained Transformers"). Quantizes an out-first weight column by column in order; the
// rounding error of each column, weighted by the inverse Hessian of the layer's inputs, is
// pushed onto the columns not yet quantized. Groups are docs/format.md's (contiguous along the input
// features, axis 0), and each group's min/max scale and shift is computed when its first column
// is reached, from the error-updated weights, so the result is a plain affine 2/4-bit weight.
#include <ATen/ops/argsort.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <quanto/ops.h>

#include "kernels/numeric.h"
#include "kernels/ref/quantize_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/gptq_hessian.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian,
                                                             c10::string_view qtype, std::optional<int64_t> group_size,
                                                             double percdamp, int64_t blocksize, bool actorder) {
  const char* op = "gptq_quantize";
  Grouping g;
  const GptqSpecs specs = gptq_quantize_spec(weight, hessian, qtype, group_size, percdamp, blocksize, &g);
  const QType& q = checked_qtype(op, qtype);
  TORCH_CHECK_VALUE(at::isfinite(weight).all().item<bool>(), op, ": weight holds NaN or inf");
  const int64_t rows = weight.size(0), n = weight.size(1);
  const int64_t gs = group_size ? *group_size : n;
  const int64_t groups_per_row = n / gs;
  // Blocks hold whole groups, so a group's parameters see every update made before it.
  // With act-order, columns go by decreasing Hessian diagonal and the groups' parameters are
  // static (min/max of the original weight), since a group's columns are no longer contiguous.
  const int64_t bs = actorder ? blocksize : std::max<int64_t>(blocksize / gs, 1) * gs;
  const int32_t code_max = (1 << q.bits) - 1;

  at::Tensor w = weight.to(at::kFloat).contiguous().clone();
  at::Tensor perm;
  at::Tensor h_used = hessian;
  if (actorder) {
    at::Tensor d = hessian.diagonal().to(at::kDouble).clone();
    d.masked_fill_(d.eq(0), 1.0);
    perm = at::argsort(d, /*stable=*/true, 0, /*descending=*/true);
    h_used = hessian.index_select(0, perm).index_select(1, perm);
  }
  const at::Tensor hinv = gptq_inverse_hessian_factor(op, h_used, percdamp, at::kDouble);
  at::Tensor codes = at::empty({rows, n}, weight.options().dtype(at::kByte));
  at::Tensor scale = at::empty({rows * groups_per_row}, weight.options());
  at::Tensor shift = at::empty({rows * groups_per_row}, weight.options());
  at::Tensor err = at::zeros({rows, bs}, weight.options().dtype(at::kFloat));

  float* wd = data_as<float>(w);
  const float* hd = data_as<const float>(hinv);
  uint8_t* cd = data_as<uint8_t>(codes);
  float* ed = data_as<float>(err);

  dispatch_float(weight.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* sd = data_as<T>(scale);
    T* shd = data_as<T>(shift);
    std::vector<int64_t> order(n);
    for (int64_t i = 0; i < n; ++i) order[i] = actorder ? perm[i].item<int64_t>() : i;
    if (actorder) {
      parallel_rows(rows, grain_for(n), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          for (int64_t g0 = 0; g0 < n; g0 += gs) {
            const float* x = wd + r * n + g0;
            float mn = x[0], mx = x[0];
            for (int64_t j = 1; j < gs; ++j) {
              mn = std::min(mn, x[j]);
              mx = std::max(mx, x[j]);
            }
            const int64_t p = r * groups_per_row + g0 / gs;
            kernels::minmax_to_scale_shift_ref<T>(&mn, &mx, 1, code_max, sd + p, shd + p);
          }
        }
      });
      w = w.index_select(1, perm).contiguous();
      wd = data_as<float>(w);
    }
    for (int64_t i1 = 0; i1 < n; i1 += bs) {
      const int64_t i2 = std::min(i1 + bs, n);
      // Inside a block every row is independent: its columns are quantized in order and each
      // error updates the row's remaining columns of the block.
      parallel_rows(rows, std::max<int64_t>(1, 16384 / ((i2 - i1) * (i2 - i1) / 2 + 1)), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          float* wr = wd + r * n;
          float* er = ed + r * bs;
          float s = 1.0f, h = 0.0f;
          for (int64_t i = i1; i < i2; ++i) {
            if (actorder) {
              const int64_t p = r * groups_per_row + order[i] / gs;
              s = kernels::to_float(sd[p]);
              h = kernels::to_float(shd[p]);
            } else if ((i - i1) % gs == 0) {
              float mn = wr[i], mx = wr[i];
              for (int64_t j = i + 1; j < i + gs; ++j) {
                mn = std::min(mn, wr[j]);
                mx = std::max(mx, wr[j]);
              }
              const int64_t p = r * groups_per_row + i / gs;
              kernels::minmax_to_scale_shift_ref<T>(&mn, &mx, 1, code_max, sd + p, shd + p);
              s = kernels::to_float(sd[p]);
              h = kernels::to_float(shd[p]);
            }
            const float c = std::clamp(std::nearbyint((wr[i] + h) / s), 0.0f, static_cast<float>(code_max));
            cd[r * n + order[i]] = static_cast<uint8_t>(c);
            const float e_i = (wr[i] - (c * s - h)) / hd[i * n + i];
            er[i - i1] = e_i;
            const float* hrow = hd + i * n;
            for (int64_t j = i + 1; j < i2; ++j) wr[j] -= e_i * hrow[j];
          }
        }
      });
      if (i2 < n) {
        // The block's errors reach the later columns at once: W[:, i2:] -= E @ Hinv[i1:i2, i2:].
        w.narrow(1, i2, n - i2).sub_(at::mm(err.narrow(1, 0, i2 - i1), hinv.narrow(0, i1, i2 - i1).narrow(1, i2, n - i2)));
      }
    }
  });
  return {codes.view(concrete(specs.codes.sizes)), scale.view(concrete(specs.scale.sizes)),
          shift.view(concrete(specs.shift.sizes))};
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  // Each entry runs the device-generic implementation instead while the generic path is forced.
  using generic::CpuOrGeneric;
  m.impl("gptq_quantize", &CpuOrGeneric<&gptq_quantize, &generic::gptq_quantize>::call);
}

}  // namespace quanto::ops::cpu
