// The quanto layers: float behaviour identical to the torch layers, quantized behaviour through
// quanto::ops.
#include "nn/qmodule_impl.h"

#include <torch/nn/init.h>

#include <cmath>
#include <variant>

namespace quanto::nn {

template class detail::QModule<QLinearImpl>;
template class detail::QModule<QConv1dImpl>;
template class detail::QModule<QConv2dImpl>;
template class detail::QModule<QLayerNormImpl>;
template class detail::QModule<QRMSNormImpl>;
template class detail::QModule<QEmbeddingImpl>;

QModuleInterface* as_qmodule(torch::nn::Module& module) { return dynamic_cast<QModuleInterface*>(&module); }
const QModuleInterface* as_qmodule(const torch::nn::Module& module) {
  return dynamic_cast<const QModuleInterface*>(&module);
}

namespace {

// torch's default initialisation of Linear/Conv weights and biases.
void init_weight_bias(at::Tensor& weight, at::Tensor& bias, int64_t fan_in) {
  if (weight.defined()) torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
    torch::nn::init::uniform_(bias, -bound, bound);
  }
}

std::optional<at::Tensor> opt(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Training a layer that is quantized but not frozen: fake quantization with straight-through
// gradients instead of the fused inference kernels.
bool training_path(bool frozen, const at::Tensor& weight, const at::Tensor& x) {
  return !frozen && at::GradMode::is_enabled() && (weight.requires_grad() || x.requires_grad());
}

}  // namespace

// ---- QLinear ----

QLinearImpl::QLinearImpl(const torch::nn::LinearOptions& options_) : options(options_) { reset(); }

void QLinearImpl::reset_float() {
  if (keeps_float_weight())
    weight = register_parameter("weight", at::empty({options.out_features(), options.in_features()}));
  if (options.bias()) bias = register_parameter("bias", at::empty({options.out_features()}));
  init_weight_bias(weight, bias, options.in_features());
}

void QLinearImpl::pretty_print(std::ostream& stream) const {
  stream << "quanto::nn::QLinear(in_features=" << options.in_features() << ", out_features=" << options.out_features()
         << ", bias=" << (options.bias() ? "true" : "false");
  if (weight_qtype_) stream << ", weights=" << weight_qtype_->name;
  if (activation_qtype_) stream << ", activations=" << activation_qtype_->name;
  if (dynamic_activations()) stream << " (dynamic, per token)";
  if (group_size_) stream << ", group_size=" << *group_size_;
  if (frozen_) stream << ", frozen";
  stream << ")";
}

at::Tensor QLinearImpl::forward(const at::Tensor& x) {
  if (!quantized_) return at::linear(x, weight, bias);
  if (needs_calibration() && detail::calibration_momentum()) {
    // GPTQ calibration: record X^T X and run the float weight (Hessians of the float model).
    accumulate_hessian(x);
    return quantize_output(at::linear(quantize_input(x), weight, bias));
  }
  if (!weight_qtype_ || training_path(frozen_, weight, x)) {
    return quantize_output(at::linear(quantize_input(x), effective_weight(), bias));
  }
  const QWeight w = qweight();
  at::Tensor y;
  if (activation_qtype_ && activation_qtype_->name == "qint8" &&
      (weight_qtype_->name == "qint8" || weight_qtype_->name == "qint4")) {
    // int8 activations x int8 (W8A8) or 4-bit (W4A8) weights with int32 accumulation: the
    // activation codes go to the kernel as they are, with one scale per token (dynamic) or the
    // calibrated per-tensor one (static).
    calibrate_input(x);
    const QActivation qx = dynamic_activations() ? QActivation::quantize_per_token(x, *activation_qtype_)
                                                 : QActivation::quantize(x, *activation_qtype_, input_scale);
    y = w.linear_w8a8(x, qx.data(), qx.scale(), opt(bias), x.scalar_type());
  } else {
    y = w.linear(quantize_input(x), opt(bias));
  }
  return quantize_output(y);
}

// ---- Convolutions ----

namespace {

template <size_t D, typename Options>
std::vector<int64_t> conv_weight_shape(const Options& o) {
  std::vector<int64_t> s{o.out_channels(), o.in_channels() / o.groups()};
  for (size_t i = 0; i < D; ++i) s.push_back((*o.kernel_size())[i]);
  return s;
}

template <size_t D, typename Options>
void check_conv_options(const Options& o) {
  TORCH_CHECK_VALUE(o.groups() > 0 && o.in_channels() % o.groups() == 0 && o.out_channels() % o.groups() == 0,
                    "QConv: in_channels and out_channels must be divisible by groups");
  TORCH_CHECK_VALUE(std::holds_alternative<torch::enumtype::kZeros>(o.padding_mode()),
                    "QConv: only the zeros padding mode is supported");
}

template <size_t D, typename Options>
at::Tensor run_conv(const Options& o, const at::Tensor& x, const at::Tensor& w, const at::Tensor& b) {
  const auto& pad = o.padding();
  const at::IntArrayRef stride(*o.stride()), dilation(*o.dilation());
  if (std::holds_alternative<torch::ExpandingArray<D>>(pad)) {
    const at::IntArrayRef padding(*std::get<torch::ExpandingArray<D>>(pad));
    return D == 1 ? at::conv1d(x, w, opt(b), stride, padding, dilation, o.groups())
                  : at::conv2d(x, w, opt(b), stride, padding, dilation, o.groups());
  }
  const c10::string_view mode = std::holds_alternative<torch::enumtype::kValid>(pad) ? "valid" : "same";
  return D == 1 ? at::conv1d(x, w, opt(b), stride, mode, dilation, o.groups())
                : at::conv2d(x, w, opt(b), stride, mode, dilation, o.groups());
}

}  // namespace

QConv1dImpl::QConv1dImpl(const torch::nn::Conv1dOptions& options_) : options(options_) {
  check_conv_options<1>(options);
  reset();
}

std::vector<int64_t> QConv1dImpl::weight_shape() const { return conv_weight_shape<1>(options); }

void QConv1dImpl::reset_float() {
  const auto shape = weight_shape();
  if (keeps_float_weight()) weight = register_parameter("weight", at::empty(shape));
  if (options.bias()) bias = register_parameter("bias", at::empty({options.out_channels()}));
  init_weight_bias(weight, bias, detail::numel_of(shape) / shape[0]);
}

at::Tensor QConv1dImpl::forward(const at::Tensor& x) {
  if (!quantized_) return run_conv<1>(options, x, weight, bias);
  return quantize_output(run_conv<1>(options, quantize_input(x), effective_weight(), bias));
}

QConv2dImpl::QConv2dImpl(const torch::nn::Conv2dOptions& options_) : options(options_) {
  check_conv_options<2>(options);
  reset();
}

std::vector<int64_t> QConv2dImpl::weight_shape() const { return conv_weight_shape<2>(options); }

void QConv2dImpl::reset_float() {
  const auto shape = weight_shape();
  if (keeps_float_weight()) weight = register_parameter("weight", at::empty(shape));
  if (options.bias()) bias = register_parameter("bias", at::empty({options.out_channels()}));
  init_weight_bias(weight, bias, detail::numel_of(shape) / shape[0]);
}

at::Tensor QConv2dImpl::forward(const at::Tensor& x) {
  if (!quantized_) return run_conv<2>(options, x, weight, bias);
  return quantize_output(run_conv<2>(options, quantize_input(x), effective_weight(), bias));
}

// ---- Norms ----

QLayerNormImpl::QLayerNormImpl(const torch::nn::LayerNormOptions& options_) : options(options_) { reset(); }

void QLayerNormImpl::reset_float() {
  if (options.elementwise_affine()) {
    weight = register_parameter("weight", at::ones(options.normalized_shape()));
    bias = register_parameter("bias", at::zeros(options.normalized_shape()));
  }
}

at::Tensor QLayerNormImpl::forward(const at::Tensor& x) {
  at::Tensor y = at::layer_norm(x, options.normalized_shape(), opt(weight), opt(bias), options.eps());
  if (!quantized_) return y;
  calibrate_input(x);  // recorded like every quantized layer's input; the norm reads float input
  return quantize_output(y);
}

QRMSNormImpl::QRMSNormImpl(const RMSNormOptions& options_) : options(options_) { reset(); }

void QRMSNormImpl::reset_float() { weight = register_parameter("weight", at::ones({options.dim()})); }

at::Tensor QRMSNormImpl::forward(const at::Tensor& x) {
  TORCH_CHECK_VALUE(x.dim() >= 1 && x.size(-1) == options.dim(), "QRMSNorm: input's last dim must be ", options.dim(),
                    ", got shape ", x.sizes());
  const at::Tensor xf = x.to(at::kFloat);
  const at::Tensor normed = (xf * at::rsqrt(xf.pow(2).mean({-1}, /*keepdim=*/true) + options.eps())).to(x.scalar_type());
  at::Tensor y = weight * normed;
  if (!quantized_) return y;
  calibrate_input(x);
  return quantize_output(y);
}

// ---- Embedding ----

QEmbeddingImpl::QEmbeddingImpl(const torch::nn::EmbeddingOptions& options_) : options(options_) {
  TORCH_CHECK_VALUE(!options.max_norm().has_value(), "QEmbedding: max_norm is not supported");
  TORCH_CHECK_VALUE(!options.sparse(), "QEmbedding: sparse gradients are not supported");
  if (options.padding_idx()) {
    int64_t& p = *options.padding_idx();
    TORCH_CHECK_VALUE(p < options.num_embeddings() && p >= -options.num_embeddings(),
                      "QEmbedding: padding_idx must be within num_embeddings");
    if (p < 0) p += options.num_embeddings();
  }
  reset();
}

void QEmbeddingImpl::reset_float() {
  if (!keeps_float_weight()) return;
  weight = register_parameter("weight", at::empty({options.num_embeddings(), options.embedding_dim()}));
  torch::nn::init::normal_(weight);
  if (options.padding_idx()) {
    at::NoGradGuard no_grad;
    weight[*options.padding_idx()].fill_(0);
  }
}

at::Tensor QEmbeddingImpl::forward(const at::Tensor& indices) {
  const int64_t pad = options.padding_idx().value_or(-1);
  if (!quantized_) return at::embedding(weight, indices, pad);
  if (training_path(frozen_, weight, indices)) return at::embedding(effective_weight(), indices, pad);
  // Dequantize only the rows that are read.
  const QWeight w = qweight();
  const at::Tensor flat = indices.reshape({-1});
  std::vector<int64_t> out_shape = indices.sizes().vec();
  out_shape.push_back(options.embedding_dim());
  if (w.bytes.defined()) {
    return ops::symmetric_dequantize(w.bytes.data().index_select(0, flat), w.bytes.scale().index_select(0, flat))
        .reshape(out_shape);
  }
  // 2/4-bit: row r holds groups r*G … r*G+G-1 of the grouped codes; in the canonical packing,
  // group g sits in packed row g % R at bit offset bits * (g / R).
  const QBitsWeight c = w.bits.to_canonical();
  const int64_t gs = c.kernel_group_size(), G = options.embedding_dim() / gs, bits = c.bits();
  const int64_t R = c.data().size(0);
  const at::Tensor groups =
      (flat.unsqueeze(1) * G + at::arange(G, flat.options())).reshape({-1});  // [n * G]
  const at::Tensor bytes = c.data().index_select(0, at::remainder(groups, R));
  const at::Tensor shifts = (at::floor_divide(groups, R) * bits).to(at::kByte).unsqueeze(1);
  const at::Tensor codes = at::bitwise_and(at::bitwise_right_shift(bytes, shifts), (1 << bits) - 1);
  const int64_t n = flat.size(0);
  return ops::affine_dequantize(codes, c.scale().index_select(0, groups), c.shift().index_select(0, groups),
                                {n, options.embedding_dim()}, 0, gs)
      .reshape(out_shape);
}

}  // namespace quanto::nn
