// Quantizable layers for LibTorch C++ models.
//
// Why quanto has its own layer types: a C++ model calls its children through typed members
// (`fc1->forward(x)` on a torch::nn::Linear), so a quantizer cannot swap a torch::nn::Linear for
// another class behind the model's back. quanto's layers are therefore quantizable in place:
// build the model with quanto::nn::QLinear (drop-in for torch::nn::Linear: same options, same
// parameter names "weight"/"bias", same initialisation and float results), and quanto::quantize /
// quanto::freeze / quanto::requantize turn those layers into quantized ones without touching the
// model's code. Until then each layer is an ordinary float layer.
//
//   struct NetImpl : torch::nn::Cloneable<NetImpl> {
//     quanto::nn::QLinear fc1{nullptr}, fc2{nullptr};
//     void reset() override {
//       fc1 = register_module("fc1", quanto::nn::QLinear(16, 64));
//       fc2 = register_module("fc2", quanto::nn::QLinear(64, 4));
//     }
//     at::Tensor forward(at::Tensor x) { return fc2(torch::relu(fc1(x))); }
//   };
//
// States of a layer (is_quantized(), is_frozen()):
//  - float: behaves like the torch layer.
//  - quantized, not frozen (after quantize()): weights stay float parameters and forward
//    quantizes them on the fly; with autograd on, gradients flow straight through the rounding
//    (quantization-aware training). Buffers input_scale / output_scale (0-dim) are added.
//  - frozen (after freeze() or requantize()): the float "weight" parameter is gone; buffers
//    weight_data, weight_scale (and weight_shift for 2/4 bits) hold the quantized weight.
//    (C++ buffer names cannot hold dots: quanto::save maps them to the state-dict keys of the
//    weight's format, quanto::WeightFormat.)
//
// Activations (qint8 / qfloat8*): the input and the output of a layer are quantized per tensor
// with the static scales input_scale / output_scale (1.0 until calibrated, see quanto::Calibration).
// Layers exchange float tensors holding the dequantized values, except QLinear with int8 weights
// and int8 activations, which feeds the int8 codes to the fused W8A8 kernel.
// Dynamic activations (QuantSpec::dynamic_activations, QLinear only): the input is quantized per
// token with scales computed from it at run time (no calibration; input_scale / output_scale stay
// 1 and unused), and the output stays float.
// QLayerNorm / QRMSNorm never quantize their weights (nor their input); they quantize their output
// when activations are set. QEmbedding quantizes its weights only.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/options/conv.h>
#include <torch/nn/options/embedding.h>
#include <torch/nn/options/linear.h>
#include <torch/nn/options/normalization.h>
#include <torch/nn/pimpl.h>

#include <quanto/qtype.h>
#include <quanto/tensor.h>
#include <quanto/weights.h>

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace quanto {

// How one layer is quantized. quanto::Config (quantize.h) turns into one of these per layer.
struct QuantSpec {
  std::string weights = "none";      // qtype name ("qint8", "qint4", "qfloat8", ...) or "none"
  std::string activations = "none";  // "none", "qint8" or a float8 qtype name
  std::string optimizer;             // "" = default for the qtype ("absmax" 8-bit, "minmax" 2/4-bit)
  std::optional<int64_t> group_size; // 2/4-bit only; nullopt = docs/format.md's default rule
  bool zero_point = false;           // 2/4-bit only: uint8 integer zero-point instead of a float shift
  // With activations set: quantize each input per token at run time (scales from the data, no
  // calibration) instead of per tensor with calibrated static scales; the output stays float.
  // Linear layers only (QModuleInterface::can_quantize_activations_dynamically).
  bool dynamic_activations = false;
};

// Weight optimizers compute the quantization parameters of a float weight: (scale, shift) for
// 2/4-bit qtypes (grouped along axis 0 when group_size is set), (scale, undefined) for 8-bit.
// Built in: "absmax" (8-bit), "minmax" and "hqq" (2/4-bit: half-quadratic optimization of the
// shift, quanto::ops::hqq_scale_shift). Others can be registered.
using WeightOptimizer = std::function<std::pair<at::Tensor, at::Tensor>(
    const at::Tensor& weight, const QType& qtype, std::optional<int64_t> group_size)>;
void register_weight_optimizer(const std::string& name, WeightOptimizer optimizer);
// Names of the registered optimizers, for error messages.
std::vector<std::string> weight_optimizer_names();

namespace nn {

// A quantized weight in one of the two formats (quanto/weights.h owns them).
using QWeight = quanto::QWeight;

// What every quanto layer offers, whatever its type (find them with dynamic_cast on a
// torch::nn::Module, or quanto::nn::as_qmodule).
class QModuleInterface {
 public:
  virtual ~QModuleInterface() = default;

  virtual std::string kind() const = 0;            // "QLinear", "QConv2d", ...
  virtual bool can_quantize_weights() const = 0;   // false for the norms
  virtual bool can_quantize_activations() const = 0;  // false for QEmbedding
  // Per-token dynamic activations need a token dimension feeding a matmul: QLinear only.
  virtual bool can_quantize_activations_dynamically() const { return false; }

  // Quantizes the layer (float -> quantized, not frozen), or changes its spec before freezing.
  // Validates names and the group size against the weight's shape.
  virtual void quantize(const QuantSpec& spec) = 0;
  // Replaces the float weight by its quantized form (no-op when frozen or weights are "none").
  virtual void freeze() = 0;

  const QuantSpec& spec() const { return spec_; }
  const QType* weight_qtype() const { return weight_qtype_; }          // nullptr when not quantized
  const QType* activation_qtype() const { return activation_qtype_; }  // nullptr when "none"
  // Activations quantized per token at run time (spec().dynamic_activations with activations set).
  bool dynamic_activations() const { return activation_qtype_ != nullptr && spec_.dynamic_activations; }
  bool is_quantized() const { return quantized_; }
  bool is_frozen() const { return frozen_; }
  // Whether forward quantizes the layer's output (activations set). A quanto::Calibration scope
  // clears it for layers whose output was never read directly by another quantized layer (it
  // only fed residual adds, activations, reshapes...): quantizing it would add error for no
  // integer kernel to use, as optimum-quanto's default "streamline" calibration decides. Saved
  // in quanto's metadata; files without it (optimum-quanto's) quantize every output.
  bool quantizes_output() const { return quantize_output_; }
  void set_quantizes_output(bool on) { quantize_output_ = on; }
  // The group size in use (2/4-bit weights), nullopt = one group per output channel.
  std::optional<int64_t> weight_group_size() const { return group_size_; }
  // The float weight's shape (also known once frozen).
  virtual std::vector<int64_t> weight_shape() const = 0;
  // The quantized weight: the frozen one, or quantized now from the float weight.
  virtual QWeight qweight() const = 0;

  // ---- used by quanto::save / quanto::requantize ----
  // Every own parameter and buffer under its optimum-quanto state_dict key (relative to the
  // layer), weights in the canonical layout; a not-frozen layer exports its quantized weight.
  virtual std::vector<std::pair<std::string, at::Tensor>> export_state() const = 0;
  // The file key of an own parameter/buffer name (weight_data -> the format's data key, ...).
  virtual std::string state_key(const std::string& name) const = 0;
  // Installs a frozen quantized weight read from a file. `get(key)` returns the tensor stored
  // under the layer-relative key, or nullopt. Errors name the missing key or the bad shape.
  virtual void load_quantized(const QuantSpec& spec,
                              const std::function<std::optional<at::Tensor>(const std::string&)>& get,
                              c10::Device device) = 0;

 protected:
  QuantSpec spec_;
  const QType* weight_qtype_ = nullptr;
  const QType* activation_qtype_ = nullptr;
  std::optional<int64_t> group_size_;
  bool quantized_ = false;
  bool frozen_ = false;
  bool quantize_output_ = true;
};

// The quanto layer inside `module`, or nullptr.
QModuleInterface* as_qmodule(torch::nn::Module& module);
const QModuleInterface* as_qmodule(const torch::nn::Module& module);

namespace detail {

// Shared state machine of every quanto layer: registration of buffers per state, calibration
// and fake quantization of activations, on-the-fly or frozen weights, dtype conversion that
// leaves integer/float8 storage alone, save/load hooks. Layers derive from it with CRTP.
template <typename Derived>
class QModule : public torch::nn::Cloneable<Derived>, public QModuleInterface {
 public:
  using torch::nn::Cloneable<Derived>::Cloneable;

  // Registers parameters and buffers for the current state (also called by clone()).
  void reset() final;

  void quantize(const QuantSpec& spec) override;
  void freeze() override;
  QWeight qweight() const override;
  std::vector<std::pair<std::string, at::Tensor>> export_state() const override;
  std::string state_key(const std::string& name) const override;
  void load_quantized(const QuantSpec& spec,
                      const std::function<std::optional<at::Tensor>(const std::string&)>& get,
                      c10::Device device) override;

  // Converts floating-point parameters and scales only (codes keep their storage dtype).
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

  // Float parameters (as in the torch layer). `weight` is undefined once frozen.
  at::Tensor weight, bias;
  // Activation scales (0-dim), defined once quantized.
  at::Tensor input_scale, output_scale;
  // Quantized weight storage, defined once frozen (weight_shift for 2/4-bit only).
  at::Tensor weight_data, weight_scale, weight_shift;

 protected:
  // Implemented by each layer: register (and initialise) its float parameters; the float
  // weight only when keeps_float_weight() (a frozen layer has none).
  virtual void reset_float() = 0;
  bool keeps_float_weight() const { return !(frozen_ && weight_qtype_); }
  // True for layers whose frozen weight feeds the linear ops (QWeight::linear), so freeze/load
  // may hold it in a CPU kernel layout (quanto::choose_layout); others keep the canonical one.
  virtual bool is_linear() const { return false; }

  // Activation helpers for forward(): calibrate (inside a quanto::Calibration scope) then
  // fake-quantize with straight-through gradients. Identity when activations are "none".
  at::Tensor quantize_input(const at::Tensor& x);
  at::Tensor quantize_output(const at::Tensor& y);
  void calibrate_input(const at::Tensor& x);
  // The weight as a float tensor for ops without a fused quantized kernel (convolutions,
  // training): dequantized when frozen, fake-quantized with straight-through gradients before.
  at::Tensor effective_weight() const;

 private:
  void resolve_spec(const QuantSpec& spec);
  void install_frozen(const QWeight& w);
  // The layout of weight_data once frozen.
  WeightLayout layout_ = WeightLayout::canonical;

 protected:
  // Optimizers that need calibration ("gptq"): X^T X of the inputs seen inside Calibration.
  bool needs_calibration() const { return weight_qtype_ && !frozen_ && spec_.optimizer == "gptq"; }
  void accumulate_hessian(const at::Tensor& x);
  at::Tensor hessian_;
  int64_t hessian_rows_ = 0;
};

// True while a quanto::Calibration scope is open on this thread; the momentum it uses.
std::optional<double> calibration_momentum();
// new = absmax(|x|) / qmax; scale := new if scale == 1 exactly, else m * scale + (1 - m) * new.
void update_scale(at::Tensor& scale, const at::Tensor& x, const QType& qtype, double momentum);
// Calibration bookkeeping (no-ops outside a quanto::Calibration scope): a quantized layer notes
// the output it returns; a layer about to quantize its input asks which quantized layer produced
// it, and gets that layer's output scale (or an undefined tensor) — the input is then already on
// that grid, so the consumer adopts the scale instead of measuring a new one.
void calibration_note_output(QModuleInterface& layer, const at::Tensor& output, const at::Tensor& output_scale);
at::Tensor calibration_producer_scale(const at::Tensor& input, const QType& qtype);
// A tensor equal to `quantized` in forward whose gradient flows to `x` unchanged.
at::Tensor straight_through(const at::Tensor& x, const at::Tensor& quantized);

}  // namespace detail

// ---- Linear ----
// Frozen forward runs the fused op the weight's layout calls for (QWeight::linear, or
// QWeight::linear_w8a8 for int8 weights with int8 activations); the layout is chosen at freeze,
// load and move by quanto::choose_layout. Files always hold the canonical layout.
class QLinearImpl : public detail::QModule<QLinearImpl> {
 public:
  QLinearImpl(int64_t in_features, int64_t out_features) : QLinearImpl(torch::nn::LinearOptions(in_features, out_features)) {}
  explicit QLinearImpl(const torch::nn::LinearOptions& options);
  at::Tensor forward(const at::Tensor& x);
  void pretty_print(std::ostream& stream) const override;
  std::string kind() const override { return "QLinear"; }
  bool can_quantize_weights() const override { return true; }
  bool can_quantize_activations() const override { return true; }
  bool can_quantize_activations_dynamically() const override { return true; }
  std::vector<int64_t> weight_shape() const override { return {options.out_features(), options.in_features()}; }
  torch::nn::LinearOptions options;

 protected:
  void reset_float() override;
  bool is_linear() const override { return true; }
};
TORCH_MODULE(QLinear);

// ---- Convolutions (zeros padding mode). ----
// Forward dequantizes the weight and runs the float convolution (no fused quantized conv kernel
// exists yet); activations are fake-quantized like the other layers.
class QConv1dImpl : public detail::QModule<QConv1dImpl> {
 public:
  QConv1dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : QConv1dImpl(torch::nn::Conv1dOptions(in_channels, out_channels, kernel_size)) {}
  explicit QConv1dImpl(const torch::nn::Conv1dOptions& options);
  at::Tensor forward(const at::Tensor& x);
  std::string kind() const override { return "QConv1d"; }
  bool can_quantize_weights() const override { return true; }
  bool can_quantize_activations() const override { return true; }
  std::vector<int64_t> weight_shape() const override;
  torch::nn::Conv1dOptions options;

 protected:
  void reset_float() override;
};
TORCH_MODULE(QConv1d);

class QConv2dImpl : public detail::QModule<QConv2dImpl> {
 public:
  QConv2dImpl(int64_t in_channels, int64_t out_channels, int64_t kernel_size)
      : QConv2dImpl(torch::nn::Conv2dOptions(in_channels, out_channels, kernel_size)) {}
  explicit QConv2dImpl(const torch::nn::Conv2dOptions& options);
  at::Tensor forward(const at::Tensor& x);
  std::string kind() const override { return "QConv2d"; }
  bool can_quantize_weights() const override { return true; }
  bool can_quantize_activations() const override { return true; }
  std::vector<int64_t> weight_shape() const override;
  torch::nn::Conv2dOptions options;

 protected:
  void reset_float() override;
};
TORCH_MODULE(QConv2d);

// ---- Norms: weights never quantized; output quantized when activations are set. ----
class QLayerNormImpl : public detail::QModule<QLayerNormImpl> {
 public:
  explicit QLayerNormImpl(const torch::nn::LayerNormOptions& options);
  at::Tensor forward(const at::Tensor& x);
  std::string kind() const override { return "QLayerNorm"; }
  bool can_quantize_weights() const override { return false; }
  bool can_quantize_activations() const override { return true; }
  std::vector<int64_t> weight_shape() const override { return options.normalized_shape(); }
  torch::nn::LayerNormOptions options;

 protected:
  void reset_float() override;
};
TORCH_MODULE(QLayerNorm);

struct RMSNormOptions {
  RMSNormOptions(int64_t dim) : dim_(dim) {}  // NOLINT(google-explicit-constructor)
  TORCH_ARG(int64_t, dim);
  TORCH_ARG(double, eps) = 1e-6;
};

// RMSNorm (as in Llama): y = weight * x / sqrt(mean(x^2, -1) + eps), computed in float32 and
// returned in x's dtype. A float layer until quantize() sets activations.
class QRMSNormImpl : public detail::QModule<QRMSNormImpl> {
 public:
  explicit QRMSNormImpl(const RMSNormOptions& options);
  at::Tensor forward(const at::Tensor& x);
  std::string kind() const override { return "QRMSNorm"; }
  bool can_quantize_weights() const override { return false; }
  bool can_quantize_activations() const override { return true; }
  std::vector<int64_t> weight_shape() const override { return {options.dim()}; }
  RMSNormOptions options;

 protected:
  void reset_float() override;
};
TORCH_MODULE(QRMSNorm);
// The float RMSNorm is the same layer before quantization.
using RMSNorm = QRMSNorm;
using RMSNormImpl = QRMSNormImpl;

// ---- Embedding: weights quantized per row (axis 0); frozen lookups dequantize only the rows
// they read. padding_idx is honoured; max_norm / sparse are refused.
class QEmbeddingImpl : public detail::QModule<QEmbeddingImpl> {
 public:
  QEmbeddingImpl(int64_t num_embeddings, int64_t embedding_dim)
      : QEmbeddingImpl(torch::nn::EmbeddingOptions(num_embeddings, embedding_dim)) {}
  explicit QEmbeddingImpl(const torch::nn::EmbeddingOptions& options);
  at::Tensor forward(const at::Tensor& indices);
  std::string kind() const override { return "QEmbedding"; }
  bool can_quantize_weights() const override { return true; }
  bool can_quantize_activations() const override { return false; }
  std::vector<int64_t> weight_shape() const override {
    return {options.num_embeddings(), options.embedding_dim()};
  }
  torch::nn::EmbeddingOptions options;

 protected:
  void reset_float() override;
};
TORCH_MODULE(QEmbedding);

}  // namespace nn
}  // namespace quanto
