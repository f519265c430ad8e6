// Quantized tensor value types: quantize/dequantize error bounds, canonical <-> tiled round trips,
// device/dtype moves, storage bytes, validation errors.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <quanto/tensor.h>

namespace {

using quanto::QActivation;
using quanto::QBitsWeight;
using quanto::QBytesWeight;

at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

TEST(QBytesWeight, QuantizeDequantizeWithinHalfStep) {
  for (const char* name : {"qint8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2"}) {
    SCOPED_TRACE(name);
    const auto& q = quanto::qtype_from_name(name);
    at::Tensor w = randn({16, 40}, 1);
    QBytesWeight qw = QBytesWeight::quantize(w, q);
    EXPECT_EQ(qw.data().scalar_type(), q.dtype);
    EXPECT_EQ(qw.scale().sizes(), at::IntArrayRef({16, 1}));
    at::Tensor err = (qw.dequantize() - w).abs();
    if (!q.is_floating_point) {
      EXPECT_TRUE((err <= qw.scale() * 0.5 + 1e-6).all().item<bool>());
    } else {
      // float8: relative error of the mantissa (3 bits e4m3, 2 bits e5m2) plus subnormal range
      const double rel = q.dtype == at::kFloat8_e5m2 ? 0.125 : 0.0625;
      EXPECT_TRUE((err <= w.abs() * rel + qw.scale() * 0.5).all().item<bool>());
    }
    EXPECT_EQ(qw.nbytes(), 16 * 40 * 1 + 16 * 4);
    // canonical round trip: wrap the stored tensors again
    QBytesWeight back(q, qw.data().clone(), qw.scale().clone());
    EXPECT_TRUE(at::equal(back.dequantize(), qw.dequantize()));
    EXPECT_EQ(qw.to(at::kBFloat16).scale().scalar_type(), at::kBFloat16);
    EXPECT_EQ(qw.to(at::kBFloat16).data().scalar_type(), q.dtype);
    EXPECT_EQ(qw.to(c10::Device("cpu")).data().device(), c10::Device("cpu"));
  }
}

TEST(QBytesWeight, Conv4dWeight) {
  at::Tensor w = randn({8, 3, 3, 3}, 2);
  QBytesWeight qw = QBytesWeight::quantize(w, quanto::qint8);
  EXPECT_EQ(qw.scale().sizes(), at::IntArrayRef({8, 1, 1, 1}));
  EXPECT_LE((qw.dequantize() - w).abs().max().item<double>(), qw.scale().max().item<double>() * 0.5 + 1e-6);
}

TEST(QBytesWeight, RejectsBadCanonicalTensors) {
  at::Tensor data = at::zeros({4, 8}, at::kChar);
  EXPECT_THROW(QBytesWeight(quanto::qint8, data, at::ones({8, 1})), c10::Error);
  EXPECT_THROW(QBytesWeight(quanto::qint8, data.to(at::kByte), at::ones({4, 1})), c10::Error);
  EXPECT_THROW(QBytesWeight(quanto::qint4, data, at::ones({4, 1})), c10::Error);
  try {
    QBytesWeight(quanto::qint8, data, at::ones({4}));
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("scale must have shape"), std::string::npos) << e.what();
  }
}

struct BitsCase {
  const char* qtype;
  std::vector<int64_t> shape;
  std::optional<int64_t> group_size;
  bool zero_point;
};

TEST(QBitsWeight, QuantizeDequantizeAndRoundTrips) {
  const std::vector<BitsCase> cases = {
      {"qint4", {8, 64}, 32, false}, {"qint4", {9, 128}, 64, true}, {"qint4", {8, 40}, std::nullopt, false},
      {"qint2", {8, 64}, 32, false}, {"qint2", {5, 96}, 96, true},  {"qint4", {6, 4, 3, 3}, std::nullopt, false},
      {"qint4", {6, 4, 4, 4}, 32, false}, {"qint4", {4, 64}, std::nullopt, false}};
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.qtype) + " gs=" + (c.group_size ? std::to_string(*c.group_size) : "none"));
    const auto& q = quanto::qtype_from_name(c.qtype);
    at::Tensor w = randn(c.shape, 3);
    QBitsWeight qw = QBitsWeight::quantize(w, q, c.group_size, std::nullopt, std::nullopt, c.zero_point);
    EXPECT_EQ(qw.zero_point(), c.zero_point);
    EXPECT_EQ(qw.layout(), QBitsWeight::Layout::canonical);
    at::Tensor deq = qw.dequantize();
    EXPECT_EQ(deq.sizes(), w.sizes());
    // one quantization step at most (half a step from rounding; a zero-point adds up to half a step)
    const int64_t gs = qw.kernel_group_size();
    at::Tensor err = (deq - w).abs().reshape({-1, gs});
    at::Tensor step = qw.scale().reshape({-1, 1});
    EXPECT_TRUE((err <= step * (c.zero_point ? 1.0 : 0.5) + 1e-5).all().item<bool>());
    // canonical tensors wrap back to the same weight
    QBitsWeight back(q, c.shape, c.group_size, qw.data().clone(), qw.scale().clone(), qw.shift().clone());
    EXPECT_TRUE(at::equal(back.dequantize(), deq));
    const int64_t k = 8 / q.bits;
    const int64_t numel = w.numel();
    EXPECT_EQ(qw.nbytes(), (numel / gs + k - 1) / k * gs + (numel / gs) * 4 + (numel / gs) * (c.zero_point ? 1 : 4));
    if (qw.can_tile()) {
      QBitsWeight t = qw.to_tiled();
      EXPECT_EQ(t.layout(), QBitsWeight::Layout::tiled);
      EXPECT_TRUE(at::equal(t.to_canonical().data(), qw.data()));  // exact round trip
      EXPECT_TRUE(at::equal(t.dequantize(), deq));
      QBitsWeight t2 = QBitsWeight::from_tiled(q, c.shape, c.group_size, t.data(), t.scale(), t.shift());
      EXPECT_TRUE(at::equal(t2.canonical_data(), qw.data()));
    } else {
      EXPECT_THROW(qw.to_tiled(), c10::Error);
    }
    QBitsWeight h = qw.to(at::kHalf);
    EXPECT_EQ(h.scale().scalar_type(), at::kHalf);
    EXPECT_EQ(h.shift().scalar_type(), c.zero_point ? at::kByte : at::kHalf);
  }
}

TEST(QBitsWeight, RejectsBadCanonicalTensors) {
  QBitsWeight qw = QBitsWeight::quantize(randn({8, 64}, 4), quanto::qint4, 32);
  try {
    QBitsWeight(quanto::qint4, {8, 64}, 64, qw.data(), qw.scale(), qw.shift());
    FAIL();
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("must have shape"), std::string::npos) << e.what();
  }
  EXPECT_THROW(QBitsWeight(quanto::qint4, {8, 64}, 48, qw.data(), qw.scale(), qw.shift()), c10::Error);
  EXPECT_THROW(QBitsWeight(quanto::qint8, {8, 64}, 32, qw.data(), qw.scale(), qw.shift()), c10::Error);
  EXPECT_THROW(QBitsWeight(quanto::qint4, {8, 64}, 32, qw.data().to(at::kChar), qw.scale(), qw.shift()), c10::Error);
}

TEST(QActivation, QuantizeDequantize) {
  at::Tensor x = randn({4, 10}, 5);
  at::Tensor scale = x.abs().max() / 127;
  QActivation a = QActivation::quantize(x, quanto::qint8, scale);
  EXPECT_EQ(a.data().scalar_type(), at::kChar);
  EXPECT_LE((a.dequantize() - x).abs().max().item<double>(), scale.item<double>() * 0.5 + 1e-6);
  EXPECT_EQ(a.nbytes(), 40 + 4);
  QActivation f = QActivation::quantize(x, quanto::qfloat8, x.abs().max() / 448);
  EXPECT_EQ(f.data().scalar_type(), at::kFloat8_e4m3fn);
  EXPECT_THROW(QActivation(quanto::qint8, a.data(), at::ones({1})), c10::Error);
  EXPECT_THROW(QActivation(quanto::qint4, a.data(), scale), c10::Error);
}

}  // namespace
