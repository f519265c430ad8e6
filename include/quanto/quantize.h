// The quantization workflow on torch::nn::Module trees built with quanto's layers (nn.h):
//
//   quanto::Config cfg;  cfg.weights = "qint4";  cfg.activations = "qint8";
//   quanto::QuantizeReport report;
//   auto qmodel = quanto::quantize(model, cfg, &report);   // deep copy; `model` is untouched
//   { quanto::Calibration calib;  for (auto& b : batches) qmodel->forward(b); }  // static scales
//   (with cfg.dynamic_activations = true, no calibration: scales are computed per token at run time)
//   ... optionally train qmodel (quantization-aware training) ...
//   quanto::freeze(*qmodel);                               // float weights -> packed weights
//   quanto::save(*qmodel, "out_dir");                      // serialization.h
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <quanto/nn.h>

#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace quanto {

// What to quantize and how. A versioned value type: the same fields appear in the CLI and the
// Python binding.
struct Config {
  static constexpr int kVersion = 1;
  int version = kVersion;
  std::string weights = "qint8";     // qint2, qint4, qint8, qfloat8 (= qfloat8_e4m3fn), qfloat8_e4m3fnuz,
                                     // qfloat8_e5m2, or "none" (activations only)
  std::string activations = "none";  // "none", "qint8" or a float8 qtype name
  std::string optimizer;             // "" (absmax for 8-bit, minmax for 2/4-bit) or a registered name
  std::optional<int64_t> group_size; // 2/4-bit weights; nullopt = docs/format.md's rule per layer
  bool zero_point = false;           // 2/4-bit: integer uint8 zero-point instead of a float shift
  // With activations set: quantize the inputs of linear layers per token at run time (scales from
  // the data, no calibration; outputs stay float) instead of per tensor with calibrated static
  // scales. Layers that cannot (convolutions, norms) then keep float activations.
  bool dynamic_activations = false;
  // fnmatch-style patterns ('*', '?', '[...]') matched against module names as given by
  // named_modules() ("encoder.layer.0.attention.query"). Empty include = every module. A
  // pattern that matches no module name raises a warning (TORCH_WARN).
  std::vector<std::string> include;
  std::vector<std::string> exclude;

  // Throws c10::Error naming the bad field and the accepted values.
  void validate() const;
  // The spec applied to one layer.
  QuantSpec layer_spec() const;
};

struct QuantizeReport {
  struct Entry {
    std::string name;   // module name ("" is the root)
    std::string type;   // "QLinear", or the C++ type of an unsupported module
    std::string detail; // qtypes used, or why the module was left as it is
  };
  std::vector<Entry> quantized;    // layers now quantized
  std::vector<Entry> unsupported;  // modules with their own parameters that quanto cannot quantize
  std::vector<Entry> excluded;     // quanto layers left alone by include/exclude or the config
  std::string to_string() const;   // a short human-readable table
};

// Quantizes every selected quanto layer of `module` in place (weights stay float until freeze).
QuantizeReport quantize_(torch::nn::Module& module, const Config& config);

// Quantizes a deep copy (module->clone(); the model's modules must be Cloneable) and returns it;
// the original is untouched. Works with TORCH_MODULE holders and std::shared_ptr<Impl>.
template <typename Holder, typename = typename Holder::ContainedType>
Holder quantize(const Holder& module, const Config& config, QuantizeReport* report = nullptr);
template <typename Impl>
std::shared_ptr<Impl> quantize(const std::shared_ptr<Impl>& module, const Config& config,
                               QuantizeReport* report = nullptr);

// Replaces the float weights of every quantized, not yet frozen layer by packed quantized
// weights (the float parameters are released). Returns the number of layers frozen.
int64_t freeze(torch::nn::Module& module);

// While alive, every forward of a quantized layer with quantized activations records the
// absmax of its input and output into input_scale / output_scale (docs/format.md "Activations":
// the scale becomes the batch's value while it is exactly 1, then a moving average with
// `momentum`). A layer whose input is the quantized output of another layer adopts that layer's
// output scale. When the scope closes, layers whose outputs no quantized layer read directly stop
// quantizing them (QModuleInterface::quantizes_output). Layers with dynamic activations are left
// alone (their scales come from each input). Scopes are per thread and may not nest.
class Calibration {
 public:
  explicit Calibration(double momentum = 0.9);
  ~Calibration();
  Calibration(const Calibration&) = delete;
  Calibration& operator=(const Calibration&) = delete;
  double momentum() const { return momentum_; }
  struct State;  // outputs seen in this scope (quantize.cpp)

 private:
  double momentum_;
  std::unique_ptr<State> state_;
};

// Bytes of every parameter and buffer of the module tree (its memory footprint).
int64_t state_nbytes(const torch::nn::Module& module);

// ---- template definitions ----
template <typename Holder, typename>
Holder quantize(const Holder& module, const Config& config, QuantizeReport* report) {
  return Holder(quantize(module.ptr(), config, report));
}

template <typename Impl>
std::shared_ptr<Impl> quantize(const std::shared_ptr<Impl>& module, const Config& config, QuantizeReport* report) {
  config.validate();
  auto copy = std::dynamic_pointer_cast<Impl>(module->clone());
  TORCH_CHECK(copy != nullptr, "quanto::quantize: clone() returned a module of another type");
  QuantizeReport r = quantize_(*copy, config);
  if (report) *report = std::move(r);
  return copy;
}

}  // namespace quanto
