#include "quantize_tensor.h"

#include <ATen/ATen.h>

#include <quanto/ops.h>
#include <quanto/safetensors_aten.h>
#include <quanto/weights.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace quanto::cli {
namespace {

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
  const auto param_dtype = safetensors::to_scalar_type(settings.scale_dtype.value_or(plan.dtype));
  std::vector<OutSpec> out;
  for (const StoredTensor& t :
       weight_format(q).stored(q, plan.qshape, plan.group_size, param_dtype, settings.zero_point))
    out.push_back({plan.module + "." + t.key, safetensors::from_scalar_type(t.dtype), u64(t.shape)});
  for (std::string_view key : {kInputScaleKey, kOutputScaleKey})
    out.push_back({plan.module + "." + std::string(key), plan.dtype, {}});
  return out;
}

QuantizedWeight quantize_weight(const at::Tensor& weight, const TensorPlan& plan, const Settings& settings) {
  const QType& q = *settings.qtype;
  const at::Tensor w = plan.transpose ? weight.t().contiguous() : weight;
  const auto sdt = safetensors::to_scalar_type(settings.scale_dtype.value_or(plan.dtype));
  std::optional<at::Tensor> scale, shift;
  if (q.bits < 8) {
    auto [s, sh] = settings.optimizer == "hqq"         ? ops::hqq_scale_shift(w, q.name, 0, plan.group_size)
                   : settings.optimizer == "symmetric" ? ops::symmetric_scale_shift(w, q.name, 0, plan.group_size)
                                                       : ops::minmax_scale_shift(w, q.name, 0, plan.group_size);
    scale = s;
    shift = sh;
  }
  // Codes from the float32 parameters; the stored parameters (and the error) in the output dtype.
  const QWeight qw = QWeight::quantize(w, q, plan.group_size, scale, shift, settings.zero_point).to(sdt);
  QuantizedWeight out;
  for (auto& [key, t] : qw.state()) out.tensors.emplace_back(plan.module + "." + key, t.contiguous());
  out.sqnr_db = sqnr_db(w, qw.dequantize());
  const at::Tensor one = at::ones({}, w.options());
  out.tensors.emplace_back(plan.module + "." + std::string(kInputScaleKey), one);
  out.tensors.emplace_back(plan.module + "." + std::string(kOutputScaleKey), one.clone());
  return out;
}

}  // namespace quanto::cli
