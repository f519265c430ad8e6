#include "ops/generic/generic_utils.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/full.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <c10/util/Exception.h>

#include <vector>

namespace quanto::ops::generic {

void check_device_dtype(const char* op, const at::Device& device, c10::ScalarType dtype) {
  const bool float8 = dtype == at::kFloat8_e4m3fn || dtype == at::kFloat8_e4m3fnuz || dtype == at::kFloat8_e5m2;
  const bool unsupported = device.is_mps() && (float8 || dtype == at::kDouble);
  TORCH_CHECK_TYPE(!unsupported, op, ": ", dtype, " tensors are not supported on ", device,
                   "; use qint8 weights or move the model to the CPU");
}

c10::ScalarType wide_float(const at::Device& device) { return device.is_mps() ? at::kFloat : at::kDouble; }

at::Tensor round_to(const at::Tensor& v, c10::ScalarType dtype) {
  return dtype == at::kFloat ? v : v.to(dtype).to(at::kFloat);
}

at::Tensor div_exact(const at::Tensor& a, double b) { return a / at::full({}, b, a.options()); }

at::Tensor quotient(const at::Tensor& num, const at::Tensor& scale, c10::ScalarType dtype) {
  return at::where(scale == 0, 0.0, round_to(num / scale, dtype));
}

at::Tensor round_clamp(const at::Tensor& v, double lo, double hi) {
  // Infinities survive nan_to_num's default replacement as ±float max and saturate below.
  return v.nan_to_num(0.0).round().clamp(lo, hi);
}

std::pair<at::Tensor, at::Tensor> minmax_params(const at::Tensor& mn, const at::Tensor& mx, int64_t code_max,
                                                c10::ScalarType dtype) {
  const double levels = static_cast<double>(code_max);
  const at::Tensor scale = round_to(div_exact(round_to(mx - mn, dtype), levels), dtype);
  // A constant group: a scale from its magnitude (or 1), so it still round-trips.
  at::Tensor fallback = round_to(div_exact(at::maximum(mn.abs(), mx.abs()), levels), dtype);
  fallback = at::where(fallback == 0, 1.0, fallback);
  return {at::where(scale == 0, fallback, scale).to(dtype), mn.neg().to(dtype)};
}

at::Tensor pack_planes(const at::Tensor& codes, int64_t dim, int64_t bits) {
  at::Tensor bytes = codes.select(dim, 0).clone();
  for (int64_t j = 1; j < 8 / bits; ++j) bytes.bitwise_or_(codes.select(dim, j).bitwise_left_shift(bits * j));
  return bytes;
}

at::Tensor unpack_planes(const at::Tensor& bytes, int64_t dim, int64_t bits) {
  const int64_t mask = (int64_t{1} << bits) - 1;
  std::vector<at::Tensor> planes;
  for (int64_t j = 0; j < 8 / bits; ++j) planes.push_back(bytes.bitwise_right_shift(bits * j).bitwise_and(mask));
  return at::stack(planes, dim);
}

at::Tensor fresh_contiguous(const at::Tensor& t, const at::Tensor& input) {
  return t.is_alias_of(input) ? t.clone(at::MemoryFormat::Contiguous) : t.contiguous();
}

}  // namespace quanto::ops::generic
