// CPU: absmax_scale, minmax_scale_shift, shift_to_zeropoint.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/ref/quantize_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

void check_finite(const char* op, const std::vector<float>& v) {
  for (float f : v)
    TORCH_CHECK_VALUE(std::isfinite(f), op, ": x contains NaN or inf, so its range is undefined");
}

// amax(|x|) over each row of a [rows, cols] block.
template <typename T>
std::vector<float> absmax_of_rows(const T* x, int64_t rows, int64_t cols) {
  std::vector<float> amax(static_cast<size_t>(rows));
  const auto fn = kernels::quantize_kernels<T>(kernels::kernels()).absmax_rows;
  parallel_rows(rows, grain_for(cols), [&](int64_t b, int64_t e) { fn(x + b * cols, e - b, cols, amax.data() + b); });
  return amax;
}

// amax(|x|) down each column; columns are split over threads.
template <typename T>
std::vector<float> absmax_of_cols(const T* x, int64_t rows, int64_t cols) {
  std::vector<float> amax(static_cast<size_t>(cols));
  parallel_rows(cols, grain_for(rows), [&](int64_t b, int64_t e) {
    kernels::absmax_cols_ref<T>(x + b, rows, e - b, cols, amax.data() + b);
  });
  return amax;
}

at::Tensor absmax_scale(const at::Tensor& x, c10::string_view qtype, std::optional<int64_t> axis) {
  const char* op = "absmax_scale";
  const TensorSpec spec = absmax_scale_spec(x, qtype, axis);
  const QType& q = checked_qtype(op, qtype);
  at::Tensor xc = x.contiguous();
  at::Tensor scale = at::empty(concrete(spec.sizes), x.options());
  const int64_t numel = xc.numel();
  dispatch_float(x.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* data = data_as<const T>(xc);
    std::vector<float> amax;
    if (!axis) {
      const int64_t cols = xc.dim() ? xc.size(-1) : 1;
      const std::vector<float> rows = absmax_of_rows(data, numel / cols, cols);
      check_finite(op, rows);
      float m = 0.0f;
      for (float v : rows) m = std::max(m, v);
      amax = {m};
    } else if (checked_axis(op, x.dim(), *axis) == 0) {
      amax = absmax_of_rows(data, xc.size(0), numel / xc.size(0));
    } else {
      amax = absmax_of_cols(data, numel / xc.size(-1), xc.size(-1));
    }
    check_finite(op, amax);
    kernels::absmax_to_scale_ref<T>(amax.data(), static_cast<int64_t>(amax.size()),
                                    static_cast<float>(q.qmax), data_as<T>(scale));
  });
  return scale;
}

std::tuple<at::Tensor, at::Tensor> minmax_scale_shift(const at::Tensor& x, c10::string_view qtype,
                                                      int64_t axis, std::optional<int64_t> group_size) {
  const char* op = "minmax_scale_shift";
  Grouping g;
  const auto [scale_spec, shift_spec] = minmax_scale_shift_spec(x, qtype, axis, group_size, &g);
  const QType& q = checked_qtype(op, qtype);
  const at::Tensor x2 = grouped_2d(x, g);
  const int64_t rows = x2.size(0), cols = x2.size(1);
  at::Tensor scale = at::empty(concrete(scale_spec.sizes), x.options());
  at::Tensor shift = at::empty(concrete(shift_spec.sizes), x.options());
  const int64_t n = g.axis == 0 ? rows : cols;
  std::vector<float> mn(static_cast<size_t>(n)), mx(static_cast<size_t>(n));
  dispatch_float(x.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* data = data_as<const T>(x2);
    if (g.axis == 0) {
      const auto fn = kernels::quantize_kernels<T>(kernels::kernels()).minmax_rows;
      parallel_rows(rows, grain_for(cols), [&](int64_t b, int64_t e) {
        fn(data + b * cols, e - b, cols, mn.data() + b, mx.data() + b);
      });
    } else {
      parallel_rows(cols, grain_for(rows), [&](int64_t b, int64_t e) {
        kernels::minmax_cols_ref<T>(data + b, rows, e - b, cols, mn.data() + b, mx.data() + b);
      });
    }
    check_finite(op, mn);
    check_finite(op, mx);
    const int32_t code_max = (1 << q.bits) - 1;
    kernels::minmax_to_scale_shift_ref<T>(mn.data(), mx.data(), n, code_max, data_as<T>(scale), data_as<T>(shift));
    // max - min can overflow float16 even when both are finite.
    for (int64_t i = 0; i < n; ++i)
      TORCH_CHECK_VALUE(std::isfinite(kernels::to_float(data_as<T>(scale)[i])), op,
                        ": the range of x overflows ", x.scalar_type(), "; quantize it in float32");
  });
  return {scale, shift};
}

at::Tensor shift_to_zeropoint(const at::Tensor& scale, const at::Tensor& shift, c10::string_view qtype) {
  const char* op = "shift_to_zeropoint";
  const TensorSpec spec = shift_to_zeropoint_spec(scale, shift, qtype);
  const QType& q = checked_qtype(op, qtype);
  const auto dtype = c10::promoteTypes(scale.scalar_type(), shift.scalar_type());
  const at::Tensor s = scale.to(dtype).contiguous(), h = shift.to(dtype).contiguous();
  at::Tensor zp = at::empty(concrete(spec.sizes), shift.options().dtype(at::kByte));
  dispatch_float(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    kernels::shift_to_zeropoint_ref<T>(data_as<const T>(s), data_as<const T>(h), s.numel(), (1 << q.bits) - 1,
                                       data_as<uint8_t>(zp));
  });
  return zp;
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  // Each entry runs the device-generic implementation instead while the generic path is forced.
  using generic::CpuOrGeneric;
  m.impl("absmax_scale", &CpuOrGeneric<&absmax_scale, &generic::absmax_scale>::call);
  m.impl("minmax_scale_shift", &CpuOrGeneric<&minmax_scale_shift, &generic::minmax_scale_shift>::call);
  m.impl("shift_to_zeropoint", &CpuOrGeneric<&shift_to_zeropoint, &generic::shift_to_zeropoint>::call);
}


}  // namespace quanto::ops::cpu
