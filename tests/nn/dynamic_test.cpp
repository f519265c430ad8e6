// Dynamic (per-token) activations in the C++ API: QActivation::quantize_per_token, QLinear with
// QuantSpec::dynamic_activations (the W8A8 kernel for int8 x int8, the float path otherwise),
// Config / quantize_ / Calibration, and save / requantize.
#include <gtest/gtest.h>

#include <quanto/qmap.h>
#include <quanto/quantize.h>
#include <quanto/safetensors_aten.h>
#include <quanto/serialization.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <filesystem>
#include <sstream>

#include "models.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using quanto::QActivation;
using quanto::nn::QLinear;
using quanto_test::Net;
using quanto_test::randn;
using quanto_test::spec;

quanto::QuantSpec dynamic_spec(const std::string& w, const std::string& a = "qint8") {
  quanto::QuantSpec s = spec(w, a);
  s.dynamic_activations = true;
  return s;
}

TEST(DynamicActivations, PerTokenScalesAreEachRowsAbsmax) {
  at::Tensor x = randn({2, 3, 16}, 1);
  x[1][2].zero_();  // an all-zero token gets scale 1 (docs/format.md 4.6), codes 0
  const QActivation a = QActivation::quantize_per_token(x, quanto::qint8);
  ASSERT_TRUE(a.per_token());
  EXPECT_EQ(a.scale().sizes(), at::IntArrayRef({2, 3, 1}));
  EXPECT_EQ(a.data().sizes(), x.sizes());
  at::Tensor want = x.abs().amax(-1, true) / 127;
  want[1][2][0] = 1;
  EXPECT_TRUE(at::equal(a.scale(), want));
  EXPECT_TRUE(at::equal(a.data(), at::clamp(at::round(x / want), -128, 127).to(at::kChar)));
  EXPECT_LE((a.dequantize() - x).abs().div(want).max().item<double>(), 0.5 + 1e-5);
  // float8: scale = amax / 448, each token's largest value is exactly representable.
  const QActivation f = QActivation::quantize_per_token(x, quanto::qfloat8);
  EXPECT_EQ(f.data().scalar_type(), at::kFloat8_e4m3fn);
  EXPECT_TRUE(at::allclose(f.dequantize().abs().amax(-1), x.abs().amax(-1), 1e-6, 0));
  // A per-token scale must match the tokens.
  EXPECT_THROW(QActivation(quanto::qint8, a.data(), at::ones({2, 1, 1})), c10::Error);
  EXPECT_THROW(QActivation(quanto::qint8, a.data(), at::ones({2, 3, 16})), c10::Error);
  EXPECT_THROW(QActivation::quantize_per_token(at::empty({0, 16}), quanto::qint8), c10::Error);
  EXPECT_THROW(QActivation::quantize_per_token(x, quanto::qint4), c10::Error);
}

TEST(DynamicActivations, W8A8UsesTheIntegerKernelWithPerTokenScales) {
  for (bool generic : {false, true}) {
    SCOPED_TRACE(generic ? "generic path" : "CPU kernels");
    quanto::ops::ForceGenericPath path(generic);
    torch::manual_seed(0);
    QLinear q(48, 70);
    q->quantize(dynamic_spec("qint8"));
    q->freeze();
    const quanto::QBytesWeight w = q->qweight().bytes.to_canonical();
    at::NoGradGuard g;
    at::Tensor x = randn({2, 5, 48}, 2) * at::linspace(0.01, 10, 5).reshape({1, 5, 1});  // tokens of very different ranges
    const QActivation qx = QActivation::quantize_per_token(x, quanto::qint8);
    const at::Tensor want = quanto::ops::linear_w8a8(qx.data(), qx.scale(), w.data(), w.scale(), q->bias, at::kFloat);
    const at::Tensor y = q(x);
    EXPECT_TRUE(at::equal(y, want)) << "the W8A8 op, bit for bit; the output stays float (not re-quantized)";
    // Each token on its own scale: a token's output does not depend on the other tokens.
    EXPECT_TRUE(at::equal(q(x.select(1, 3).unsqueeze(1)), y.narrow(1, 3, 1)));
    // The per-tensor static scheme would crush the small tokens; per-token keeps them.
    const at::Tensor exact = at::linear(x, w.dequantize(), q->bias);
    EXPECT_LT(quanto_test::rel_err(y.select(1, 0), exact.select(1, 0)), 0.02);
  }
}

TEST(DynamicActivations, OtherWeightsAndFloat8RunTheFloatPathOnPerTokenValues) {
  for (const std::string wq : {"qint4", "qint2", "qfloat8", "qint8"}) {
    for (const std::string aq : {"qint8", "qfloat8", "qfloat8_e5m2"}) {
      if ((wq == "qint8" || wq == "qint4") && aq == "qint8") continue;  // the W8A8 / W4A8 kernels
      SCOPED_TRACE(wq + " x " + aq);
      torch::manual_seed(1);
      QLinear q(64, 24);
      q->quantize(dynamic_spec(wq, aq));
      q->freeze();
      at::NoGradGuard g;
      at::Tensor x = randn({7, 64}, 3);
      const at::Tensor xq = QActivation::quantize_per_token(x, quanto::qtype_from_name(aq)).dequantize();
      EXPECT_TRUE(at::equal(q(x), q->qweight().linear(xq, q->bias)));
    }
  }
}

TEST(DynamicActivations, W4A8RunsTheIntegerKernelWithinFloatRoundingOfTheFloatPath) {
  quanto::ops::ForceGenericPath cpu_kernels(false);  // the tiled layout, even under QUANTO_FORCE_GENERIC
  for (const int64_t M : {1, 5, 33}) {
    SCOPED_TRACE(M);
    torch::manual_seed(1);
    QLinear q(256, 24);
    q->quantize(dynamic_spec("qint4"));
    q->freeze();
    ASSERT_EQ(q->qweight().layout(), quanto::WeightLayout::tiled);
    at::NoGradGuard g;
    const at::Tensor x = randn({M, 256}, 3);
    const QActivation qx = QActivation::quantize_per_token(x, quanto::qint8);
    const at::Tensor y = q(x);
    EXPECT_TRUE(at::equal(y, quanto::ops::linear_w4a8_tiled(qx.data(), qx.scale(), q->qweight().bits.data(),
                                                             q->qweight().bits.scale(), q->qweight().bits.shift(),
                                                             q->qweight().bits.kernel_group_size(), q->bias,
                                                             at::kFloat)));
    // The float path on the dequantized activations: the same sums up to float rounding, bounded
    // by the magnitudes summed (|x| · (|code · scale| + |shift|) <= |x| · (|w| + 2 |shift|)).
    const at::Tensor want = q->qweight().linear(qx.dequantize(), q->bias);
    const at::Tensor w = q->qweight().dequantize();
    const at::Tensor shift = q->qweight().bits.shift().to(at::kFloat).reshape({24, -1});
    const at::Tensor wabs = w.abs() + 2 * shift.abs().repeat_interleave(256 / shift.size(1), 1);
    const at::Tensor mag = at::linear(qx.dequantize().abs(), wabs, q->bias.abs());
    EXPECT_TRUE(((y - want).abs() <= 1e-5 * mag).all().item<bool>());
  }
}

TEST(DynamicActivations, CalibrationLeavesDynamicLayersAlone) {
  torch::manual_seed(2);
  QLinear q(32, 16);
  q->quantize(dynamic_spec("qint8"));
  at::Tensor x = randn({4, 32}, 4);
  at::NoGradGuard g;
  const at::Tensor before = q(x);
  {
    quanto::Calibration c;
    q(x * 3);
  }
  EXPECT_EQ(q->input_scale.item<float>(), 1.0f);
  EXPECT_EQ(q->output_scale.item<float>(), 1.0f);
  EXPECT_TRUE(at::equal(q(x), before));
}

TEST(DynamicActivations, ConfigAndWalker) {
  quanto::Config bad;
  bad.dynamic_activations = true;
  EXPECT_THROW(bad.validate(), c10::Error) << "dynamic without activations";
  // Only linear layers take dynamic activations: the norm is left float, the embedding keeps
  // its weights-only quantization.
  torch::manual_seed(3);
  Net net(40, 64, 96, 5);
  quanto::Config cfg;
  cfg.weights = "qint8";
  cfg.activations = "qint8";
  cfg.dynamic_activations = true;
  quanto::QuantizeReport report;
  Net q = quanto::quantize(net, cfg, &report);
  EXPECT_TRUE(q->fc1->dynamic_activations() && q->fc2->dynamic_activations());
  EXPECT_FALSE(q->norm->is_quantized());
  EXPECT_EQ(q->embed->activation_qtype(), nullptr);
  EXPECT_NE(report.to_string().find("activations=qint8 (dynamic)"), std::string::npos) << report.to_string();
  // A layer refuses what it cannot do.
  quanto::nn::QLayerNorm norm(torch::nn::LayerNormOptions({8}));
  EXPECT_THROW(norm->quantize(dynamic_spec("none")), c10::Error);
  quanto::nn::QConv2d conv(3, 4, 3);
  EXPECT_THROW(conv->quantize(dynamic_spec("qint8")), c10::Error);
  QLinear l(8, 4);
  EXPECT_THROW(l->quantize(dynamic_spec("qint8", "none")), c10::Error);
  std::ostringstream os;
  l->quantize(dynamic_spec("qint4"));
  l->pretty_print(os);
  EXPECT_NE(os.str().find("activations=qint8 (dynamic, per token)"), std::string::npos) << os.str();
}

TEST(DynamicActivations, TrainsStraightThroughBeforeFreezing) {
  torch::manual_seed(4);
  QLinear q(16, 8);
  q->quantize(dynamic_spec("qint8"));
  at::Tensor x = randn({3, 16}, 5).requires_grad_(true);
  q(x).sum().backward();
  EXPECT_TRUE(q->weight.grad().defined());
  EXPECT_TRUE(x.grad().defined());
  EXPECT_GT(x.grad().abs().sum().item<double>(), 0);
}

struct TempDir {
  fs::path path;
  TempDir() : path(fs::temp_directory_path() / ("quanto_dynamic_test_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

TEST(DynamicActivations, SaveRequantizeCloneAndDtype) {
  for (const std::string wq : {"qint8", "qint4"}) {
    SCOPED_TRACE(wq);
    torch::manual_seed(5);
    Net net(40, 64, 96, 5);
    quanto::Config cfg;
    cfg.weights = wq;
    cfg.activations = "qint8";
    cfg.dynamic_activations = true;
    Net q = quanto::quantize(net, cfg);
    quanto::freeze(*q);
    TempDir dir;
    quanto::save(*q, dir.path.string());
    // The map: static "activations" stays "none" (optimum-quanto then runs the layer weight-only).
    const auto map = quanto::qmap::read((dir.path / "quanto_qmap.json").string());
    EXPECT_EQ(map.at("fc1"), (quanto::qmap::Entry{wq, "none", std::nullopt, std::nullopt, "qint8"}));
    EXPECT_EQ(map.at("embed"), (quanto::qmap::Entry{wq, "none"}));
    EXPECT_EQ(map.count("norm"), 0u);
    // quanto's metadata says the same.
    const auto file = quanto::safetensors::File::open((dir.path / "model.safetensors").string());
    const auto meta = nlohmann::json::parse(file.metadata().at("quanto.modules"));
    EXPECT_EQ(meta["fc2"]["dynamic_activations"], "qint8");
    EXPECT_EQ(meta["fc2"]["activations"], "none");
    EXPECT_FALSE(meta["embed"].contains("dynamic_activations")) << "only on dynamic modules";

    torch::manual_seed(99);
    Net fresh(40, 64, 96, 5);
    quanto::requantize(*fresh, dir.path.string());
    EXPECT_TRUE(fresh->fc1->dynamic_activations());
    at::NoGradGuard g;
    const at::Tensor tokens = at::randint(0, 40, {3, 7}, at::kLong);
    EXPECT_TRUE(at::equal(fresh(tokens), q(tokens)));
    auto copy = std::dynamic_pointer_cast<quanto_test::NetImpl>(q->clone());
    EXPECT_TRUE(copy->fc1->dynamic_activations());
    EXPECT_TRUE(at::equal(copy->forward(tokens), q(tokens)));
    // bfloat16 and back: scales and float parameters convert, codes stay.
    fresh->to(at::kBFloat16);
    EXPECT_EQ(fresh(tokens).scalar_type(), at::kBFloat16);
    fresh->to(at::kFloat);
    EXPECT_TRUE(at::allclose(fresh(tokens), q(tokens), 2e-2, 2e-2));
  }
}

}  // namespace
