// The weights layer (quanto/weights.h): each format's keys and canonical shapes, the layout
// policy, and QWeight's exact conversions and op choice.
#include <gtest/gtest.h>

#include <quanto/ops.h>
#include <quanto/weights.h>

#include <map>

#include "test_util.h"

using quanto::QWeight;
using quanto::WeightLayout;
using quanto_test::randn;

namespace {

std::vector<std::string> keys_of(const std::vector<quanto::StoredTensor>& st) {
  std::vector<std::string> k;
  for (const auto& t : st) k.push_back(t.key);
  return k;
}

}  // namespace

TEST(WeightFormat, KeysAndCanonicalShapes) {
  using V = std::vector<int64_t>;
  for (const auto* q : {&quanto::qint8, &quanto::qfloat8_e4m3fn, &quanto::qfloat8_e5m2}) {
    const auto& f = quanto::weight_format(*q);
    EXPECT_EQ(f.name, "qbytes");
    const auto st = f.stored(*q, {6, 4, 3, 3}, std::nullopt, at::kBFloat16);
    ASSERT_EQ(keys_of(st), (std::vector<std::string>{"weight._data", "weight._scale"}));
    EXPECT_EQ(st[0].shape, (V{6, 4, 3, 3}));
    EXPECT_EQ(st[0].dtype, q->dtype);
    EXPECT_EQ(st[1].shape, (V{6, 1, 1, 1}));
    EXPECT_EQ(st[1].dtype, at::kBFloat16);
  }
  const auto& f = quanto::weight_format(quanto::qint4);
  EXPECT_EQ(f.name, "qbits");
  // Grouped: codes [numel / gs, gs] packed 2 rows per byte row (odd row count rounds up).
  auto st = f.stored(quanto::qint4, {3, 256}, 128, at::kFloat);
  ASSERT_EQ(keys_of(st), (std::vector<std::string>{"weight._data._data", "weight._scale", "weight._shift"}));
  EXPECT_EQ(st[0].shape, (V{3, 128}));
  EXPECT_EQ(st[0].dtype, at::kByte);
  EXPECT_EQ(st[1].shape, (V{6, 1}));
  EXPECT_EQ(st[2].dtype, at::kFloat);
  // Per channel, 2-bit: the weight's own shape, 4 rows per byte row; a zero-point is uint8.
  st = f.stored(quanto::qint2, {5, 3, 2}, std::nullopt, at::kHalf, /*zero_point=*/true);
  EXPECT_EQ(st[0].shape, (V{2, 3, 2}));
  EXPECT_EQ(st[1].shape, (V{5, 1, 1}));
  EXPECT_EQ(st[2].dtype, at::kByte);
  EXPECT_THROW(quanto::kQBytesFormat.stored(quanto::qint4, {4, 4}, std::nullopt, at::kFloat), c10::ValueError);
  // Suffix matching needs the longest key first.
  const auto& all = quanto::all_weight_keys();
  ASSERT_FALSE(all.empty());
  EXPECT_EQ(all.front(), "weight._data._data");
  const auto& module_keys = quanto::quantized_module_keys();
  EXPECT_EQ(module_keys.back(), "output_scale");
}

TEST(WeightLayoutPolicy, PicksTheKernelLayoutPerDeviceAndIsa) {
  quanto::ops::ForceGenericPath cpu_kernels(false);  // the CPU kernels' layouts, even under QUANTO_FORCE_GENERIC
  const c10::Device cpu(at::kCPU), cuda(at::kCUDA, 0), mps(at::kMPS), meta(at::kMeta);
  const auto& q4 = quanto::qint4;
  const auto& q2 = quanto::qint2;
  const auto& q8 = quanto::qint8;
  EXPECT_EQ(quanto::choose_layout(q4, {64, 256}, 128, cpu, nullptr, true), WeightLayout::tiled);
  EXPECT_EQ(quanto::choose_layout(q4, {64, 256}, 128, meta, nullptr, true), WeightLayout::tiled);
  EXPECT_EQ(quanto::choose_layout(q4, {64, 256}, 128, cuda, nullptr, true), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q4, {64, 256}, 128, mps, nullptr, true), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q4, {64, 256}, 128, cpu, nullptr, false), WeightLayout::canonical);  // embedding
  EXPECT_EQ(quanto::choose_layout(q4, {64, 48}, std::nullopt, cpu, nullptr, true), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q4, {64, 96}, std::nullopt, cpu, nullptr, true), WeightLayout::tiled);
  EXPECT_EQ(quanto::choose_layout(q2, {64, 96}, 32, cpu, nullptr, true), WeightLayout::canonical);  // 2-bit: 64s
  EXPECT_EQ(quanto::choose_layout(q2, {64, 128}, 64, cpu, nullptr, true), WeightLayout::tiled);
  EXPECT_EQ(quanto::choose_layout(q4, {8, 4, 3, 3}, std::nullopt, cpu, nullptr, true), WeightLayout::canonical);
  // W8A8: packed only for kernel sets with integer dot products, below the in_features limit.
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "avx512bf16"), WeightLayout::packed_w8a8);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "avx512vnni"), WeightLayout::packed_w8a8);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "avx512"), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "avx2"), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "avx2vnni"), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "generic"), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 1 << 17}, std::nullopt, cpu, &q8, true, "avx512bf16"),
            WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, nullptr, true, "avx512bf16"), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cuda, &q8, true, "avx512bf16"), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(quanto::qfloat8, {70, 99}, std::nullopt, cpu, &q8, true, "avx512bf16"),
            WeightLayout::canonical);
  // The forced generic path stands for a device without kernels of its own.
  quanto::ops::ForceGenericPath generic;
  EXPECT_EQ(quanto::choose_layout(q4, {64, 256}, 128, cpu, nullptr, true), WeightLayout::canonical);
  EXPECT_EQ(quanto::choose_layout(q8, {70, 99}, std::nullopt, cpu, &q8, true, "avx512bf16"), WeightLayout::canonical);
}

TEST(QWeight, StateRoundTripsThroughTheFormatKeys) {
  for (const auto* q : {&quanto::qint8, &quanto::qfloat8, &quanto::qint4, &quanto::qint2}) {
    for (bool zp : {false, true}) {
      if (zp && q->bits == 8) continue;
      SCOPED_TRACE(std::string(q->name) + (zp ? " zero-point" : ""));
      const at::Tensor w = randn({24, 128}, 11);
      const std::optional<int64_t> gs = q->bits < 8 ? std::optional<int64_t>(64) : std::nullopt;
      const QWeight qw = QWeight::quantize(w, *q, gs, std::nullopt, std::nullopt, zp);
      std::map<std::string, at::Tensor> state;
      for (auto& [k, t] : qw.state()) state[k] = t;
      EXPECT_EQ(state.size(), qw.format().keys().size());
      const QWeight back = QWeight::from_state(*q, {24, 128}, gs, [&](const std::string& k) -> std::optional<at::Tensor> {
        auto it = state.find(k);
        return it == state.end() ? std::nullopt : std::optional<at::Tensor>(it->second);
      });
      EXPECT_TRUE(at::equal(back.dequantize(), qw.dequantize()));
      // A missing key is named.
      const std::string missing = qw.format().keys().back();
      try {
        QWeight::from_state(*q, {24, 128}, gs, [&](const std::string& k) -> std::optional<at::Tensor> {
          if (k == missing) return std::nullopt;
          return state.at(k);
        });
        ADD_FAILURE() << "no error for a missing key";
      } catch (const c10::ValueError& e) {
        EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
      }
    }
  }
}

// Every layout converts back to the canonical bytes exactly, and linear() through the layout's
// op equals linear() on the canonical layout.
TEST(QWeight, LayoutsRoundTripAndRunTheSameLinear) {
  const at::Tensor x = randn({3, 128}, 12);
  const at::Tensor bias = randn({40}, 13);
  struct Case {
    const quanto::QType* q;
    WeightLayout layout;
  };
  for (const Case& c : {Case{&quanto::qint4, WeightLayout::tiled}, Case{&quanto::qint2, WeightLayout::tiled},
                        Case{&quanto::qint8, WeightLayout::packed_w8a8}}) {
    SCOPED_TRACE(std::string(c.q->name) + " " + quanto::layout_name(c.layout));
    const std::optional<int64_t> gs = c.q->bits < 8 ? std::optional<int64_t>(64) : std::nullopt;
    const QWeight canonical = QWeight::quantize(randn({40, 128}, 14), *c.q, gs);
    const QWeight laid = canonical.with_layout(c.layout);
    ASSERT_EQ(laid.layout(), c.layout);
    const QWeight back = laid.to_canonical();
    EXPECT_EQ(back.layout(), WeightLayout::canonical);
    for (size_t i = 0; i < back.state().size(); ++i)
      EXPECT_TRUE(at::equal(back.state()[i].second, canonical.state()[i].second)) << back.state()[i].first;
    EXPECT_LT(quanto_test::rel_err(laid.linear(x, bias), canonical.linear(x, bias)), 1e-5);
    if (c.q->name == "qint8") {
      const auto qx = quanto::QActivation::quantize(x, quanto::qint8, at::full({}, 0.02));
      EXPECT_TRUE(at::equal(laid.linear_w8a8(qx.data(), qx.scale(), bias, at::kFloat),
                            canonical.linear_w8a8(qx.data(), qx.scale(), bias, at::kFloat)));
    }
  }
  // Wrong layout for the format: a clear error.
  const QWeight w8 = QWeight::quantize(randn({8, 64}, 15), quanto::qint8, std::nullopt);
  EXPECT_THROW(w8.with_layout(WeightLayout::tiled), c10::ValueError);
}

// Moving a weight picks the destination's layout (the meta device mirrors the CPU's).
TEST(QWeight, ToDeviceChoosesTheLayoutThere) {
  quanto::ops::ForceGenericPath cpu_kernels(false);  // the CPU kernels' layouts, even under QUANTO_FORCE_GENERIC
  const QWeight w = QWeight::quantize(randn({32, 128}, 16), quanto::qint4, 64);
  EXPECT_EQ(w.to(at::kCPU, nullptr, true).layout(), WeightLayout::tiled);
  EXPECT_EQ(w.to(at::kCPU, nullptr, false).layout(), WeightLayout::canonical);
  const QWeight tiled = w.with_layout(WeightLayout::tiled);
  const QWeight back = tiled.to(at::kCPU, nullptr, false);
  EXPECT_EQ(back.layout(), WeightLayout::canonical);
  EXPECT_TRUE(at::equal(back.bits.data(), w.bits.data()));
}

// A layer's to(device) converts its layout both ways; with the generic path forced the CPU stands
// for a device without kernels of its own (canonical layout).
TEST(QWeight, LayerToDeviceConvertsLayoutsBothWays) {
  quanto::ops::ForceGenericPath cpu_kernels(false);  // the CPU kernels' layouts, even under QUANTO_FORCE_GENERIC
  torch::manual_seed(17);
  quanto::nn::QLinear q(128, 48);
  q->quantize(quanto_test::spec("qint4"));
  q->freeze();
  ASSERT_EQ(q->qweight().layout(), WeightLayout::tiled);
  const at::Tensor tiled = q->weight_data.clone(), canonical = q->qweight().bits.canonical_data();
  const at::Tensor x = randn({3, 128}, 18);
  at::NoGradGuard no_grad;
  const at::Tensor want = q(x);
  {
    quanto::ops::ForceGenericPath generic;
    q->to(at::kCPU);
    EXPECT_EQ(q->qweight().layout(), WeightLayout::canonical);
    EXPECT_TRUE(at::equal(q->weight_data, canonical));
    EXPECT_LT(quanto_test::rel_err(q(x), want), 1e-5);
  }
  q->to(at::kCPU);
  EXPECT_EQ(q->qweight().layout(), WeightLayout::tiled);
  EXPECT_TRUE(at::equal(q->weight_data, tiled));
  EXPECT_TRUE(at::equal(q(x), want));
}
