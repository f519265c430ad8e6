// Config, quantize / freeze walkers, Calibration, weight optimizers, straight-through estimator.
#include <quanto/quantize.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/csrc/autograd/custom_function.h>

#include <quanto/ops.h>

#include <fnmatch.h>

#include <map>
#include <mutex>
#include <sstream>

#include "nn/qmodule_impl.h"

namespace quanto {
namespace {

std::mutex& optimizers_mutex() {
  static std::mutex m;
  return m;
}

std::map<std::string, WeightOptimizer>& optimizers() {
  static std::map<std::string, WeightOptimizer> table = {
      {"absmax",
       [](const at::Tensor& w, const QType& q, std::optional<int64_t>) -> std::pair<at::Tensor, at::Tensor> {
         TORCH_CHECK_VALUE(q.bits == 8, "optimizer absmax: for 8-bit qtypes (qint8, qfloat8*), got ", q.name);
         return {ops::absmax_scale(w, q.name, 0), at::Tensor()};
       }},
      {"minmax",
       [](const at::Tensor& w, const QType& q, std::optional<int64_t> gs) -> std::pair<at::Tensor, at::Tensor> {
         TORCH_CHECK_VALUE(q.bits < 8, "optimizer minmax: for 2/4-bit qtypes (qint2, qint4), got ", q.name);
         auto [scale, shift] = ops::minmax_scale_shift(w, q.name, 0, gs);
         return {scale, shift};
       }},
      // Symmetric grid (zero-point 2^(bits-1)): what compressed-tensors' symmetric int4 and GGUF's
      // Q4_0 store, so such layers export exactly.
      {"symmetric",
       [](const at::Tensor& w, const QType& q, std::optional<int64_t> gs) -> std::pair<at::Tensor, at::Tensor> {
         TORCH_CHECK_VALUE(q.bits < 8, "optimizer symmetric: for 2/4-bit qtypes (qint2, qint4), got ", q.name,
                           " (8-bit weights are symmetric already: absmax)");
         auto [scale, shift] = ops::symmetric_scale_shift(w, q.name, 0, gs);
         return {scale, shift};
       }},
      // Half-quadratic optimization of the shift (HQQ paper defaults), never worse than minmax.
      {"hqq",
       [](const at::Tensor& w, const QType& q, std::optional<int64_t> gs) -> std::pair<at::Tensor, at::Tensor> {
         TORCH_CHECK_VALUE(q.bits < 8, "optimizer hqq: for 2/4-bit qtypes (qint2, qint4), got ", q.name);
         auto [scale, shift] = ops::hqq_scale_shift(w, q.name, 0, gs);
         return {scale, shift};
       }},
      // GPTQ needs calibration: QLinear layers record X^T X inside Calibration and freeze runs
      // ops::gptq_quantize (qmodule_impl.h); before that (QAT forward) its grid is min/max.
      {"gptq",
       [](const at::Tensor& w, const QType& q, std::optional<int64_t> gs) -> std::pair<at::Tensor, at::Tensor> {
         TORCH_CHECK_VALUE(q.bits < 8, "optimizer gptq: for 2/4-bit qtypes (qint2, qint4), got ", q.name);
         auto [scale, shift] = ops::minmax_scale_shift(w, q.name, 0, gs);
         return {scale, shift};
       }},
  };
  return table;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

thread_local const Calibration* active_calibration = nullptr;

bool glob_match(const std::string& pattern, const std::string& name) {
  return ::fnmatch(pattern.c_str(), name.c_str(), 0) == 0;
}

bool any_match(const std::vector<std::string>& patterns, const std::string& name) {
  for (const auto& p : patterns)
    if (glob_match(p, name)) return true;
  return false;
}

}  // namespace

void register_weight_optimizer(const std::string& name, WeightOptimizer optimizer) {
  TORCH_CHECK_VALUE(!name.empty(), "register_weight_optimizer: the name must not be empty");
  TORCH_CHECK_VALUE(static_cast<bool>(optimizer), "register_weight_optimizer: '", name, "' has no function");
  std::lock_guard<std::mutex> lock(optimizers_mutex());
  optimizers()[name] = std::move(optimizer);
}

std::vector<std::string> weight_optimizer_names() {
  std::lock_guard<std::mutex> lock(optimizers_mutex());
  std::vector<std::string> names;
  for (const auto& kv : optimizers()) names.push_back(kv.first);
  return names;
}

namespace nn::detail {

const WeightOptimizer& find_weight_optimizer(const std::string& name) {
  std::lock_guard<std::mutex> lock(optimizers_mutex());
  auto it = optimizers().find(name);
  if (it == optimizers().end()) {
    std::vector<std::string> names;
    for (const auto& kv : optimizers()) names.push_back(kv.first);
    TORCH_CHECK_VALUE(false, "unknown weight optimizer '", name, "'; registered: ", join(names),
                      " (others, e.g. hqq, can be added with quanto::register_weight_optimizer)");
  }
  return it->second;
}

std::string default_optimizer_name(const QType& qtype) { return qtype.bits == 8 ? "absmax" : "minmax"; }

}  // namespace nn::detail

struct Calibration::State {
  struct Produced {
    nn::QModuleInterface* layer;
    at::Tensor last_output;   // held so its address cannot be reused by another tensor
    at::Tensor output_scale;  // the layer's buffer (shared storage)
    bool read_by_quantized_layer = false;
  };
  std::vector<Produced> produced;

  Produced* find(const nn::QModuleInterface* layer) {
    for (auto& p : produced)
      if (p.layer == layer) return &p;
    return nullptr;
  }
};

namespace {
thread_local Calibration::State* active_state = nullptr;  // of active_calibration
}  // namespace

namespace nn::detail {

void calibration_note_output(QModuleInterface& layer, const at::Tensor& output, const at::Tensor& output_scale) {
  if (!active_state) return;
  auto& state = *active_state;
  if (auto* p = state.find(&layer)) {
    p->last_output = output;
  } else {
    state.produced.push_back({&layer, output, output_scale});
  }
}

at::Tensor calibration_producer_scale(const at::Tensor& input, const QType& qtype) {
  if (!active_state) return {};
  for (auto& p : active_state->produced) {
    if (p.last_output.is_same(input) && p.layer->activation_qtype() == &qtype) {
      p.read_by_quantized_layer = true;
      return p.output_scale;
    }
  }
  return {};
}

std::optional<double> calibration_momentum() {
  if (!active_calibration) return std::nullopt;
  return active_calibration->momentum();
}

void update_scale(at::Tensor& scale, const at::Tensor& x, const QType& qtype, double momentum) {
  at::NoGradGuard no_grad;
  const at::Tensor fresh = ops::absmax_scale(x.detach(), qtype.name).to(scale.scalar_type());
  if (scale.item<double>() == 1.0) {
    scale.copy_(fresh);
  } else {
    scale.copy_(scale * momentum + fresh * (1.0 - momentum));
  }
}

namespace {
struct StraightThrough : public torch::autograd::Function<StraightThrough> {
  static at::Tensor forward(torch::autograd::AutogradContext*, const at::Tensor& x, const at::Tensor& quantized) {
    return quantized.clone();
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext*,
                                                 torch::autograd::variable_list grad) {
    return {grad[0], at::Tensor()};
  }
};
}  // namespace

at::Tensor straight_through(const at::Tensor& x, const at::Tensor& quantized) {
  return StraightThrough::apply(x, quantized.detach());
}

}  // namespace nn::detail

// ---- Config ----

void Config::validate() const {
  TORCH_CHECK_VALUE(version == kVersion, "quanto::Config: version ", version, " is not supported (this build reads ",
                    kVersion, ")");
  const QType* wq = nullptr;
  if (weights != "none") {
    wq = find_qtype(weights);
    TORCH_CHECK_VALUE(wq != nullptr, "quanto::Config: unknown weights qtype '", weights, "'; valid names: none, ",
                      qtype_names());
  }
  if (activations != "none") {
    const QType* aq = find_qtype(activations);
    TORCH_CHECK_VALUE(aq != nullptr && aq->bits == 8, "quanto::Config: activations must be none, qint8 or a float8 ",
                      "qtype (qfloat8, qfloat8_e4m3fn, qfloat8_e4m3fnuz, qfloat8_e5m2), got '", activations, "'");
  }
  TORCH_CHECK_VALUE(wq || activations != "none", "quanto::Config: weights and activations are both \"none\"");
  if (!optimizer.empty()) nn::detail::find_weight_optimizer(optimizer);
  if (group_size) {
    TORCH_CHECK_VALUE(*group_size > 0, "quanto::Config: group_size must be positive, got ", *group_size);
    TORCH_CHECK_VALUE(wq && wq->bits < 8, "quanto::Config: group_size applies to qint2/qint4 weights only");
  }
  TORCH_CHECK_VALUE(!zero_point || (wq && wq->bits < 8), "quanto::Config: zero_point applies to qint2/qint4 weights only");
  TORCH_CHECK_VALUE(!dynamic_activations || activations != "none",
                    "quanto::Config: dynamic_activations needs activations (qint8 or a float8 qtype)");
}

QuantSpec Config::layer_spec() const {
  QuantSpec s;
  s.weights = weights;
  s.activations = activations;
  s.optimizer = optimizer;
  s.group_size = group_size;
  // The symmetric grid is an integer zero-point: stored as one, it exports exactly.
  s.zero_point = zero_point || optimizer == "symmetric";
  s.dynamic_activations = dynamic_activations;
  return s;
}

std::string QuantizeReport::to_string() const {
  std::ostringstream os;
  auto section = [&](const char* title, const std::vector<Entry>& v) {
    os << title << " (" << v.size() << ")\n";
    for (const auto& e : v) os << "  " << (e.name.empty() ? "<root>" : e.name) << "  " << e.type << "  " << e.detail << "\n";
  };
  section("quantized", quantized);
  section("unsupported, left as they are", unsupported);
  section("excluded", excluded);
  return os.str();
}

QuantizeReport quantize_(torch::nn::Module& module, const Config& config) {
  config.validate();
  QuantizeReport report;
  const auto named = module.named_modules("", /*include_self=*/true);
  for (const auto* patterns : {&config.include, &config.exclude}) {
    for (const auto& p : *patterns) {
      bool hit = false;
      for (const auto& item : named) hit = hit || glob_match(p, item.key());
      if (!hit) TORCH_WARN("quanto::quantize: pattern '", p, "' matches no module name");
    }
  }
  const QuantSpec base = config.layer_spec();
  for (const auto& item : named) {
    const std::string& name = item.key();
    torch::nn::Module& m = *item.value();
    nn::QModuleInterface* q = nn::as_qmodule(m);
    if (!q) {
      if (!m.named_parameters(/*recurse=*/false).is_empty())
        report.unsupported.push_back({name, m.name(), "not a quanto layer (build the model with quanto::nn layers)"});
      continue;
    }
    if ((!config.include.empty() && !any_match(config.include, name)) || any_match(config.exclude, name)) {
      report.excluded.push_back({name, q->kind(), "not selected by include/exclude"});
      continue;
    }
    if (q->is_frozen()) {
      report.excluded.push_back({name, q->kind(), "already frozen"});
      continue;
    }
    QuantSpec spec = base;
    if (!q->can_quantize_weights()) spec.weights = "none";
    if (!q->can_quantize_activations() || (spec.dynamic_activations && !q->can_quantize_activations_dynamically())) {
      spec.activations = "none";  // dynamic activations: linear layers only
    }
    if (spec.activations == "none") spec.dynamic_activations = false;
    if (spec.weights == "none") {
      spec.group_size.reset();
      spec.zero_point = false;
    }
    if (spec.weights == "none" && spec.activations == "none") {
      report.excluded.push_back({name, q->kind(), "nothing to quantize in this layer with this config"});
      continue;
    }
    try {
      q->quantize(spec);
    } catch (const c10::Error& e) {
      TORCH_CHECK_VALUE(false, "quanto::quantize: module '", name, "': ", e.what_without_backtrace());
    }
    std::string detail = "weights=" + spec.weights + " activations=" + spec.activations;
    if (spec.dynamic_activations) detail += " (dynamic)";
    if (q->weight_group_size()) detail += " group_size=" + std::to_string(*q->weight_group_size());
    report.quantized.push_back({name, q->kind(), detail});
  }
  return report;
}

int64_t freeze(torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& m : module.modules(/*include_self=*/true)) {
    if (auto* q = nn::as_qmodule(*m)) {
      if (q->is_quantized() && !q->is_frozen() && q->weight_qtype()) {
        q->freeze();
        ++n;
      }
    }
  }
  return n;
}

Calibration::Calibration(double momentum) : momentum_(momentum) {
  TORCH_CHECK_VALUE(momentum >= 0.0 && momentum < 1.0, "quanto::Calibration: momentum must be in [0, 1), got ",
                    momentum);
  TORCH_CHECK(active_calibration == nullptr, "quanto::Calibration: a calibration scope is already open on this thread");
  state_ = std::make_unique<State>();
  active_calibration = this;
  active_state = state_.get();
}

Calibration::~Calibration() {
  for (const auto& p : state_->produced) p.layer->set_quantizes_output(p.read_by_quantized_layer);
  active_calibration = nullptr;
  active_state = nullptr;
}

int64_t state_nbytes(const torch::nn::Module& module) {
  int64_t n = 0;
  for (const auto& p : module.parameters(true)) n += tensor_nbytes(p);
  for (const auto& b : module.buffers(true)) n += tensor_nbytes(b);
  return n;
}

}  // namespace quanto
