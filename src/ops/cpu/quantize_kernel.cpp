// CPU: symmetric_quantize / symmetric_dequantize / affine_quantize / affine_dequantize.
#include <ATen/ops/empty.h>
#include <ATen/ops/result_type.h>
#include <torch/library.h>

#include <cmath>

#include "kernels/dispatch.h"
#include "kernels/ref/quantize_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

using kernels::ParamLayout;

// Data as a [rows, cols] block and where its parameters broadcast.
struct Block {
  int64_t rows, cols;
  ParamLayout layout;
};

Block block_for(const at::Tensor& x, ParamAxis axis) {
  const int64_t numel = x.numel();
  switch (axis) {
    case ParamAxis::rows:
      return {x.size(0), numel / x.size(0), kernels::kPerRow};
    case ParamAxis::cols:
      return {numel / x.size(-1), x.size(-1), kernels::kPerCol};
    default: {
      const int64_t cols = x.dim() ? x.size(-1) : 1;
      return {numel / cols, cols, kernels::kPerTensor};
    }
  }
}

// Scales and shifts as contiguous float: exact for every float dtype.
at::Tensor params_as_float(const at::Tensor& p) { return p.to(at::kFloat).contiguous(); }

ParamAxis param_axis(const char* op, const at::Tensor& x, std::optional<int64_t> axis) {
  if (!axis) return ParamAxis::per_tensor;
  return checked_axis(op, x.dim(), *axis) == 0 ? ParamAxis::rows : ParamAxis::cols;
}

// Runs fn(row_begin, row_end) over a block's rows on the thread pool, with pointers offset by
// the caller from row_begin.
template <typename Fn>
void over_rows(const Block& b, Fn&& fn) {
  parallel_rows(b.rows, grain_for(b.cols), fn);
}

at::Tensor symmetric_quantize(const at::Tensor& x, const at::Tensor& scale, c10::string_view qtype,
                              std::optional<int64_t> axis) {
  const char* op = "symmetric_quantize";
  const TensorSpec spec = symmetric_quantize_spec(x, scale, qtype, axis);
  const QType& q = checked_qtype(op, qtype);
  // PyTorch evaluates x / scale in the promoted dtype; a 0-dim scale takes x's dtype but keeps
  // its full value, which passing scales as float reproduces.
  const auto dtype = at::result_type(x, scale);
  const at::Tensor xc = x.to(dtype).contiguous(), sc = params_as_float(scale);
  at::Tensor out = at::empty(concrete(spec.sizes), x.options().dtype(spec.dtype));
  const Block b = block_for(xc, param_axis(op, x, axis));
  dispatch_float(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xd = data_as<const T>(xc);
    const float* sd = sc.data_ptr<float>();
    if (!q.is_floating_point) {
      const auto fn = kernels::quantize_kernels<T>(kernels::kernels()).symmetric_quantize_int;
      const kernels::IntRange range{static_cast<int32_t>(q.qmin), static_cast<int32_t>(q.qmax)};
      int8_t* od = data_as<int8_t>(out);
      over_rows(b, [&](int64_t r0, int64_t r1) {
        fn(xd + r0 * b.cols, sd + r0 * b.layout.row_stride, b.layout, r1 - r0, b.cols, range, od + r0 * b.cols);
      });
    } else {
      const auto format = fp8_format(q.dtype);
      uint8_t* od = data_as<uint8_t>(out);
      over_rows(b, [&](int64_t r0, int64_t r1) {
        kernels::symmetric_quantize_fp8_ref<T>(xd + r0 * b.cols, sd + r0 * b.layout.row_stride, b.layout, r1 - r0,
                                               b.cols, format, od + r0 * b.cols);
      });
    }
  });
  return out;
}

// Integer codes in one pass per token (absmax, scale, codes), the values of absmax_scale then
// symmetric_quantize along the token rows (the generic path, which float8 takes): as two ops
// with their dtype conversions, ~7 us of a decode-time W8A8 layer's ~19.
std::tuple<at::Tensor, at::Tensor> quantize_per_token(const at::Tensor& x, c10::string_view qtype) {
  const char* op = "quantize_per_token";
  const auto [data_spec, scale_spec] = quantize_per_token_spec(x, qtype);
  const QType& q = checked_qtype(op, qtype);
  if (q.is_floating_point) return generic::quantize_per_token(x, qtype);
  const at::Tensor xc = x.contiguous();
  const int64_t K = xc.size(-1), tokens = xc.numel() / K;
  at::Tensor data = at::empty(concrete(data_spec.sizes), x.options().dtype(data_spec.dtype));
  at::Tensor scale = at::empty(concrete(scale_spec.sizes), x.options());
  const kernels::IntRange range{static_cast<int32_t>(q.qmin), static_cast<int32_t>(q.qmax)};
  dispatch_float(x.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const auto& k = kernels::quantize_kernels<T>(kernels::kernels());
    const T* xd = data_as<const T>(xc);
    T* sd = data_as<T>(scale);
    int8_t* od = data_as<int8_t>(data);
    parallel_rows(tokens, grain_for(K), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        float amax;
        k.absmax_rows(xd + r * K, 1, K, &amax);
        TORCH_CHECK_VALUE(std::isfinite(amax), op, ": x contains NaN or inf, so its range is undefined");
        kernels::absmax_to_scale_ref<T>(&amax, 1, static_cast<float>(q.qmax), sd + r);
        const float s = kernels::to_float(sd[r]);  // the scale as stored, as the quantize op reads it
        k.symmetric_quantize_int(xd + r * K, &s, kernels::kPerTensor, 1, K, range, od + r * K);
      }
    });
  });
  return {data, scale};
}

at::Tensor symmetric_dequantize(const at::Tensor& data, const at::Tensor& scale) {
  const char* op = "symmetric_dequantize";
  ParamAxis axis;
  const TensorSpec spec = symmetric_dequantize_spec(data, scale, &axis);
  const at::Tensor dc = data.contiguous(), sc = params_as_float(scale);
  at::Tensor out = at::empty(concrete(spec.sizes), scale.options());
  const Block b = block_for(dc, axis);
  dispatch_float(scale.scalar_type(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const float* sd = sc.data_ptr<float>();
    T* od = data_as<T>(out);
    if (dc.scalar_type() == at::kChar) {
      const int8_t* qd = data_as<const int8_t>(dc);
      over_rows(b, [&](int64_t r0, int64_t r1) {
        kernels::symmetric_dequantize_int_ref<T>(qd + r0 * b.cols, sd + r0 * b.layout.row_stride, b.layout, r1 - r0,
                                                 b.cols, od + r0 * b.cols);
      });
    } else {
      const uint8_t* qd = data_as<const uint8_t>(dc);
      const auto format = fp8_format(dc.scalar_type());
      over_rows(b, [&](int64_t r0, int64_t r1) {
        kernels::symmetric_dequantize_fp8_ref<T>(qd + r0 * b.cols, sd + r0 * b.layout.row_stride, b.layout, r1 - r0,
                                                 b.cols, format, od + r0 * b.cols);
      });
    }
  });
  return out;
}

Block block_for(const Grouping& g) {
  return {g.rows.expect_int(), g.cols.expect_int(), g.axis == 0 ? kernels::kPerRow : kernels::kPerCol};
}

at::Tensor affine_quantize(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                           c10::string_view qtype, int64_t axis, std::optional<int64_t> group_size) {
  const char* op = "affine_quantize";
  Grouping g;
  const TensorSpec spec = affine_quantize_spec(x, scale, shift, qtype, axis, group_size, &g);
  const QType& q = checked_qtype(op, qtype);
  const auto dtype = affine_compute_dtype(x, scale, shift);
  const bool zero_point = shift.scalar_type() == at::kByte;
  const at::Tensor x2 = grouped_2d(x.to(dtype), g);
  const at::Tensor sc = params_as_float(scale);
  const at::Tensor sh = zero_point ? shift.contiguous() : params_as_float(shift);
  at::Tensor codes = at::empty(concrete(spec.sizes), x.options().dtype(at::kByte));
  const Block b = block_for(g);
  const int32_t code_max = (1 << q.bits) - 1;
  dispatch_float(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xd = data_as<const T>(x2);
    const float* sd = sc.data_ptr<float>();
    uint8_t* cd = data_as<uint8_t>(codes);
    const auto table = kernels::quantize_kernels<T>(kernels::kernels());
    over_rows(b, [&](int64_t r0, int64_t r1) {
      const int64_t p0 = r0 * b.layout.row_stride;
      if (zero_point)
        table.affine_quantize_zp(xd + r0 * b.cols, sd + p0, data_as<const uint8_t>(sh) + p0, b.layout,
                                           r1 - r0, b.cols, code_max, cd + r0 * b.cols);
      else
        table.affine_quantize(xd + r0 * b.cols, sd + p0, sh.data_ptr<float>() + p0, b.layout, r1 - r0,
                                        b.cols, code_max, cd + r0 * b.cols);
    });
  });
  return codes;
}

at::Tensor affine_dequantize(const at::Tensor& codes, const at::Tensor& scale, const at::Tensor& shift,
                             c10::SymIntArrayRef shape, int64_t axis, std::optional<int64_t> group_size) {
  const char* op = "affine_dequantize";
  Grouping g;
  const TensorSpec spec = affine_dequantize_spec(codes, scale, shift, shape, axis, group_size, &g);
  const bool zero_point = shift.scalar_type() == at::kByte;
  const at::Tensor cc = codes.contiguous();
  const at::Tensor sc = params_as_float(scale);
  const at::Tensor sh = zero_point ? shift.contiguous() : params_as_float(shift);
  const Block b = block_for(g);
  at::Tensor y2d = at::empty({b.rows, b.cols}, scale.options().dtype(spec.dtype));
  dispatch_float(spec.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const uint8_t* cd = data_as<const uint8_t>(cc);
    const float* sd = sc.data_ptr<float>();
    T* yd = data_as<T>(y2d);
    over_rows(b, [&](int64_t r0, int64_t r1) {
      const int64_t p0 = r0 * b.layout.row_stride;
      if (zero_point)
        kernels::affine_dequantize_zp_ref<T>(cd + r0 * b.cols, sd + p0, data_as<const uint8_t>(sh) + p0, b.layout,
                                             r1 - r0, b.cols, yd + r0 * b.cols);
      else
        kernels::affine_dequantize_ref<T>(cd + r0 * b.cols, sd + p0, sh.data_ptr<float>() + p0, b.layout, r1 - r0,
                                          b.cols, yd + r0 * b.cols);
    });
  });
  return ungrouped(y2d, g, concrete(spec.sizes));
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  // Each entry runs the device-generic implementation instead while the generic path is forced.
  using generic::CpuOrGeneric;
  m.impl("quantize_per_token", &CpuOrGeneric<&quantize_per_token, &generic::quantize_per_token>::call);
  m.impl("symmetric_quantize", &CpuOrGeneric<&symmetric_quantize, &generic::symmetric_quantize>::call);
  m.impl("symmetric_dequantize", &CpuOrGeneric<&symmetric_dequantize, &generic::symmetric_dequantize>::call);
  m.impl("affine_quantize", &CpuOrGeneric<&affine_quantize, &generic::affine_quantize>::call);
  m.impl("affine_dequantize", &CpuOrGeneric<&affine_dequantize, &generic::affine_dequantize>::call);
}


}  // namespace quanto::ops::cpu
