// The C++ API: calls go through the dispatcher, shapes and dtypes are right, and bad input
// raises c10 errors that name the argument.
#include <gtest/gtest.h>

#include <tuple>
#include <vector>

#include <ATen/ATen.h>

#include <quanto/quanto.h>

namespace {

TEST(QType, LookupByNameAndAlias) {
  EXPECT_EQ(quanto::qtype_from_name("qint4").bits, 4);
  EXPECT_EQ(&quanto::qtype_from_name("qfloat8"), &quanto::qfloat8_e4m3fn);
  EXPECT_EQ(quanto::qtype_from_name("qfloat8_e5m2").dtype, c10::ScalarType::Float8_e5m2);
  try {
    quanto::qtype_from_name("qint3");
    FAIL() << "expected an error";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("valid qtypes: qint2, qint4, qint8"), std::string::npos);
  }
}

TEST(Ops, WeightInt4RoundTripThroughTheDispatcher) {
  at::manual_seed(0);
  const at::Tensor w = at::randn({64, 256});
  auto [scale, shift] = quanto::ops::minmax_scale_shift(w, "qint4", 0, 128);
  EXPECT_EQ(scale.sizes(), at::IntArrayRef({128, 1}));
  const at::Tensor codes = quanto::ops::affine_quantize(w, scale, shift, "qint4", 0, 128);
  const at::Tensor packed = quanto::ops::pack_codes(codes, 4);
  EXPECT_EQ(packed.sizes(), at::IntArrayRef({64, 128}));
  EXPECT_TRUE(at::equal(quanto::ops::unpack_codes(packed, 4, 128), codes));
  const at::Tensor back = quanto::ops::affine_dequantize(codes, scale, shift, w.sizes(), 0, 128);
  EXPECT_LE((back - w).abs().max().item<float>(), 0.5f * scale.max().item<float>() + 1e-6f);
}

// Two 4-bit weights (96 and 40 rows, K = 128, groups of 32) in the tiled layout, with a bf16
// model's scales and shifts: (codes, scales, shifts), a list each.
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>> two_tiled_weights() {
  std::vector<at::Tensor> tiled, scales, shifts;
  for (int64_t n : {96, 40}) {
    const at::Tensor w = at::randn({n, 128});
    auto [scale, shift] = quanto::ops::minmax_scale_shift(w, "qint4", 0, 32);
    const at::Tensor packed = quanto::ops::pack_codes(quanto::ops::affine_quantize(w, scale, shift, "qint4", 0, 32), 4);
    tiled.push_back(quanto::ops::tile_qbits(packed, 4, n, 128, 32));
    scales.push_back(scale.to(at::kBFloat16));
    shifts.push_back(shift.to(at::kBFloat16));
  }
  return {tiled, scales, shifts};
}

// Two tiled weights on one bf16 row of x (the fused decode pass): the outputs side by side,
// equal to the separate calls.
TEST(Ops, TiledCatEqualsTheSeparateLinears) {
  at::manual_seed(0);
  const auto [tiled, scales, shifts] = two_tiled_weights();
  const at::Tensor x = at::randn({1, 128}).to(at::kBFloat16);
  const at::Tensor y = quanto::ops::linear_qbits_tiled_cat(x, tiled, scales, shifts, 4, 32);
  ASSERT_EQ(y.sizes(), at::IntArrayRef({1, 136}));
  EXPECT_TRUE(at::equal(y.narrow(1, 0, 96), quanto::ops::linear_qbits_tiled(x, tiled[0], scales[0], shifts[0], 4, 32)));
  EXPECT_TRUE(at::equal(y.narrow(1, 96, 40), quanto::ops::linear_qbits_tiled(x, tiled[1], scales[1], shifts[1], 4, 32)));
}

// The same with the row quantized to int8 (dynamic activations, W4A8).
TEST(Ops, W4A8CatEqualsTheSeparateLinears) {
  at::manual_seed(0);
  const auto [tiled, scales, shifts] = two_tiled_weights();
  const auto [xd, xs] = quanto::ops::quantize_per_token(at::randn({1, 128}).to(at::kBFloat16), "qint8");
  const at::Tensor y = quanto::ops::linear_w4a8_tiled_cat(xd, xs, tiled, scales, shifts, 32, c10::List<std::optional<at::Tensor>>(),
                                                          at::kBFloat16);
  ASSERT_EQ(y.sizes(), at::IntArrayRef({1, 136}));
  for (int i = 0; i < 2; ++i)
    EXPECT_TRUE(at::equal(y.narrow(1, i == 0 ? 0 : 96, tiled[i].size(0)),
                          quanto::ops::linear_w4a8_tiled(xd, xs, tiled[i], scales[i], shifts[i], 32, std::nullopt,
                                                         at::kBFloat16)));
}

TEST(Ops, QBytesCatEqualsTheSeparateLinears) {
  at::manual_seed(0);
  std::vector<at::Tensor> data, scales;
  for (int64_t n : {48, 20}) {
    const at::Tensor w = at::randn({n, 96});
    const at::Tensor scale = quanto::ops::absmax_scale(w, "qint8", 0);
    data.push_back(quanto::ops::symmetric_quantize(w, scale, "qint8", 0));
    scales.push_back(scale);
  }
  const at::Tensor x = at::randn({1, 96});
  const at::Tensor y = quanto::ops::linear_qbytes_cat(x, data, scales);
  ASSERT_EQ(y.sizes(), at::IntArrayRef({1, 68}));
  EXPECT_TRUE(at::equal(y.narrow(1, 0, 48), quanto::ops::linear_qbytes(x, data[0], scales[0])));
  EXPECT_TRUE(at::equal(y.narrow(1, 48, 20), quanto::ops::linear_qbytes(x, data[1], scales[1])));
}

TEST(Ops, Int8LinearMatchesDequantizedMatmul) {
  at::manual_seed(1);
  const at::Tensor x = at::randn({3, 33});
  const at::Tensor w = at::randn({5, 33});
  const at::Tensor scale = quanto::ops::absmax_scale(w, "qint8", 0);
  const at::Tensor data = quanto::ops::symmetric_quantize(w, scale, "qint8", 0);
  const at::Tensor y = quanto::ops::linear_qbytes(x, data, scale);
  const at::Tensor want = at::matmul(x, quanto::ops::symmetric_dequantize(data, scale).t());
  EXPECT_TRUE(at::allclose(y, want, 1e-5, 1e-5));
}

TEST(Ops, BadInputNamesTheArgument) {
  const at::Tensor x = at::randn({4, 64});
  EXPECT_THROW(
      {
        try {
          quanto::ops::minmax_scale_shift(x, "qint4", 0, 48);
        } catch (const c10::ValueError& e) {
          EXPECT_NE(std::string(e.what()).find("group_size 48 does not divide"), std::string::npos);
          throw;
        }
      },
      c10::ValueError);
  EXPECT_THROW(quanto::ops::absmax_scale(x.to(at::kInt), "qint8"), c10::TypeError);
  EXPECT_THROW(quanto::ops::pack_codes(at::zeros({4}, at::kByte), 3), c10::ValueError);
}

TEST(Ops, ForceGenericPathGuardScopesTheSwitch) {
  const bool initial = quanto::ops::force_generic_path(false);
  at::manual_seed(2);
  const at::Tensor w = at::randn({7, 64});
  const at::Tensor scale = quanto::ops::absmax_scale(w, "qint8", 0);
  const at::Tensor cpu = quanto::ops::symmetric_quantize(w, scale, "qint8", 0);
  {
    quanto::ops::ForceGenericPath generic;
    // Same codes from the device-generic implementation, bit for bit.
    EXPECT_TRUE(at::equal(quanto::ops::symmetric_quantize(w, scale, "qint8", 0), cpu));
    {
      quanto::ops::ForceGenericPath cpu_kernels(false);
      EXPECT_FALSE(quanto::ops::force_generic_path(false));
    }
    EXPECT_TRUE(quanto::ops::force_generic_path(true));
  }
  EXPECT_FALSE(quanto::ops::force_generic_path(initial));
}

TEST(Ops, CpuIsaIsReported) {
  const std::string isa = quanto::ops::cpu_isa();
  EXPECT_TRUE(isa == "generic" || isa == "avx2" || isa == "avx2vnni" || isa == "avx512" || isa == "avx512vnni" ||
              isa == "avx512bf16")
      << isa;
}

}  // namespace
