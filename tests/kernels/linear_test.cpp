// Reference matmuls against a naive double-precision evaluation of the same weights, on
// shapes with odd K, N = 1 and bias on/off; splitting N must not change a single bit.
#include <gtest/gtest.h>

#include <random>

#include "kernels/ref/linear_ref.h"
#include "kernels/ref/pack_ref.h"
#include "test_util.h"

namespace quanto::kernels {
namespace {

using testing::random_values;

struct Shape {
  int64_t M, K, N;
};
const Shape kShapes[] = {{1, 1, 1}, {3, 33, 1}, {2, 257, 5}, {4, 64, 16}};

template <typename T>
void expect_close(const std::vector<T>& got, const std::vector<double>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  double scale = 1e-6;
  for (double w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(to_float(got[i]), want[i], tol * scale) << i;
}

// Runs fn over N in two halves and in one go; both must agree bit for bit.
template <typename T, typename Fn>
std::vector<T> run_split(Shape s, Fn fn) {
  std::vector<T> whole(static_cast<size_t>(s.M * s.N)), halves(whole.size());
  fn(LinearShape{s.M, s.K, s.N, 0, s.N}, whole.data());
  fn(LinearShape{s.M, s.K, s.N, 0, s.N / 2}, halves.data());
  fn(LinearShape{s.M, s.K, s.N, s.N / 2, s.N}, halves.data());
  for (size_t i = 0; i < whole.size(); ++i) EXPECT_TRUE(testing::same_bits(whole[i], halves[i]));
  return whole;
}

std::vector<int8_t> random_int8(size_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(-128, 127);
  std::vector<int8_t> v(n);
  for (auto& x : v) x = static_cast<int8_t>(d(gen));
  return v;
}

template <typename T>
void check_int8(double tol) {
  for (const Shape s : kShapes)
    for (bool with_bias : {false, true}) {
      const auto x = random_values<T>(static_cast<size_t>(s.M * s.K), 1);
      const auto w = random_int8(static_cast<size_t>(s.N * s.K), 2);
      const auto scale = random_values<float>(static_cast<size_t>(s.N), 3, 0.01f);
      const auto bias = random_values<float>(static_cast<size_t>(s.N), 4);
      const float* b = with_bias ? bias.data() : nullptr;
      const auto y = run_split<T>(s, [&](LinearShape ls, T* out) {
        linear_int8_ref<T>(x.data(), w.data(), scale.data(), 1, b, ls, out);
      });
      std::vector<double> want(y.size());
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n) {
          double acc = 0;
          for (int64_t k = 0; k < s.K; ++k) acc += double(to_float(x[m * s.K + k])) * w[n * s.K + k] * scale[n];
          want[m * s.N + n] = acc + (b ? b[n] : 0.0);
        }
      expect_close(y, want, tol);
    }
}

TEST(LinearRef, Int8Weights) {
  check_int8<float>(1e-5);
  check_int8<bf16>(1e-2);
  check_int8<fp16>(2e-3);
}

TEST(LinearRef, Fp8Weights) {
  const Shape s{3, 33, 5};
  const auto x = random_values<float>(s.M * s.K, 5);
  std::vector<uint8_t> w(s.N * s.K);
  for (size_t i = 0; i < w.size(); ++i) w[i] = fp8_from_float(static_cast<float>(i % 17) - 8.0f, Fp8Format::e4m3fn);
  const float scale = 0.5f;
  const auto y = run_split<float>(s, [&](LinearShape ls, float* out) {
    linear_fp8_ref<float>(x.data(), w.data(), Fp8Format::e4m3fn, &scale, 0, nullptr, ls, out);
  });
  std::vector<double> want(y.size());
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = 0; n < s.N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < s.K; ++k) acc += double(x[m * s.K + k]) * (double((n * s.K + k) % 17) - 8.0) * 0.5;
      want[m * s.N + n] = acc;
    }
  expect_close(y, want, 1e-5);
}

TEST(LinearRef, PackedQbitsWeights) {
  for (int bits : {2, 4})
    for (const Shape s : {Shape{1, 32, 1}, Shape{3, 64, 5}, Shape{2, 96, 7}}) {
      const int64_t gs = 32, groups = s.N * s.K / gs;
      std::mt19937 gen(7);
      std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
      std::vector<uint8_t> codes(static_cast<size_t>(groups * gs));
      for (auto& c : codes) c = static_cast<uint8_t>(d(gen));
      std::vector<uint8_t> packed(static_cast<size_t>(packed_rows(groups, bits) * gs));
      ASSERT_TRUE(pack_ref(codes.data(), groups, gs, bits, 0, packed_rows(groups, bits), packed.data()));
      const auto scale = random_values<float>(static_cast<size_t>(groups), 8, 0.1f);
      const auto shift = random_values<float>(static_cast<size_t>(groups), 9, 0.5f);
      const auto x = random_values<float>(static_cast<size_t>(s.M * s.K), 10);
      const auto y = run_split<float>(s, [&](LinearShape ls, float* out) {
        linear_qbits_ref<float>(x.data(), packed.data(), bits, gs, scale.data(), shift.data(), nullptr, ls, out);
      });
      std::vector<double> want(y.size());
      for (int64_t m = 0; m < s.M; ++m)
        for (int64_t n = 0; n < s.N; ++n) {
          double acc = 0;
          for (int64_t k = 0; k < s.K; ++k) {
            const int64_t flat = n * s.K + k, g = flat / gs;
            acc += double(x[m * s.K + k]) * (double(codes[flat]) * scale[g] - shift[g]);
          }
          want[m * s.N + n] = acc;
        }
      expect_close(y, want, 1e-5);
    }
}

// The rows the op layer decodes before its float GEMM: exactly code · scale − shift of each
// weight, for any row range (rows 1-3 of 5 here), with groups several to a row (K = 96, 32).
TEST(LinearRef, DequantizedQbitsRows) {
  for (int bits : {2, 4})
    for (int64_t gs : {32, 96}) {
      const int64_t N = 5, K = 96, groups = N * K / gs;
      std::mt19937 gen(13);
      std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
      std::vector<uint8_t> codes(static_cast<size_t>(groups * gs));
      for (auto& c : codes) c = static_cast<uint8_t>(d(gen));
      std::vector<uint8_t> packed(static_cast<size_t>(packed_rows(groups, bits) * gs));
      ASSERT_TRUE(pack_ref(codes.data(), groups, gs, bits, 0, packed_rows(groups, bits), packed.data()));
      const auto scale = random_values<float>(static_cast<size_t>(groups), 14, 0.1f);
      const auto shift = random_values<float>(static_cast<size_t>(groups), 15, 0.5f);
      std::vector<float> rows(static_cast<size_t>(3 * K), NAN);
      dequantize_qbits_rows_ref(packed.data(), bits, gs, N, K, scale.data(), shift.data(), 1, 4, rows.data());
      for (int64_t n = 1; n < 4; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const int64_t flat = n * K + k, g = flat / gs;
          ASSERT_EQ(rows[(n - 1) * K + k], static_cast<float>(codes[flat]) * scale[g] - shift[g])
              << "bits " << bits << ", group " << gs << ", row " << n << ", k " << k;
        }
    }
}

TEST(LinearRef, W8A8AccumulatesExactly) {
  for (const Shape s : kShapes) {
    const auto x = random_int8(static_cast<size_t>(s.M * s.K), 11);
    const auto w = random_int8(static_cast<size_t>(s.N * s.K), 12);
    const float w_scale = 1.0f, x_scale = 1.0f;
    const auto y = run_split<float>(s, [&](LinearShape ls, float* out) {
      linear_w8a8_ref(x.data(), &x_scale, 0, w.data(), &w_scale, 0, nullptr, ls, out);
    });
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        int64_t acc = 0;
        for (int64_t k = 0; k < s.K; ++k) acc += int64_t(x[m * s.K + k]) * w[n * s.K + k];
        EXPECT_EQ(y[m * s.N + n], static_cast<float>(acc));  // |acc| < 2^24 here: exact in float
      }
  }
}

}  // namespace
}  // namespace quanto::kernels
