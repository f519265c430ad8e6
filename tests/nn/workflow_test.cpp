// quantize (copy and in place), include/exclude, report, Calibration, QAT, freeze.
#include <gtest/gtest.h>

#include <c10/util/Exception.h>
#include <torch/nn/functional/loss.h>
#include <torch/optim/adam.h>

#include <quanto/quantize.h>

#include "models.h"
#include "test_util.h"

namespace {

using quanto_test::MLP;
using quanto_test::Net;
using quanto_test::randn;

// Collects TORCH_WARN messages while alive.
struct WarningCollector : c10::WarningHandler {
  std::vector<std::string> messages;
  c10::WarningHandler* prev;
  WarningCollector() : prev(c10::WarningUtils::get_warning_handler()) { c10::WarningUtils::set_warning_handler(this); }
  ~WarningCollector() override { c10::WarningUtils::set_warning_handler(prev); }
  void process(const c10::Warning& w) override { messages.push_back(w.msg()); }
};

std::map<std::string, at::Tensor> snapshot(const torch::nn::Module& m) {
  std::map<std::string, at::Tensor> s;
  for (const auto& p : m.named_parameters()) s[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) s[b.key()] = b.value().detach().clone();
  return s;
}

TEST(Quantize, CopyLeavesOriginalUntouched) {
  torch::manual_seed(0);
  Net net(50, 32, 64, 4);
  const auto before = snapshot(*net);
  at::Tensor tokens = at::randint(0, 50, {3, 5}, at::kLong);
  at::Tensor y0 = net(tokens);
  quanto::Config cfg;
  cfg.weights = "qint4";
  cfg.activations = "qint8";
  quanto::QuantizeReport report;
  Net q = quanto::quantize(net, cfg, &report);
  quanto::freeze(*q);
  {
    quanto::Calibration c;
    q(tokens);
  }
  // the original: same state, still float, same outputs
  const auto after = snapshot(*net);
  ASSERT_EQ(before.size(), after.size());
  for (const auto& kv : before) EXPECT_TRUE(at::equal(kv.second, after.at(kv.first))) << kv.first;
  EXPECT_FALSE(net->fc1->is_quantized());
  EXPECT_TRUE(at::equal(net(tokens), y0));
  EXPECT_TRUE(q->fc1->is_frozen());
  EXPECT_NE(q->fc1.get(), net->fc1.get());
  // report: 2 linears + embedding + layernorm quantized, the torch head unsupported
  std::set<std::string> names;
  for (const auto& e : report.quantized) names.insert(e.name);
  EXPECT_EQ(names, (std::set<std::string>{"embed", "norm", "fc1", "fc2"}));
  ASSERT_EQ(report.unsupported.size(), 1u);
  EXPECT_EQ(report.unsupported[0].name, "head");
  EXPECT_NE(report.to_string().find("head"), std::string::npos);
  EXPECT_EQ(std::string(q->embed->activation_qtype() ? "act" : "none"), "none");  // weights only
  EXPECT_EQ(q->norm->weight_qtype(), nullptr);
}

TEST(Quantize, InPlaceIncludeExcludeAndWarnings) {
  torch::manual_seed(1);
  Net net(20, 32, 64, 4);
  quanto::Config cfg;
  cfg.weights = "qint8";
  cfg.include = {"fc*", "embed"};
  cfg.exclude = {"fc2", "nothing.*"};
  WarningCollector warnings;
  quanto::QuantizeReport r = quanto::quantize_(*net, cfg);
  EXPECT_TRUE(net->fc1->is_quantized());
  EXPECT_FALSE(net->fc2->is_quantized());
  EXPECT_TRUE(net->embed->is_quantized());
  EXPECT_FALSE(net->norm->is_quantized());
  ASSERT_EQ(warnings.messages.size(), 1u);
  EXPECT_NE(warnings.messages[0].find("nothing.*"), std::string::npos);
  EXPECT_EQ(r.quantized.size(), 2u);
}

TEST(Quantize, ConfigErrors) {
  Net net(20, 32, 64, 4);
  quanto::Config cfg;
  cfg.weights = "int4";
  try {
    quanto::quantize_(*net, cfg);
    FAIL();
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'int4'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("qint2, qint4"), std::string::npos) << msg;
  }
  cfg.weights = "qint8";
  cfg.activations = "qint4";
  EXPECT_THROW(quanto::quantize_(*net, cfg), c10::Error);
  cfg.activations = "none";
  cfg.group_size = 64;
  EXPECT_THROW(quanto::quantize_(*net, cfg), c10::Error);  // group size with 8-bit weights
  cfg.weights = "qint4";
  cfg.group_size = 48;  // divides neither 32 nor 64 input features
  EXPECT_THROW(quanto::quantize_(*net, cfg), c10::Error);
  cfg.group_size.reset();
  cfg.version = 2;
  EXPECT_THROW(quanto::quantize_(*net, cfg), c10::Error);
}

TEST(Calibration, ScalesFollowTheFormula) {
  torch::manual_seed(2);
  MLP mlp(16, 32, 4);
  quanto::Config cfg;
  cfg.weights = "qint8";
  cfg.activations = "qint8";
  quanto::quantize_(*mlp, cfg);
  const double m = 0.8;
  std::vector<at::Tensor> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(randn({8, 16}, 10 + i) * (1 + i));
  double in_expected = 1.0, out_expected = 1.0;
  {
    quanto::Calibration calib(m);
    at::NoGradGuard g;
    for (const auto& b : batches) {
      // expected from the formula, on the float input and float (pre-quantization) output
      const double fresh_in = b.abs().max().item<double>() / 127.0;
      in_expected = in_expected == 1.0 ? fresh_in : m * in_expected + (1 - m) * fresh_in;
      at::Tensor y = mlp->fc1(b);
      // recompute the float output of fc1 from its inputs to check output_scale
      at::Tensor x_fq = quanto_test::fake_quant(b, quanto::qint8, mlp->fc1->input_scale);
      at::Tensor ref = at::linear(x_fq, mlp->fc1->qweight().dequantize(), mlp->fc1->bias);
      const double fresh_out = ref.abs().max().item<double>() / 127.0;
      out_expected = out_expected == 1.0 ? fresh_out : m * out_expected + (1 - m) * fresh_out;
      (void)y;
    }
  }
  EXPECT_NEAR(mlp->fc1->input_scale.item<double>(), in_expected, 1e-6 * in_expected);
  EXPECT_NEAR(mlp->fc1->output_scale.item<double>(), out_expected, 1e-3 * out_expected);
  // outside the scope the scales no longer move
  const double frozen_scale = mlp->fc1->input_scale.item<double>();
  mlp(randn({8, 16}, 99) * 100);
  EXPECT_EQ(mlp->fc1->input_scale.item<double>(), frozen_scale);
  EXPECT_THROW(quanto::Calibration(1.5), c10::Error);
  quanto::Calibration outer;
  EXPECT_THROW(quanto::Calibration(), c10::Error);  // no nesting
}

// A layer whose output goes straight into another quantized layer keeps quantizing it (and the
// reader adopts its scale: the values are already on that grid); outputs that only feed float
// operations (relu, the model's result) stop being quantized when the scope closes.
TEST(Calibration, StreamlinesOutputsThatNoQuantizedLayerReads) {
  torch::manual_seed(3);
  struct ChainImpl : torch::nn::Cloneable<ChainImpl> {
    quanto::nn::QLinear a{nullptr}, b{nullptr}, c{nullptr};
    ChainImpl() { reset(); }
    void reset() override {
      a = register_module("a", quanto::nn::QLinear(16, 32));
      b = register_module("b", quanto::nn::QLinear(32, 32));
      c = register_module("c", quanto::nn::QLinear(32, 4));
    }
    at::Tensor forward(const at::Tensor& x) { return c(at::relu(b(a(x)))); }
  };
  auto chain = std::make_shared<ChainImpl>();
  quanto::Config cfg;
  cfg.weights = "qint8";
  cfg.activations = "qint8";
  quanto::quantize_(*chain, cfg);
  EXPECT_TRUE(chain->a->quantizes_output());
  {
    quanto::Calibration calib;
    at::NoGradGuard g;
    for (int i = 0; i < 3; ++i) chain->forward(randn({8, 16}, 40 + i));
  }
  EXPECT_TRUE(chain->a->quantizes_output());   // read by b
  EXPECT_FALSE(chain->b->quantizes_output());  // read by relu only
  EXPECT_FALSE(chain->c->quantizes_output());  // the model's output
  EXPECT_TRUE(at::equal(chain->b->input_scale, chain->a->output_scale));
  EXPECT_NE(chain->c->input_scale.item<double>(), chain->b->output_scale.item<double>());
  // Outside the scope: b's output is the float result of its matmul, a's is on its grid.
  at::NoGradGuard g;
  const at::Tensor x = randn({8, 16}, 50);
  const at::Tensor ya = chain->a(x);
  EXPECT_TRUE(at::equal(ya, quanto_test::fake_quant(ya, quanto::qint8, chain->a->output_scale)));
}

TEST(Freeze, MemoryDropsToPackedSize) {
  torch::manual_seed(3);
  MLP mlp(256, 512, 128);
  const int64_t float_bytes = quanto::state_nbytes(*mlp);
  EXPECT_EQ(float_bytes, (256 * 512 + 512 + 512 * 128 + 128) * 4);
  quanto::Config cfg;
  cfg.weights = "qint4";
  quanto::quantize_(*mlp, cfg);
  EXPECT_EQ(quanto::freeze(*mlp), 2);
  // 4-bit codes + one float scale and shift per group of 128, float bias, two 0-dim scales
  const int64_t expected = (256 * 512 / 2 + (256 * 512 / 128) * 8 + 512 * 4 + 8) +
                           (512 * 128 / 2 + (512 * 128 / 128) * 8 + 128 * 4 + 8);
  EXPECT_EQ(quanto::state_nbytes(*mlp), expected);
  EXPECT_LT(quanto::state_nbytes(*mlp) * 6, float_bytes);
  for (const auto& p : mlp->named_parameters()) EXPECT_EQ(p.key().find("weight"), std::string::npos) << p.key();
  EXPECT_EQ(quanto::freeze(*mlp), 0);  // idempotent
  // a frozen model clones (deep copy of packed buffers)
  auto copy = std::dynamic_pointer_cast<quanto_test::MLPImpl>(mlp->clone());
  EXPECT_TRUE(copy->fc1->is_frozen());
  EXPECT_NE(copy->fc1->weight_data.data_ptr(), mlp->fc1->weight_data.data_ptr());
  at::Tensor x = randn({3, 256}, 4);
  at::NoGradGuard g;
  EXPECT_TRUE(at::equal(copy->forward(x), mlp(x)));
}

// qint8 x qint8: the frozen layers hold one layout only — the packed W8A8 one (int8 codes in
// blocks of 64 channels plus one int32 row sum per channel) where the kernel set has VNNI, the
// canonical int8 codes elsewhere — never a second copy.
TEST(Freeze, W8A8MemoryDropsToOneLayout) {
  torch::manual_seed(3);
  MLP mlp(256, 512, 128);
  const int64_t float_bytes = quanto::state_nbytes(*mlp);
  quanto::Config cfg;
  cfg.weights = "qint8";
  cfg.activations = "qint8";
  quanto::quantize_(*mlp, cfg);
  at::Tensor x = randn({3, 256}, 4);
  at::NoGradGuard g;
  {
    quanto::Calibration c;
    mlp(x);
  }
  EXPECT_EQ(quanto::freeze(*mlp), 2);
  const bool packs = quanto::choose_layout(quanto::qint8, {512, 256}, std::nullopt, at::kCPU, &quanto::qint8, true) ==
                     quanto::WeightLayout::packed_w8a8;
  auto packed_bytes = [&](int64_t out, int64_t in) {
    return packs ? (out + 63) / 64 * ((in + 3) / 4 + 1) * 64 * 4 : out * in;
  };
  // codes (+ row sums when packed), one float scale per channel, float bias, two 0-dim scales
  const int64_t expected = (packed_bytes(512, 256) + 512 * 4 + 512 * 4 + 8) + (packed_bytes(128, 512) + 128 * 4 + 128 * 4 + 8);
  EXPECT_EQ(quanto::state_nbytes(*mlp), expected);
  EXPECT_LT(quanto::state_nbytes(*mlp) * 3, float_bytes);
  const at::Tensor y = mlp(x);
  EXPECT_EQ(quanto::state_nbytes(*mlp), expected);  // forward builds no second copy
  EXPECT_TRUE(at::equal(mlp(x), y));
}

// Synthetic task: 4 classes from 2 informative of 16 features. Post-training int2 quantization
// hurts; a few epochs of quantization-aware training recover the accuracy.
TEST(QAT, TrainingReducesLossAndRecoversAccuracy) {
  torch::manual_seed(4);
  const int64_t n = 512;
  at::Tensor x = randn({n, 16}, 5);
  at::Tensor labels = ((x.select(1, 0) > 0).to(at::kLong) * 2 + (x.select(1, 1) > 0).to(at::kLong));
  MLP model(16, 64, 4);
  auto accuracy = [&](MLP& m) {
    at::NoGradGuard g;
    return (m(x).argmax(1) == labels).to(at::kFloat).mean().item<double>();
  };
  auto train = [&](MLP& m, int epochs, double lr) {
    torch::optim::Adam opt(m->parameters(), torch::optim::AdamOptions(lr));
    double first = 0, last = 0;
    for (int e = 0; e < epochs; ++e) {
      opt.zero_grad();
      at::Tensor loss = torch::nn::functional::cross_entropy(m(x), labels);
      loss.backward();
      opt.step();
      if (e == 0) first = loss.item<double>();
      last = loss.item<double>();
    }
    return std::make_pair(first, last);
  };
  train(model, 200, 1e-2);
  const double float_acc = accuracy(model);
  EXPECT_GT(float_acc, 0.95);

  quanto::Config cfg;
  cfg.weights = "qint2";
  cfg.group_size = 16;
  MLP ptq = quanto::quantize(model, cfg);
  const double ptq_acc = accuracy(ptq);

  MLP qat = quanto::quantize(model, cfg);
  auto [first, last] = train(qat, 150, 3e-3);
  EXPECT_LT(last, first * 0.8) << "QAT loss " << first << " -> " << last;
  EXPECT_TRUE(qat->fc1->weight.grad().defined());  // gradients reached the float weights
  quanto::freeze(*qat);
  const double qat_acc = accuracy(qat);
  std::cout << "float acc " << float_acc << ", int2 PTQ acc " << ptq_acc << ", int2 QAT acc " << qat_acc << "\n";
  EXPECT_GT(qat_acc, ptq_acc);
  EXPECT_GT(qat_acc, float_acc - 0.05);
}

}  // namespace
