#include "quantize_tensor.h"

#include <ATen/ATen.h>

#include <quanto/ops.h>
#include <quanto/safetensors_aten.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace quanto::cli {
namespace {

using safetensors::Dtype;

Dtype storage_dtype(const QType& q) {
  if (q.bits < 8) return Dtype::U8;
  if (q.dtype == c10::ScalarType::Float8_e4m3fn) return Dtype::F8_E4M3;
  if (q.dtype == c10::ScalarType::Float8_e5m2) return Dtype::F8_E5M2;
  return Dtype::I8;
}

std::vector<uint64_t> u64(const std::vector<int64_t>& v) { return {v.begin(), v.end()}; }

// In chunks of ~1M elements, so the double-precision temporaries stay small next to the weight.
double sqnr_db(const at::Tensor& w, const at::Tensor& deq) {
  const at::Tensor a = w.reshape({-1}), b = deq.reshape({-1});
  const int64_t n = a.numel(), chunk = int64_t(1) << 20;
  double signal = 0, noise = 0;
  for (int64_t i = 0; i < n; i += chunk) {
    const int64_t len = std::min(chunk, n - i);
    const at::Tensor x = a.narrow(0, i, len).to(at::kDouble), y = b.narrow(0, i, len).to(at::kDouble);
    signal += x.square().sum().item<double>();
    noise += (x - y).square().sum().item<double>();
  }
  if (noise == 0) return std::numeric_limits<double>::infinity();
  if (signal == 0) return -std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(signal / noise);
}

}  // namespace

std::vector<OutSpec> output_specs(const TensorPlan& plan, const Settings& settings) {
  if (!plan.quantize) return {{plan.name, plan.dtype, u64(plan.shape)}};
  const QType& q = *settings.qtype;
  const Dtype sdt = settings.scale_dtype.value_or(plan.dtype);
  const std::string w = plan.module + ".weight";
  const auto& s = plan.qshape;
  int64_t numel = 1;
  for (auto d : s) numel *= d;
  std::vector<uint64_t> per_channel(s.size(), 1);
  per_channel[0] = static_cast<uint64_t>(s[0]);
  std::vector<OutSpec> out;
  if (q.bits == 8) {
    out.push_back({w + "._data", storage_dtype(q), u64(s)});
    out.push_back({w + "._scale", sdt, per_channel});
  } else {
    const uint64_t k = 8 / q.bits;
    std::vector<uint64_t> codes, params;
    if (plan.group_size) {
      codes = {static_cast<uint64_t>(numel / *plan.group_size), static_cast<uint64_t>(*plan.group_size)};
      params = {codes[0], 1};
    } else {
      codes = u64(s);
      params = per_channel;
    }
    std::vector<uint64_t> packed = codes;
    packed[0] = (codes[0] + k - 1) / k;
    out.push_back({w + "._data._data", Dtype::U8, packed});
    out.push_back({w + "._scale", sdt, params});
    out.push_back({w + "._shift", sdt, params});
  }
  out.push_back({plan.module + ".input_scale", plan.dtype, {}});
  out.push_back({plan.module + ".output_scale", plan.dtype, {}});
  return out;
}

QuantizedWeight quantize_weight(const at::Tensor& weight, const TensorPlan& plan, const Settings& settings) {
  const QType& q = *settings.qtype;
  const at::Tensor w = plan.transpose ? weight.t().contiguous() : weight;
  const auto sdt = safetensors::to_scalar_type(settings.scale_dtype.value_or(plan.dtype));
  const std::string name = plan.module + ".weight";
  QuantizedWeight out;
  at::Tensor deq;
  if (q.bits == 8) {
    at::Tensor scale = ops::absmax_scale(w, q.name, 0);
    at::Tensor data = ops::symmetric_quantize(w, scale, q.name, 0);
    scale = scale.to(sdt);
    deq = ops::symmetric_dequantize(data, scale);
    out.tensors.emplace_back(name + "._data", data.contiguous());
    out.tensors.emplace_back(name + "._scale", scale.contiguous());
  } else {
    auto [scale, shift] = settings.optimizer == "hqq" ? ops::hqq_scale_shift(w, q.name, 0, plan.group_size)
                                                      : ops::minmax_scale_shift(w, q.name, 0, plan.group_size);
    at::Tensor codes = ops::affine_quantize(w, scale, shift, q.name, 0, plan.group_size);
    at::Tensor packed = ops::pack_codes(codes, q.bits);
    scale = scale.to(sdt);
    shift = shift.to(sdt);
    deq = ops::affine_dequantize(codes, scale, shift, w.sizes(), 0, plan.group_size);
    out.tensors.emplace_back(name + "._data._data", packed.contiguous());
    out.tensors.emplace_back(name + "._scale", scale.contiguous());
    out.tensors.emplace_back(name + "._shift", shift.contiguous());
  }
  out.sqnr_db = sqnr_db(w, deq);
  const at::Tensor one = at::ones({}, w.options());
  out.tensors.emplace_back(plan.module + ".input_scale", one);
  out.tensors.emplace_back(plan.module + ".output_scale", one.clone());
  return out;
}

}  // namespace quanto::cli
