// Implementation of the shared quanto layer state machine (quanto::nn::detail::QModule). Included
// by layers.cpp only, which instantiates it for every layer type.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/module.h>

#include <quanto/nn.h>
#include <quanto/ops.h>

#include <string>

#include "weights/shape_util.h"

namespace quanto::nn {
namespace detail {

// The weight optimizer called `name` ("" picks the qtype's default); throws listing the names.
const WeightOptimizer& find_weight_optimizer(const std::string& name);
std::string default_optimizer_name(const QType& qtype);

inline bool is_float_storage(c10::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

using weights_detail::numel_of;

template <typename D>
void QModule<D>::reset() {
  reset_float();
  if (quantized_) {
    const auto opts = weight.defined() ? weight.options() : at::TensorOptions().dtype(at::kFloat);
    input_scale = this->register_buffer("input_scale", at::ones({}, opts));
    output_scale = this->register_buffer("output_scale", at::ones({}, opts));
  }
  if (frozen_ && weight_qtype_) {
    // Placeholders with the right dtypes; clone() then sets the real data.
    const bool byte_codes = weight_qtype_->bits < 8 || layout_ == WeightLayout::packed_w8a8;
    weight_data = this->register_buffer("weight_data", at::empty({0}, byte_codes ? at::kByte : weight_qtype_->dtype));
    weight_scale = this->register_buffer("weight_scale", at::empty({0}));
    if (weight_qtype_->bits < 8) weight_shift = this->register_buffer("weight_shift", at::empty({0}));
  }
}

template <typename D>
void QModule<D>::resolve_spec(const QuantSpec& spec) {
  const std::string who = kind();
  const QType* wq = nullptr;
  const QType* aq = nullptr;
  if (spec.weights != "none") {
    TORCH_CHECK_VALUE(can_quantize_weights(), who, ": weights are never quantized for this layer; use weights \"none\"");
    wq = find_qtype(spec.weights);
    TORCH_CHECK_VALUE(wq != nullptr, who, ": unknown weights qtype '", spec.weights, "'; valid names: none, ",
                      qtype_names());
  }
  if (spec.activations != "none") {
    TORCH_CHECK_VALUE(can_quantize_activations(), who, ": activations are not quantized for this layer; use \"none\"");
    aq = find_qtype(spec.activations);
    TORCH_CHECK_VALUE(aq != nullptr && aq->bits == 8, who, ": activations qtype must be none, qint8 or a float8 qtype ",
                      "(qfloat8, qfloat8_e4m3fn, qfloat8_e4m3fnuz, qfloat8_e5m2), got '", spec.activations, "'");
  }
  if (spec.dynamic_activations) {
    TORCH_CHECK_VALUE(aq != nullptr, who, ": dynamic_activations needs an activations qtype (qint8 or a float8 qtype)");
    TORCH_CHECK_VALUE(can_quantize_activations_dynamically(), who,
                      ": dynamic (per-token) activations apply to QLinear only; use static activations or none");
  }
  TORCH_CHECK_VALUE(wq || aq, who, ": nothing to quantize (weights and activations are both \"none\")");
  std::optional<int64_t> gs;
  if (wq) {
    find_weight_optimizer(spec.optimizer.empty() ? default_optimizer_name(*wq) : spec.optimizer);
    const bool for_bits = spec.optimizer == "minmax" || spec.optimizer == "symmetric" || spec.optimizer == "hqq" ||
                          spec.optimizer == "gptq";
    TORCH_CHECK_VALUE(!(spec.optimizer == "absmax" && wq->bits < 8) && !(for_bits && wq->bits == 8), who,
                      ": optimizer '", spec.optimizer, "' does not apply to ", wq->name,
                      " (absmax: 8-bit qtypes; minmax, symmetric, hqq and gptq: qint2/qint4)");
    const auto shape = weight_shape();
    const int64_t in = numel_of(shape) / shape.at(0);
    if (wq->bits < 8) {
      if (spec.group_size) {
        TORCH_CHECK_VALUE(*spec.group_size > 0 && in % *spec.group_size == 0, who, ": group_size ", *spec.group_size,
                          " must divide the ", in, " input features of the weight");
        gs = spec.group_size;
      } else {
        gs = default_group_size(in);
      }
    }
  }
  spec_ = spec;
  weight_qtype_ = wq;
  activation_qtype_ = aq;
  group_size_ = gs;
}

template <typename D>
void QModule<D>::quantize(const QuantSpec& spec) {
  TORCH_CHECK_VALUE(!frozen_, kind(), ": the layer is frozen; quantize() applies to float or not yet frozen layers");
  resolve_spec(spec);
  if (!quantized_) {
    const auto opts = weight.defined() ? weight.options() : at::TensorOptions().dtype(at::kFloat);
    input_scale = this->register_buffer("input_scale", at::ones({}, opts.requires_grad(false)));
    output_scale = this->register_buffer("output_scale", at::ones({}, opts.requires_grad(false)));
    quantized_ = true;
  }
}

template <typename D>
QWeight QModule<D>::qweight() const {
  TORCH_CHECK_VALUE(weight_qtype_ != nullptr, kind(), ": weights are not quantized");
  if (frozen_) return QWeight::wrap(*weight_qtype_, weight_shape(), group_size_, layout_, weight_data, weight_scale,
                                    weight_shift);
  at::NoGradGuard no_grad;
  const at::Tensor wf = weight.detach();
  const auto& opt = find_weight_optimizer(spec_.optimizer.empty() ? default_optimizer_name(*weight_qtype_) : spec_.optimizer);
  auto [scale, shift] = opt(wf, *weight_qtype_, group_size_);
  return QWeight::quantize(wf, *weight_qtype_, group_size_, scale,
                           shift.defined() ? std::optional<at::Tensor>(shift) : std::nullopt, spec_.zero_point);
}

template <typename D>
void QModule<D>::install_frozen(const QWeight& w_in) {
  // The layout the kernels of this device (and CPU kernel set) read; files keep the canonical one.
  const QWeight w = w_in.with_layout(choose_layout(*weight_qtype_, weight_shape(), group_size_, w_in.device(),
                                                   activation_qtype_, is_linear()));
  if (this->parameters_.contains("weight")) this->parameters_.erase("weight");
  weight = at::Tensor();
  // Not frozen before, so the weight_* buffers do not exist yet (buffers cannot be removed).
  layout_ = w.layout();
  if (w.bytes.defined()) {
    weight_data = this->register_buffer("weight_data", w.bytes.data());
    weight_scale = this->register_buffer("weight_scale", w.bytes.scale());
    weight_shift = at::Tensor();
  } else {
    weight_data = this->register_buffer("weight_data", w.bits.data());
    weight_scale = this->register_buffer("weight_scale", w.bits.scale());
    weight_shift = this->register_buffer("weight_shift", w.bits.shift());
  }
  frozen_ = true;
}

template <typename D>
void QModule<D>::accumulate_hessian(const at::Tensor& x) {
  at::NoGradGuard no_grad;
  const at::Tensor x2 = x.detach().reshape({-1, x.size(-1)}).to(at::kDouble);
  const at::Tensor xtx = at::mm(x2.t(), x2);
  hessian_ = hessian_.defined() ? hessian_ + xtx : xtx;
  hessian_rows_ += x2.size(0);
}

template <typename D>
void QModule<D>::freeze() {
  if (frozen_ || !quantized_ || !weight_qtype_) return;
  if (spec_.optimizer == "gptq" && kind() == "QLinear") {
    // GPTQ (ops::gptq_quantize) on the inputs recorded by Calibration: act-order, 10% dampening
    // (measured better than the paper's 1% without act-order on MiniLM and SmolLM2). Other
    // layers (embeddings, convolutions) given "gptq" keep its min/max grid.
    TORCH_CHECK_VALUE(hessian_rows_ > 0, kind(), ": the 'gptq' optimizer needs calibration data: run sample batches ",
                      "inside a quanto::Calibration scope before freeze");
    at::NoGradGuard no_grad;
    const at::Tensor wf = weight.detach().contiguous();
    auto [codes, scale, shift] = ops::gptq_quantize(wf, (2.0 * hessian_ / static_cast<double>(hessian_rows_)).to(wf.device()),
                                                    weight_qtype_->name, group_size_, 0.1, 128, true);
    QWeight w;
    w.bits = QBitsWeight(*weight_qtype_, weight_shape(), group_size_, ops::pack_codes(codes, weight_qtype_->bits),
                         scale, shift);
    hessian_ = at::Tensor();
    hessian_rows_ = 0;
    install_frozen(w);
    return;
  }
  install_frozen(qweight());
}

template <typename D>
std::string QModule<D>::state_key(const std::string& name) const {
  if (!weight_qtype_) return name;
  const WeightFormat& f = weight_format(*weight_qtype_);
  if (name == "weight_data") return std::string(f.data_key);
  if (name == "weight_scale") return std::string(f.scale_key);
  if (name == "weight_shift" && !f.shift_key.empty()) return std::string(f.shift_key);
  return name;
}

template <typename D>
std::vector<std::pair<std::string, at::Tensor>> QModule<D>::export_state() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  const bool quantized_weight = weight_qtype_ != nullptr;
  for (const auto& p : this->named_parameters(/*recurse=*/false)) {
    if (p.key() == "weight" && quantized_weight) continue;  // exported below in quantized form
    out.emplace_back(p.key(), p.value().detach());
  }
  if (quantized_weight) {
    for (auto& kv : qweight().state()) out.push_back(std::move(kv));
  }
  for (const auto& b : this->named_buffers(/*recurse=*/false)) {
    if (b.key() == "weight_data" || b.key() == "weight_scale" || b.key() == "weight_shift") continue;
    out.emplace_back(b.key(), b.value().detach());
  }
  return out;
}

template <typename D>
void QModule<D>::load_quantized(const QuantSpec& spec,
                                const std::function<std::optional<at::Tensor>(const std::string&)>& get,
                                c10::Device device) {
  TORCH_CHECK_VALUE(!frozen_, kind(), ": the layer is already frozen; requantize into a freshly built float model");
  quantize(spec);
  if (!weight_qtype_) return;
  // Private, writable copies on the target device (file tensors view read-only memory).
  QWeight w = QWeight::from_state(*weight_qtype_, weight_shape(), group_size_,
                                  [&](const std::string& key) -> std::optional<at::Tensor> {
                                    auto t = get(key);
                                    if (!t) return std::nullopt;
                                    return t->to(device, /*non_blocking=*/false, /*copy=*/true);
                                  });
  // Scales follow the model's float dtype (as the other float parameters do on load).
  install_frozen(w.to(weight.defined() ? weight.scalar_type() : at::kFloat));
}

template <typename D>
void QModule<D>::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  to(device, non_blocking);
  to(dtype, non_blocking);
}

template <typename D>
void QModule<D>::to(torch::Dtype dtype, bool non_blocking) {
  for (auto& p : this->named_parameters(false))
    if (is_float_storage(p.value().scalar_type())) p.value().set_data(p.value().to(dtype, non_blocking));
  for (auto& b : this->named_buffers(false)) {
    // A zero-point shift stays uint8 and codes keep their storage dtype.
    if (is_float_storage(b.value().scalar_type())) b.value().set_data(b.value().to(dtype, non_blocking));
  }
}

template <typename D>
void QModule<D>::to(torch::Device device, bool non_blocking) {
  if (frozen_ && weight_qtype_) {
    // Through the canonical layout, into the one the destination's kernels read (exact); also on
    // the same device, whose kernel set may have changed (a forced generic path).
    const QWeight w = qweight().to(device, activation_qtype_, is_linear());
    layout_ = w.layout();
    weight_data.set_data(w.bytes.defined() ? w.bytes.data() : w.bits.data());
  }
  for (auto& p : this->named_parameters(false)) p.value().set_data(p.value().to(device, non_blocking));
  for (auto& b : this->named_buffers(false)) b.value().set_data(b.value().to(device, non_blocking));
}

template <typename D>
void QModule<D>::calibrate_input(const at::Tensor& x) {
  // Dynamic activations have no scale to calibrate: Calibration leaves the layer alone.
  if (!activation_qtype_ || dynamic_activations()) return;
  auto m = calibration_momentum();
  if (!m) return;
  if (const at::Tensor producer_scale = calibration_producer_scale(x, *activation_qtype_); producer_scale.defined()) {
    at::NoGradGuard no_grad;
    input_scale.copy_(producer_scale);
  } else {
    update_scale(input_scale, x, *activation_qtype_, *m);
  }
}

namespace {
inline at::Tensor fake_quantize(const at::Tensor& x, const QType& qtype, const at::Tensor& scale) {
  at::Tensor q;
  {
    at::NoGradGuard no_grad;
    q = QActivation::quantize(x.detach(), qtype, scale).dequantize().to(x.scalar_type());
  }
  return x.requires_grad() ? straight_through(x, q) : q;
}
}  // namespace

template <typename D>
at::Tensor QModule<D>::quantize_input(const at::Tensor& x) {
  if (!activation_qtype_) return x;
  if (dynamic_activations()) {
    at::Tensor q;
    {
      at::NoGradGuard no_grad;
      q = QActivation::quantize_per_token(x.detach(), *activation_qtype_).dequantize().to(x.scalar_type());
    }
    return x.requires_grad() ? straight_through(x, q) : q;
  }
  calibrate_input(x);
  return fake_quantize(x, *activation_qtype_, input_scale);
}

template <typename D>
at::Tensor QModule<D>::quantize_output(const at::Tensor& y) {
  if (!activation_qtype_ || dynamic_activations()) return y;  // dynamic layers output float
  if (auto m = calibration_momentum()) {
    update_scale(output_scale, y, *activation_qtype_, *m);
    at::Tensor out = fake_quantize(y, *activation_qtype_, output_scale);
    calibration_note_output(*this, out, output_scale);
    return out;
  }
  return quantize_output_ ? fake_quantize(y, *activation_qtype_, output_scale) : y;
}

template <typename D>
at::Tensor QModule<D>::effective_weight() const {
  if (!weight_qtype_) return weight;
  if (frozen_) return qweight().dequantize();
  at::Tensor q = qweight().dequantize().to(weight.scalar_type());
  return weight.requires_grad() && at::GradMode::is_enabled() ? straight_through(weight, q) : q;
}

}  // namespace detail
}  // namespace quanto::nn
