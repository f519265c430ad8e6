// Quantization kernels: every ISA's table against the scalar reference (bit-exact), and the
// reference's documented policies (ties, saturation, NaN, zero scales, constant groups).
#include <gtest/gtest.h>

#include <cstring>

#include "kernels/ref/quantize_ref.h"
#include "test_util.h"

namespace quanto::kernels {
namespace {

using testing::kCols;
using testing::random_values;
using testing::sprinkle_specials;

class PerIsa : public ::testing::TestWithParam<CpuIsa> {};

template <typename T>
void check_absmax_rows(const KernelTable& table) {
  for (int64_t rows : {1, 3})
    for (int64_t cols : kCols) {
      auto x = random_values<T>(static_cast<size_t>(rows * cols), static_cast<uint32_t>(rows * 1000 + cols));
      std::vector<float> want(rows), got(rows);
      absmax_rows_ref<T>(x.data(), rows, cols, want.data());
      quantize_kernels<T>(table).absmax_rows(x.data(), rows, cols, got.data());
      for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(got[r], want[r]) << "rows=" << rows << " cols=" << cols;
      // A NaN anywhere, body or tail, must reach the caller.
      x[static_cast<size_t>(cols - 1)] = from_float<T>(std::nanf(""));
      quantize_kernels<T>(table).absmax_rows(x.data(), rows, cols, got.data());
      EXPECT_TRUE(std::isnan(got[0])) << "cols=" << cols;
    }
}

TEST_P(PerIsa, AbsmaxRowsMatchesReference) {
  const KernelTable& table = kernel_table(GetParam());
  check_absmax_rows<float>(table);
  check_absmax_rows<bf16>(table);
}

template <typename T>
void check_symmetric_int(const KernelTable& table) {
  const IntRange ranges[] = {{-128, 127}, {-8, 7}, {-2, 1}};
  for (const IntRange range : ranges)
    for (int64_t rows : {1, 4})
      for (int64_t cols : kCols)
        for (ParamLayout layout : {kPerRow, kPerTensor, kPerCol}) {
          auto x = random_values<T>(static_cast<size_t>(rows * cols), static_cast<uint32_t>(cols * 7 + rows));
          sprinkle_specials(x);
          const int64_t n_scales = layout.col_stride ? cols : rows;
          auto scale = random_values<float>(static_cast<size_t>(n_scales), 99, 0.1f);
          for (auto& s : scale) s = std::fabs(s) + 0.01f;
          scale[0] = 0.0f;  // zero-scale policy in every variant
          std::vector<int8_t> want(x.size()), got(x.size());
          symmetric_quantize_int_ref<T>(x.data(), scale.data(), layout, rows, cols, range, want.data());
          quantize_kernels<T>(table).symmetric_quantize_int(x.data(), scale.data(), layout, rows, cols, range, got.data());
          EXPECT_EQ(got, want) << "rows=" << rows << " cols=" << cols << " qmax=" << range.qmax
                               << " layout=" << layout.row_stride << "," << layout.col_stride;
        }
}

TEST_P(PerIsa, SymmetricQuantizeIntMatchesReference) {
  const KernelTable& table = kernel_table(GetParam());
  check_symmetric_int<float>(table);
  check_symmetric_int<bf16>(table);
}

template <typename T>
void check_minmax_rows(const KernelTable& table) {
  for (int64_t rows : {1, 3})
    for (int64_t cols : kCols) {
      auto x = random_values<T>(static_cast<size_t>(rows * cols), static_cast<uint32_t>(rows * 31 + cols));
      std::vector<float> want_lo(rows), want_hi(rows), lo(rows), hi(rows);
      minmax_rows_ref<T>(x.data(), rows, cols, want_lo.data(), want_hi.data());
      quantize_kernels<T>(table).minmax_rows(x.data(), rows, cols, lo.data(), hi.data());
      EXPECT_EQ(lo, want_lo) << "cols=" << cols;
      EXPECT_EQ(hi, want_hi) << "cols=" << cols;
      x[static_cast<size_t>(cols / 2)] = from_float<T>(std::nanf(""));
      quantize_kernels<T>(table).minmax_rows(x.data(), rows, cols, lo.data(), hi.data());
      EXPECT_TRUE(std::isnan(lo[0]) && std::isnan(hi[0])) << "cols=" << cols;
    }
}

TEST_P(PerIsa, MinmaxRowsMatchesReference) {
  const KernelTable& table = kernel_table(GetParam());
  check_minmax_rows<float>(table);
  check_minmax_rows<bf16>(table);
}

template <typename T>
void check_affine(const KernelTable& table) {
  for (int32_t code_max : {3, 15})
    for (int64_t rows : {1, 4})
      for (int64_t cols : kCols)
        for (ParamLayout layout : {kPerRow, kPerTensor, kPerCol}) {
          auto x = random_values<T>(static_cast<size_t>(rows * cols), static_cast<uint32_t>(cols * 13 + rows));
          sprinkle_specials(x);
          const size_t n = static_cast<size_t>(layout.col_stride ? cols : rows);
          auto scale = random_values<float>(n, 17, 0.3f);
          for (auto& s : scale) s = std::fabs(s) + 0.01f;
          scale[0] = 0.0f;  // zero-scale policy in every variant
          const auto shift = random_values<float>(n, 19, 1.0f);
          std::vector<uint8_t> zp(n);
          for (size_t i = 0; i < n; ++i) zp[i] = static_cast<uint8_t>((i * 7) % (code_max + 1));
          std::vector<uint8_t> want(x.size()), got(x.size());
          affine_quantize_ref<T>(x.data(), scale.data(), shift.data(), layout, rows, cols, code_max, want.data());
          quantize_kernels<T>(table).affine_quantize(x.data(), scale.data(), shift.data(), layout, rows, cols,
                                                     code_max, got.data());
          EXPECT_EQ(got, want) << "float shift rows=" << rows << " cols=" << cols << " code_max=" << code_max;
          affine_quantize_zp_ref<T>(x.data(), scale.data(), zp.data(), layout, rows, cols, code_max, want.data());
          quantize_kernels<T>(table).affine_quantize_zp(x.data(), scale.data(), zp.data(), layout, rows, cols,
                                                        code_max, got.data());
          EXPECT_EQ(got, want) << "zero-point rows=" << rows << " cols=" << cols << " code_max=" << code_max;
        }
}

TEST_P(PerIsa, AffineQuantizeMatchesReference) {
  const KernelTable& table = kernel_table(GetParam());
  check_affine<float>(table);
  check_affine<bf16>(table);
}

INSTANTIATE_TEST_SUITE_P(Isas, PerIsa, ::testing::ValuesIn(supported_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(SymmetricRef, RoundsHalfToEvenAndSaturates) {
  const float x[] = {2.5f, 3.5f, -2.5f, -0.5f, 1000.0f, -1000.0f, INFINITY, -INFINITY, std::nanf(""), 0.0f};
  const float scale = 1.0f;
  int8_t q[std::size(x)];
  symmetric_quantize_int_ref<float>(x, &scale, kPerTensor, 1, std::size(x), {-128, 127}, q);
  const int8_t want[] = {2, 4, -2, 0, 127, -128, 127, -128, 0, 0};
  EXPECT_EQ(std::memcmp(q, want, sizeof(want)), 0);
}

TEST(SymmetricRef, DividesInTheInputDtype) {
  // bf16: x / scale is rounded to bf16 before torch.round, as PyTorch does.
  // x / s = 0.50195 in float, which would round to 1; rounded to bf16 first (as PyTorch does
  // for a bf16 tensor) it is exactly 0.5, which rounds half-to-even to 0.
  const bf16 x = bf16_from_float(0.5f + 0x1p-8f);  // exact in bf16
  const float s = 1.0f + 0x1p-8f;
  int8_t q;
  symmetric_quantize_int_ref<bf16>(&x, &s, kPerTensor, 1, 1, {-128, 127}, &q);
  const float quotient_in_float = to_float(x) / s;
  ASSERT_GT(quotient_in_float, 0.5f);                             // float would round to 1
  ASSERT_EQ(to_float(bf16_from_float(quotient_in_float)), 0.5f);  // bf16 makes it a tie
  EXPECT_EQ(q, 0);
}

TEST(SymmetricRef, Fp8SaturatesToMaxAndKeepsNan) {
  const float x[] = {1e6f, -1e6f, INFINITY, -INFINITY, std::nanf(""), 1.0f};
  const float scale = 1.0f;
  uint8_t q[std::size(x)];
  for (Fp8Format f : {Fp8Format::e4m3fn, Fp8Format::e4m3fnuz, Fp8Format::e5m2}) {
    symmetric_quantize_fp8_ref<float>(x, &scale, kPerTensor, 1, std::size(x), f, q);
    const float max = fp8_spec(f).max;
    EXPECT_EQ(fp8_to_float(q[0], f), max);
    EXPECT_EQ(fp8_to_float(q[1], f), -max);
    EXPECT_EQ(fp8_to_float(q[2], f), max);
    EXPECT_EQ(fp8_to_float(q[3], f), -max);
    EXPECT_TRUE(std::isnan(fp8_to_float(q[4], f)));
    EXPECT_EQ(fp8_to_float(q[5], f), 1.0f);
  }
}

TEST(ScaleRef, ZeroRangeNeverGivesZeroScale) {
  const float amax[] = {0.0f, 1e-45f, 254.0f};
  float scale[3];
  absmax_to_scale_ref<float>(amax, 3, 127.0f, scale);
  EXPECT_EQ(scale[0], 1.0f);
  EXPECT_GT(scale[1], 0.0f);
  EXPECT_EQ(scale[2], 2.0f);
}

TEST(AffineRef, ConstantGroupsRoundTrip) {
  for (float c : {0.0f, 0.37f, -0.37f, 1000.0f, -3.0f}) {
    const int64_t n = 16;
    std::vector<float> x(n, c);
    float mn, mx, scale, shift;
    minmax_rows_ref<float>(x.data(), 1, n, &mn, &mx);
    minmax_to_scale_shift_ref<float>(&mn, &mx, 1, 15, &scale, &shift);
    ASSERT_GT(scale, 0.0f);
    std::vector<uint8_t> q(n);
    std::vector<float> y(n);
    affine_quantize_ref<float>(x.data(), &scale, &shift, kPerRow, 1, n, 15, q.data());
    affine_dequantize_ref<float>(q.data(), &scale, &shift, kPerRow, 1, n, y.data());
    for (float v : y) EXPECT_EQ(v, c) << "float shift, c=" << c;
    uint8_t zp;
    shift_to_zeropoint_ref<float>(&scale, &shift, 1, 15, &zp);
    affine_quantize_zp_ref<float>(x.data(), &scale, &zp, kPerRow, 1, n, 15, q.data());
    affine_dequantize_zp_ref<float>(q.data(), &scale, &zp, kPerRow, 1, n, y.data());
    for (float v : y) {
      EXPECT_TRUE(std::isfinite(v));
      EXPECT_NEAR(v, c, std::fabs(c) * 1e-6f) << "zero-point, c=" << c;
    }
  }
}

TEST(AffineRef, MatchesTheFormula) {
  const int64_t rows = 3, cols = 33;
  auto x = random_values<float>(rows * cols, 5);
  std::vector<float> mn(rows), mx(rows), scale(rows), shift(rows);
  minmax_rows_ref<float>(x.data(), rows, cols, mn.data(), mx.data());
  minmax_to_scale_shift_ref<float>(mn.data(), mx.data(), rows, 15, scale.data(), shift.data());
  std::vector<uint8_t> q(x.size());
  affine_quantize_ref<float>(x.data(), scale.data(), shift.data(), kPerRow, rows, cols, 15, q.data());
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_EQ(scale[r], (mx[r] - mn[r]) / 15.0f);
    EXPECT_EQ(shift[r], -mn[r]);
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::nearbyint((x[r * cols + c] + shift[r]) / scale[r]);
      EXPECT_EQ(q[r * cols + c], static_cast<uint8_t>(std::min(std::max(v, 0.0f), 15.0f)));
    }
  }
}

TEST(AffineRef, NanAndInfPolicies) {
  const float x[] = {std::nanf(""), INFINITY, -INFINITY};
  const float scale = 0.5f, shift = 1.0f;
  uint8_t q[3];
  affine_quantize_ref<float>(x, &scale, &shift, kPerTensor, 1, 3, 15, q);
  EXPECT_EQ(q[0], 0);
  EXPECT_EQ(q[1], 15);
  EXPECT_EQ(q[2], 0);
  const uint8_t zp = 3;
  affine_quantize_zp_ref<float>(x, &scale, &zp, kPerTensor, 1, 3, 15, q);
  EXPECT_EQ(q[0], 3);
  EXPECT_EQ(q[1], 15);
  EXPECT_EQ(q[2], 0);
}

TEST(DequantizeRef, ScalesInTheScaleDtype) {
  const int8_t q[] = {-128, 127, 0, 1};
  const float s = to_float(bf16_from_float(0.1f));
  bf16 y[4];
  symmetric_dequantize_int_ref<bf16>(q, &s, kPerTensor, 1, 4, y);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(y[i].bits, bf16_from_float(q[i] * s).bits);
}

}  // namespace
}  // namespace quanto::kernels
