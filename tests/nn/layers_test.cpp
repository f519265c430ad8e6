// Every quanto layer against the float op on its dequantized weight (the reference isolates
// kernel error from quantization error), for every qtype, frozen and not frozen.
#include <gtest/gtest.h>

#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>

#include <quanto/nn.h>
#include <quanto/ops.h>

#include "test_util.h"

namespace {

using namespace quanto::nn;
using quanto::QuantSpec;
using quanto_test::fake_quant;
using quanto_test::randn;
using quanto_test::rel_err;
using quanto_test::spec;

const std::vector<std::string> kWeightQTypes = {"qint2", "qint4", "qint8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz",
                                                "qfloat8_e5m2"};

TEST(QLinear, FloatMatchesTorchLinear) {
  torch::manual_seed(0);
  QLinear q(24, 10);
  torch::nn::Linear ref(24, 10);
  {
    at::NoGradGuard g;
    ref->weight.copy_(q->weight);
    ref->bias.copy_(q->bias);
  }
  at::Tensor x = randn({3, 24}, 1);
  EXPECT_TRUE(at::equal(q(x), ref(x)));
  EXPECT_FALSE(q->is_quantized());
  // same parameter names as torch::nn::Linear
  EXPECT_EQ(q->named_parameters().keys(), ref->named_parameters().keys());
}

TEST(QLinear, EveryQTypeMatchesDequantizedReference) {
  for (const auto& wq : kWeightQTypes) {
    for (int64_t in : {64, 96, 40}) {
      for (bool frozen : {false, true}) {
        SCOPED_TRACE(wq + " in=" + std::to_string(in) + (frozen ? " frozen" : ""));
        torch::manual_seed(1);
        QLinear q(in, 17);
        q->quantize(spec(wq));
        if (frozen) {
          q->freeze();
          EXPECT_TRUE(q->is_frozen());
          EXPECT_FALSE(q->weight.defined());
        }
        at::NoGradGuard g;
        at::Tensor x = randn({5, in}, 2);
        at::Tensor ref = at::linear(x, q->qweight().dequantize(), q->bias);
        at::Tensor y = q(x);
        EXPECT_EQ(y.sizes(), ref.sizes());
        EXPECT_LT(rel_err(y, ref), 1e-5);
      }
    }
  }
}

TEST(QLinear, Int4UsesTiledLayoutOnCpuAndMatches) {
  quanto::ops::ForceGenericPath cpu_kernels(false);  // the CPU kernels' layouts, even under QUANTO_FORCE_GENERIC
  torch::manual_seed(2);
  QLinear q(256, 32);
  q->quantize(spec("qint4"));
  at::NoGradGuard g;
  at::Tensor x = randn({4, 256}, 3);
  at::Tensor before = q(x);
  q->freeze();
  EXPECT_EQ(q->qweight().bits.layout(), quanto::QBitsWeight::Layout::tiled);
  EXPECT_EQ(q->weight_group_size(), 128);
  EXPECT_EQ(q->weight_data.sizes(), at::IntArrayRef({32, 128}));
  at::Tensor after = q(x);
  EXPECT_LT(rel_err(after, before), 1e-5);
}

// qint8 x qint8 on CPU: freeze converts the weight once to the layout the weights layer picks for
// the kernel set in use (packed W8A8 with VNNI, canonical otherwise) and keeps only that; the
// canonical int8 data comes back exactly for export, dequantize and other devices.
TEST(QLinear, W8A8HoldsOneLayoutOnCpu) {
  for (int64_t in : {99, 256}) {
    SCOPED_TRACE("in=" + std::to_string(in));
    torch::manual_seed(5);
    QLinear q(in, 70);  // 70 channels: one full block of 64 and a partial one; in=99: K % 4 != 0
    q->quantize(spec("qint8", "qint8"));
    at::NoGradGuard g;
    q->input_scale.fill_(0.03);
    q->output_scale.fill_(0.05);
    const quanto::QBytesWeight canonical = q->qweight().bytes;
    q->freeze();
    const quanto::QBytesWeight w = q->qweight().bytes;
    const bool packs = quanto::choose_layout(quanto::qint8, {70, in}, std::nullopt, at::kCPU, &quanto::qint8, true) ==
                       quanto::WeightLayout::packed_w8a8;
    ASSERT_EQ(w.layout(), packs ? quanto::QBytesWeight::Layout::packed_w8a8 : quanto::QBytesWeight::Layout::canonical);
    EXPECT_EQ(q->weight_data.scalar_type(), packs ? at::kByte : at::kChar);
    if (packs) {
      EXPECT_EQ(q->weight_data.sizes(), at::IntArrayRef({2, ((in + 3) / 4 + 1) * 64 * 4}));
    }
    EXPECT_EQ(w.shape(), std::vector<int64_t>({70, in}));
    EXPECT_TRUE(at::equal(w.canonical_data(), canonical.data()));
    EXPECT_TRUE(at::equal(w.dequantize(), canonical.dequantize()));
    EXPECT_EQ(w.nbytes(), quanto::tensor_nbytes(q->weight_data) + quanto::tensor_nbytes(q->weight_scale));
    // Same int32 sums and epilogue as the canonical W8A8 op, bit for bit.
    at::Tensor x = randn({5, in}, 6);
    const auto& qint8 = quanto::qtype_from_name("qint8");
    const quanto::QActivation qx = quanto::QActivation::quantize(x, qint8, q->input_scale);
    at::Tensor ref = quanto::ops::linear_w8a8(qx.data(), qx.scale(), canonical.data(), canonical.scale(), q->bias,
                                              x.scalar_type());
    EXPECT_TRUE(at::equal(q(x), fake_quant(ref, qint8, q->output_scale)));
    // Export writes the canonical int8 layout.
    for (const auto& [key, t] : q->export_state()) {
      if (key == "weight._data") {
        EXPECT_TRUE(at::equal(t, canonical.data()));
      }
    }
    // A clone keeps the layout and the results.
    auto copy = std::dynamic_pointer_cast<QLinearImpl>(q->clone());
    EXPECT_EQ(copy->weight_data.scalar_type(), q->weight_data.scalar_type());
    EXPECT_TRUE(at::equal(copy->forward(x), q(x)));
  }
  // Weight-only int8 and int8 x float8 layers keep the canonical layout.
  for (const auto& aq : {"none", "qfloat8"}) {
    QLinear q(64, 16);
    q->quantize(spec("qint8", aq));
    q->freeze();
    EXPECT_EQ(q->weight_data.scalar_type(), at::kChar) << aq;
  }
}

TEST(QBytesWeight, PackedLayoutRoundTripsAndRejectsBadInput) {
  const auto& qint8 = quanto::qtype_from_name("qint8");
  const auto w = quanto::QBytesWeight::quantize(randn({65, 33}, 7), qint8);
  ASSERT_TRUE(w.can_pack());
  const auto p = w.to_packed();
  EXPECT_EQ(p.layout(), quanto::QBytesWeight::Layout::packed_w8a8);
  EXPECT_TRUE(at::equal(p.to_canonical().data(), w.data()));
  const auto wrapped = quanto::QBytesWeight::from_packed(qint8, {65, 33}, p.data(), w.scale());
  EXPECT_TRUE(at::equal(wrapped.dequantize(), w.dequantize()));
  EXPECT_THROW(quanto::QBytesWeight::from_packed(qint8, {65, 37}, p.data(), w.scale()), c10::ValueError);
  EXPECT_THROW(quanto::QBytesWeight::from_packed(qint8, {129, 33}, p.data(), w.scale()), c10::ValueError);
  // Off the CPU a weight goes back to the canonical layout (meta: shapes and dtypes only).
  const auto moved = p.to(at::Device(at::kMeta));
  EXPECT_EQ(moved.layout(), quanto::QBytesWeight::Layout::canonical);
  EXPECT_EQ(moved.data().scalar_type(), at::kChar);
  EXPECT_EQ(moved.data().sizes(), at::IntArrayRef({65, 33}));
  EXPECT_THROW(quanto::QBytesWeight::from_packed(qint8, {65, 33}, p.data().to(at::kChar), w.scale()), c10::TypeError);
  const auto f8 = quanto::QBytesWeight::quantize(randn({8, 32}, 8), quanto::qtype_from_name("qfloat8"));
  EXPECT_FALSE(f8.can_pack());
  EXPECT_THROW(f8.to_packed(), c10::ValueError);
  EXPECT_THROW(quanto::QBytesWeight::from_packed(f8.qtype(), {8, 32}, p.data(), f8.scale()), c10::ValueError);
}

TEST(QLinear, ActivationsInt8AndFloat8MatchFakeQuantReference) {
  for (const auto& wq : {"qint8", "qint4", "qfloat8"}) {
    for (const auto& aq : {"qint8", "qfloat8"}) {
      SCOPED_TRACE(std::string(wq) + " x " + aq);
      torch::manual_seed(3);
      QLinear q(64, 12);
      q->quantize(spec(wq, aq));
      q->freeze();
      at::NoGradGuard g;
      const auto& a = quanto::qtype_from_name(aq);
      q->input_scale.fill_(0.03);
      q->output_scale.fill_(0.02);
      at::Tensor x = randn({6, 64}, 4);
      at::Tensor ref = at::linear(fake_quant(x, a, q->input_scale), q->qweight().dequantize(), q->bias);
      ref = fake_quant(ref, a, q->output_scale);
      at::Tensor y = q(x);
      // outputs are on the output grid: allow one output step where rounding ties differ
      EXPECT_LE((y - ref).abs().max().item<double>(), 0.02 * 1.01) << (y - ref).abs().max().item<double>();
      EXPECT_LT((y - ref).abs().mean().item<double>(), 0.002);
    }
  }
}

TEST(QConv, Conv1dAndConv2dMatchDequantizedReference) {
  for (const auto& wq : {"qint8", "qint4", "qint2", "qfloat8"}) {
    SCOPED_TRACE(wq);
    torch::manual_seed(4);
    QConv2d c2(torch::nn::Conv2dOptions(4, 8, 3).padding(1).stride(2));
    QConv1d c1(torch::nn::Conv1dOptions(4, 6, 5).padding(torch::kSame));
    for (auto* m : {static_cast<QModuleInterface*>(c2.get()), static_cast<QModuleInterface*>(c1.get())}) {
      m->quantize(spec(wq));
      m->freeze();
    }
    at::NoGradGuard g;
    at::Tensor x2 = randn({2, 4, 9, 9}, 5), x1 = randn({2, 4, 11}, 6);
    EXPECT_LT(rel_err(c2(x2), at::conv2d(x2, c2->qweight().dequantize(), c2->bias, 2, 1)), 1e-6);
    EXPECT_LT(rel_err(c1(x1), at::conv1d(x1, c1->qweight().dequantize(), c1->bias, 1, "same")), 1e-6);
  }
}

TEST(QConv, FloatMatchesTorchConv) {
  torch::manual_seed(5);
  QConv2d q(torch::nn::Conv2dOptions(3, 5, 3).padding(1));
  torch::nn::Conv2d ref(torch::nn::Conv2dOptions(3, 5, 3).padding(1));
  at::NoGradGuard g;
  ref->weight.copy_(q->weight);
  ref->bias.copy_(q->bias);
  at::Tensor x = randn({1, 3, 8, 8}, 7);
  EXPECT_TRUE(at::allclose(q(x), ref(x)));
}

TEST(QNorms, LayerNormAndRMSNormQuantizeOutputOnly) {
  QLayerNorm ln(torch::nn::LayerNormOptions({32}));
  RMSNorm rms(RMSNormOptions(32).eps(1e-5));
  at::NoGradGuard g;
  ln->weight.copy_(randn({32}, 8));
  rms->weight.copy_(randn({32}, 9));
  at::Tensor x = randn({4, 32}, 10);
  at::Tensor ln_ref = at::layer_norm(x, {32}, ln->weight, ln->bias, 1e-5);
  at::Tensor rms_ref = rms->weight * (x * at::rsqrt(x.pow(2).mean({-1}, true) + 1e-5));
  EXPECT_TRUE(at::allclose(ln(x), ln_ref));
  EXPECT_TRUE(at::allclose(rms(x), rms_ref));
  EXPECT_THROW(ln->quantize(spec("qint8")), c10::Error);  // norm weights are never quantized
  ln->quantize(spec("none", "qint8"));
  rms->quantize(spec("none", "qint8"));
  ln->output_scale.fill_(0.05);
  rms->output_scale.fill_(0.05);
  EXPECT_TRUE(at::allclose(ln(x), fake_quant(ln_ref, quanto::qint8, ln->output_scale)));
  EXPECT_TRUE(at::allclose(rms(x), fake_quant(rms_ref, quanto::qint8, rms->output_scale)));
  ln->freeze();  // nothing to freeze: stays as it is
  EXPECT_TRUE(ln->weight.defined());
}

TEST(QEmbedding, EveryQTypeMatchesDequantizedRows) {
  for (const auto& wq : kWeightQTypes) {
    for (int64_t dim : {64, 40}) {
      SCOPED_TRACE(wq + " dim=" + std::to_string(dim));
      torch::manual_seed(6);
      QEmbedding e(torch::nn::EmbeddingOptions(37, dim).padding_idx(0));
      at::Tensor idx = at::tensor({3, 0, 36, 5, 3, 17}, at::kLong).reshape({2, 3});
      at::Tensor float_out = e(idx);
      EXPECT_TRUE(at::equal(float_out, at::embedding(e->weight, idx)));
      e->quantize(spec(wq));
      e->freeze();
      at::NoGradGuard g;
      at::Tensor ref = at::embedding(e->qweight().dequantize(), idx);
      at::Tensor y = e(idx);
      EXPECT_EQ(y.sizes(), at::IntArrayRef({2, 3, dim}));
      EXPECT_TRUE(at::equal(y, ref));
    }
  }
  QEmbedding e(10, 8);
  EXPECT_THROW(e->quantize(spec("qint8", "qint8")), c10::Error);  // weights only
}

TEST(QModule, ToDtypeKeepsCodes) {
  torch::manual_seed(7);
  QLinear q(64, 8);
  q->quantize(spec("qint4", "qint8"));
  q->freeze();
  q->to(at::kBFloat16);
  EXPECT_EQ(q->weight_data.scalar_type(), at::kByte);
  EXPECT_EQ(q->weight_scale.scalar_type(), at::kBFloat16);
  EXPECT_EQ(q->input_scale.scalar_type(), at::kBFloat16);
  at::NoGradGuard g;
  at::Tensor y = q(randn({2, 64}, 8).to(at::kBFloat16));
  EXPECT_EQ(y.scalar_type(), at::kBFloat16);
}

TEST(QModule, ErrorsNameTheProblem) {
  QLinear q(64, 8);
  try {
    q->quantize(spec("qint5"));
    FAIL();
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("qint5"), std::string::npos);
    EXPECT_NE(msg.find("qint4"), std::string::npos) << msg;  // lists valid names
  }
  QuantSpec bad = spec("qint4");
  bad.group_size = 48;
  EXPECT_THROW(q->quantize(bad), c10::Error);  // 48 does not divide 64
  EXPECT_THROW(q->quantize(spec("qint8", "qint4")), c10::Error);
  for (const char* opt : {"minmax", "symmetric", "hqq", "gptq"}) {  // 2/4-bit optimizers, refused when quantizing
    QuantSpec badopt = spec("qint8");
    badopt.optimizer = opt;
    EXPECT_THROW(q->quantize(badopt), c10::Error) << opt;
  }
  EXPECT_THROW(q->qweight(), c10::Error);  // not quantized
}

}  // namespace

namespace {

TEST(WeightOptimizer, RegisteredOptimizerIsUsed) {
  // A custom optimizer (the hook for e.g. HQQ): halves the absmax scale, so large weights clip.
  quanto::register_weight_optimizer(
      "test_half_absmax", [](const at::Tensor& w, const quanto::QType& q, std::optional<int64_t>) {
        return std::make_pair(quanto::ops::absmax_scale(w, q.name, 0) * 0.5, at::Tensor());
      });
  const auto names = quanto::weight_optimizer_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "test_half_absmax"), names.end());
  torch::manual_seed(9);
  QLinear a(32, 4), b(32, 4);
  {
    at::NoGradGuard g;
    b->weight.copy_(a->weight);
  }
  QuantSpec s = spec("qint8");
  a->quantize(s);
  s.optimizer = "test_half_absmax";
  b->quantize(s);
  at::NoGradGuard g;
  EXPECT_TRUE(at::allclose(b->qweight().bytes.scale(), a->qweight().bytes.scale() * 0.5));
  s.optimizer = "absmax";
  s.weights = "qint4";
  QLinear c(32, 4);
  EXPECT_THROW(c->quantize(s), c10::Error);  // absmax is for 8-bit qtypes
}

}  // namespace

namespace {

// The built-in "hqq" optimizer: a 4-bit weight reconstructs at least as well as with min/max,
// on a heavy-tailed weight where the optimization matters.
TEST(WeightOptimizer, HqqReconstructsNoWorseThanMinmax) {
  torch::manual_seed(11);
  QLinear a(256, 32), b(256, 32);
  {
    at::NoGradGuard g;
    a->weight.copy_(at::randn({32, 256}).pow(3));
    b->weight.copy_(a->weight);
  }
  QuantSpec s = spec("qint4");
  a->quantize(s);
  s.optimizer = "hqq";
  b->quantize(s);
  at::NoGradGuard g;
  const double err_minmax = (a->qweight().dequantize() - a->weight).pow(2).sum().item<double>();
  const double err_hqq = (b->qweight().dequantize() - b->weight).pow(2).sum().item<double>();
  EXPECT_LT(err_hqq, err_minmax);
}

}  // namespace
