// Fused linear kernels of every ISA against the scalar references (float summation order
// differs, so within a tolerance), on shapes with remainders in K, N and M; and the tiled
// layout's exact round trip.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>

#include "kernels/dispatch.h"
#include "kernels/ref/pack_ref.h"
#include "kernels/ref/tiled_ref.h"
#include "test_util.h"

namespace quanto::kernels {
namespace {

using testing::as_floats;
using testing::random_values;

std::vector<uint8_t> random_codes(size_t n, int bits, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> d(0, (1 << bits) - 1);
  std::vector<uint8_t> v(n);
  for (auto& c : v) c = static_cast<uint8_t>(d(gen));
  return v;
}

// What the bf16 prefill GEMM computes for 2/4-bit weights: each weight dequantized in one fused
// multiply-add, c·s − h, rounded to bf16; the products summed in double.
std::vector<float> bf16_weight_linear_ref(const std::vector<float>& x, const std::vector<uint8_t>& codes,
                                          int64_t group_size, const std::vector<float>& scale,
                                          const std::vector<float>& shift, const float* bias, LinearShape s) {
  const int64_t groups = s.K / group_size;
  std::vector<float> y(static_cast<size_t>(s.M * s.N));
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = 0; n < s.N; ++n) {
      double acc = bias ? bias[n] : 0.0;
      for (int64_t k = 0; k < s.K; ++k) {
        const int64_t g = n * groups + k / group_size;
        const float w = to_float(bf16_from_float(std::fma(static_cast<float>(codes[n * s.K + k]), scale[g], -shift[g])));
        acc += static_cast<double>(x[m * s.K + k]) * w;
      }
      y[m * s.N + n] = static_cast<float>(acc);
    }
  return y;
}

// Tolerance relative to the largest output: float summation order (2e-5), or bf16 weights (1e-2).
void expect_close(const std::vector<float>& got, const std::vector<float>& want, const char* what,
                  float tol = 2e-5f) {
  float scale = 1e-6f;
  for (float w : want) scale = std::max(scale, std::fabs(w));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * scale) << what << " at " << i;
}

// Batch sizes: batch 1, every batched-GEMV size the kernels specialise (2-8), and prefill sizes
// (the GEMM path) with remainders against its micro-tiles.
const std::vector<int64_t> kBatches{1, 2, 3, 4, 5, 6, 7, 8, 9, 17};

class LinearPerIsa : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(LinearPerIsa, W8MatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  // K = 1100: several K blocks of the GEMM, and a tail. N = 70: several panels of channels and a
  // partial one (16 channels a panel on AVX2, 64 on AVX-512).
  for (int64_t M : kBatches)
    for (int64_t K : {1, 33, 64, 257, 1100})
      for (int64_t N : {1, 7, 16, 70})
        for (bool with_bias : {false, true}) {
          const auto x = random_values<float>(static_cast<size_t>(M * K), 1);
          std::vector<int8_t> w(static_cast<size_t>(N * K));
          std::mt19937 gen(2);
          for (auto& v : w) v = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(gen));
          const auto scale = random_values<float>(static_cast<size_t>(N), 3, 0.01f);
          const auto bias = random_values<float>(static_cast<size_t>(N), 4);
          const float* b = with_bias ? bias.data() : nullptr;
          std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
          linear_int8_ref<float>(x.data(), w.data(), scale.data(), 1, b, {M, K, N, 0, N}, want.data());
          // Split N the way threads do, at a point that is not a multiple of the row block.
          const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
          k.linear_w8(x.data(), w.data(), scale.data(), 1, b, {M, K, N, 0, mid}, got.data());
          k.linear_w8(x.data(), w.data(), scale.data(), 1, b, {M, K, N, mid, N}, got.data());
          expect_close(got, want, "w8");
        }
}

// Random 4-bit codes of an [N, K] weight and their tiled layout.
struct TiledW4 {
  std::vector<uint8_t> codes, tiled;
};
TiledW4 random_tiled_w4(int64_t N, int64_t K, uint32_t seed) {
  TiledW4 w{random_codes(static_cast<size_t>(N * K), 4, seed), std::vector<uint8_t>(static_cast<size_t>(N * K / 2))};
  tile_w4_ref(w.codes.data(), K, 0, N, w.tiled.data());
  return w;
}

TEST_P(LinearPerIsa, W4TiledMatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  // K = 96 and 576: a short last register of codes on the batch kernels (64 or 128 codes a
  // register); 1088: several K blocks of the GEMM. Groups of 96 and 160 straddle registers (each
  // block of a register takes its group's scale), K = 480 repeats their pattern several times.
  for (int64_t M : kBatches)
    for (int64_t K : {32, 64, 96, 256, 480, 576, 1088})
      for (int64_t N : {1, 7, 30})
        for (int64_t gs : {32, 64, 96, 128, 160, 256})
          for (bool with_bias : {false, true}) {
            if (K % gs != 0 || (with_bias && M % 4 != 1)) continue;
            const auto [codes, tiled] = random_tiled_w4(N, K, static_cast<uint32_t>(K + N));
            const size_t groups = static_cast<size_t>(N * K / gs);
            const auto scale = random_values<float>(groups, 5, 0.1f);
            const auto shift = random_values<float>(groups, 6, 0.5f);
            const auto x = random_values<float>(static_cast<size_t>(M * K), 7);
            const auto bias = random_values<float>(static_cast<size_t>(N), 8);
            const float* b = with_bias ? bias.data() : nullptr;
            std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
            linear_w4_tiled_ref(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, 0, N}, want.data());
            const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
            k.linear_w4_tiled(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, 0, mid}, got.data());
            k.linear_w4_tiled(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, mid, N}, got.data());
            expect_close(got, want, "w4 tiled");
          }
}

TEST_P(LinearPerIsa, W2TiledMatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  // K = 192 and 320: a short last register of codes (128 or 256 codes a register); 1088: several
  // K blocks of the GEMM. Groups of 192 cannot be scaled per register.
  for (int64_t M : kBatches)
    for (int64_t K : {64, 128, 192, 256, 320, 1088})
      for (int64_t N : {1, 7, 30})
        for (int64_t gs : {64, 128, 192, 256})
          for (bool with_bias : {false, true}) {
            if (K % gs != 0 || (with_bias && M % 4 != 1)) continue;
            const auto codes = random_codes(static_cast<size_t>(N * K), 2, static_cast<uint32_t>(K * 7 + N));
            std::vector<uint8_t> tiled(static_cast<size_t>(N * K / 4));
            tile_w2_ref(codes.data(), K, 0, N, tiled.data());
            const size_t groups = static_cast<size_t>(N * K / gs);
            const auto scale = random_values<float>(groups, 15, 0.1f);
            const auto shift = random_values<float>(groups, 16, 0.5f);
            const auto x = random_values<float>(static_cast<size_t>(M * K), 17);
            const auto bias = random_values<float>(static_cast<size_t>(N), 18);
            const float* b = with_bias ? bias.data() : nullptr;
            std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
            linear_w2_tiled_ref(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, 0, N}, want.data());
            const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
            k.linear_w2_tiled(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, 0, mid}, got.data());
            k.linear_w2_tiled(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, mid, N}, got.data());
            expect_close(got, want, "w2 tiled");
          }
}

// The bf16-activation tiled kernel (4 or 2 bits) on one shape against the float reference, its
// rows in two calls (two threads' ranges). Each width has its own seeds.
void check_tiled_bf16x(const LinearKernels& k, int bits, int64_t M, int64_t K, int64_t N, int64_t gs, bool with_bias) {
  const bool w4 = bits == 4;
  const uint32_t seed = w4 ? 5 : 25;
  const auto codes = random_codes(static_cast<size_t>(N * K), bits, static_cast<uint32_t>(K * (w4 ? 3 : 5) + N));
  std::vector<uint8_t> tiled(static_cast<size_t>(N * K * bits / 8));
  (w4 ? tile_w4_ref : tile_w2_ref)(codes.data(), K, 0, N, tiled.data());
  const size_t groups = static_cast<size_t>(N * K / gs);
  const auto scale = random_values<float>(groups, seed, 0.1f);
  const auto shift = random_values<float>(groups, seed + 1, 0.5f);
  const auto xb = random_values<bf16>(static_cast<size_t>(M * K), seed + 2);
  const std::vector<float> x = as_floats(xb);
  const auto bias = random_values<float>(static_cast<size_t>(N), seed + 3);
  const float* b = with_bias ? bias.data() : nullptr;
  std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
  (w4 ? linear_w4_tiled_ref : linear_w2_tiled_ref)(x.data(), tiled.data(), gs, scale.data(), shift.data(), b,
                                                    {M, K, N, 0, N}, want.data());
  const auto kernel = w4 ? k.linear_w4_tiled_bf16x : k.linear_w2_tiled_bf16x;
  const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
  kernel(xb.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, 0, mid}, got.data());
  kernel(xb.data(), tiled.data(), gs, scale.data(), shift.data(), b, {M, K, N, mid, N}, got.data());
  // Prefill batches take the GEMM path, whose weights are rounded to bf16: close to the float
  // reference, and as close as float summation allows to the same rounding. The bf16 batch-1
  // path sums x·(128 + c) and takes 128·s·Σx back out: with 2-bit codes the result is small next
  // to those terms, so float rounding shows more than for W4.
  const std::string label = std::string(w4 ? "w4" : "w2") + " tiled, bf16 activations";
  expect_close(got, want, label.c_str(), M > 8 ? 1e-2f : (w4 ? 2e-5f : 1e-4f));
  if (M > 8)
    expect_close(got, bf16_weight_linear_ref(x, codes, gs, scale, shift, b, {M, K, N, 0, N}),
                 (label + " and weights").c_str());
}

TEST_P(LinearPerIsa, W4TiledWithBf16ActivationsMatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  if (k.linear_w4_tiled_bf16x == nullptr) GTEST_SKIP() << "no bf16-activation kernel on this ISA";
  // K = 512 with groups of 256: two 128-code chunks per group on the batch-1 path; K = 1088:
  // several K blocks of the GEMM.
  // K = 1152 with groups of 96: groups across the GEMM's K blocks of 1024. K = 576: SmolLM2's
  // width (4.5 loads a row, 18 groups of 32: a masked last step of the group correction).
  for (int64_t M : {1, 2, 3, 5, 8, 9, 17, 40})
    for (int64_t K : {32, 64, 256, 512, 576, 1088, 1152})
      for (int64_t N : {1, 7, 16, 53})
        for (int64_t gs : {32, 64, 96, 128, 256})
          for (bool with_bias : {false, true}) {
            if (K % gs != 0 || (K == 512) != (gs == 256) || (K >= 1088 && gs > 96)) continue;
            check_tiled_bf16x(k, 4, M, K, N, gs, with_bias);
          }
}

// Batch 1 with groups of 32 on a layer whose scales and shifts outgrow L2 (2 x 1100 rows of 128
// groups: 1.1 MB of float parameters): the GEMV that prefetches them with the codes.
TEST_P(LinearPerIsa, W4TiledBf16GemvWithParametersFromMemoryMatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  if (k.linear_w4_tiled_bf16x == nullptr) GTEST_SKIP() << "no bf16-activation kernel on this ISA";
  check_tiled_bf16x(k, 4, 1, 4096, 2200, 32, true);
}

// Batch 1 with a bf16 model's scales and shifts read in place: the same arithmetic as the float-
// parameter kernel on those values converted (bit for bit), and close to the scalar reference.
// K = 576: SmolLM2's width; 4096 with groups of 128: a Llama's; N = 2200 at K = 4096, groups of
// 32: more parameter rows than L2 holds; N = 1, 7, 53: remainder rows after blocks of four. A
// row's last load of 128 codes: 32 (K = 32, 160), 64 (64, 576, 960: the 256-bit half chunk) or
// 96 codes (224).
TEST_P(LinearPerIsa, W4GemvWithBf16ParametersMatchesFloatParameters) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  if (k.linear_w4_gemv_bf16_params == nullptr) GTEST_SKIP() << "no bf16-parameter GEMV on this ISA";
  for (const auto& [K, N, gs] : std::vector<std::array<int64_t, 3>>{
           {32, 1, 32}, {64, 7, 32}, {160, 6, 32}, {224, 9, 32}, {576, 53, 32}, {576, 16, 96}, {960, 11, 64},
           {1152, 7, 64}, {4096, 53, 128}, {4096, 2200, 32}})
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE("K=" + std::to_string(K) + " N=" + std::to_string(N) + " group=" + std::to_string(gs));
      const auto [codes, tiled] = random_tiled_w4(N, K, static_cast<uint32_t>(K + N));
      const size_t groups = static_cast<size_t>(N * K / gs);
      const auto scale_b = random_values<bf16>(groups, 15, 0.1f);
      const auto shift_b = random_values<bf16>(groups, 16, 0.5f);
      const std::vector<float> scale = as_floats(scale_b), shift = as_floats(shift_b);
      const auto xb = random_values<bf16>(static_cast<size_t>(K), 17);
      const std::vector<float> x = as_floats(xb);
      const auto bias = random_values<float>(static_cast<size_t>(N), 18);
      const float* b = with_bias ? bias.data() : nullptr;
      std::vector<float> want(static_cast<size_t>(N)), same(want.size()), got(want.size());
      linear_w4_tiled_ref(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {1, K, N, 0, N}, want.data());
      const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
      for (const auto& [n0, n1] : {std::pair{int64_t{0}, mid}, std::pair{mid, N}}) {
        k.linear_w4_gemv_bf16_params(xb.data(), tiled.data(), gs, scale_b.data(), shift_b.data(), b,
                                     {1, K, N, n0, n1}, got.data());
        // The float-parameter kernel of the same activations: bf16 x where the ISA has one,
        // else the float-x kernel (on bf16 x converted exactly).
        if (k.linear_w4_tiled_bf16x != nullptr)
          k.linear_w4_tiled_bf16x(xb.data(), tiled.data(), gs, scale.data(), shift.data(), b, {1, K, N, n0, n1},
                                  same.data());
        else
          k.linear_w4_tiled(x.data(), tiled.data(), gs, scale.data(), shift.data(), b, {1, K, N, n0, n1},
                            same.data());
      }
      expect_close(got, want, "w4 GEMV, bf16 parameters", 2e-5f);
      EXPECT_EQ(got, same) << "the float-parameter kernel on the same values differs";
    }
}

// W4A8 at batch 1 reading a bf16 model's scales and shifts in place: bit for bit the float-
// parameter W4A8 kernel on the same (converted) values, and the reference within rounding. The
// row ranges start mid-layer (a thread's share) and leave odd rows past the kernel's row blocks.
TEST_P(LinearPerIsa, W4A8GemvWithBf16ParametersMatchesFloatParameters) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  if (k.linear_w4a8_gemv_bf16_params == nullptr) GTEST_SKIP() << "no bf16-parameter W4A8 GEMV on this ISA";
  for (const auto& [K, N, gs] : std::vector<std::array<int64_t, 3>>{
           {32, 1, 32}, {64, 7, 32}, {96, 5, 96}, {160, 6, 32}, {576, 53, 32}, {576, 16, 96}, {1152, 7, 64},
           {4096, 53, 128}, {4096, 2200, 32}})
    for (bool with_bias : {false, true}) {
      SCOPED_TRACE("K=" + std::to_string(K) + " N=" + std::to_string(N) + " group=" + std::to_string(gs));
      const auto [codes, tiled] = random_tiled_w4(N, K, static_cast<uint32_t>(K + N));
      const size_t groups = static_cast<size_t>(N * K / gs);
      const auto scale_b = random_values<bf16>(groups, 25, 0.1f);
      const auto shift_b = random_values<bf16>(groups, 26, 0.5f);
      const std::vector<float> scale = as_floats(scale_b), shift = as_floats(shift_b);
      std::mt19937 gen(static_cast<uint32_t>(K * 3 + N));
      std::vector<int8_t> x(static_cast<size_t>(K));
      for (auto& v : x) v = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(gen));
      const float x_scale = 0.013f;
      const auto bias = random_values<float>(static_cast<size_t>(N), 28);
      const float* b = with_bias ? bias.data() : nullptr;
      std::vector<float> want(static_cast<size_t>(N)), same(want.size()), got(want.size());
      linear_w4a8_tiled_ref(x.data(), &x_scale, 0, tiled.data(), gs, scale.data(), shift.data(), b, {1, K, N, 0, N},
                            want.data());
      const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
      for (const auto& [n0, n1] : {std::pair{int64_t{0}, mid}, std::pair{mid, N}}) {
        k.linear_w4a8_gemv_bf16_params(x.data(), &x_scale, 0, tiled.data(), gs, scale_b.data(), shift_b.data(), b,
                                       {1, K, N, n0, n1}, got.data());
        k.linear_w4a8_tiled(x.data(), &x_scale, 0, tiled.data(), gs, scale.data(), shift.data(), b, {1, K, N, n0, n1},
                            same.data());
      }
      expect_close(got, want, "w4a8 GEMV, bf16 parameters", 2e-5f);
      EXPECT_EQ(got, same) << "the float-parameter kernel on the same values differs";
    }
}

TEST_P(LinearPerIsa, W2TiledWithBf16ActivationsMatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  if (k.linear_w2_tiled_bf16x == nullptr) GTEST_SKIP() << "no bf16-activation kernel on this ISA";
  // K = 256/512 with groups of 128/256: the bf16 batch-1 path (groups of 128 split a 256-code
  // chunk); K = 384 (K % 256 != 0), groups of 64 and batches of 2-8 take the float kernels, 9 rows
  // the bf16 GEMM.
  for (int64_t M : {1, 2, 3, 4, 9})
    for (int64_t K : {64, 256, 384, 512})
      for (int64_t N : {1, 7, 16, 53})
        for (int64_t gs : {64, 128, 256})
          for (bool with_bias : {false, true}) {
            if (K % gs != 0) continue;
            check_tiled_bf16x(k, 2, M, K, N, gs, with_bias);
          }
}

TEST_P(LinearPerIsa, W8WithBf16ActivationsMatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  if (k.linear_w8_bf16x == nullptr) GTEST_SKIP() << "no bf16-activation kernel on this ISA";
  // M = 2-8: the vdpbf16ps GEMV; 9, 17, 40: the bf16 GEMM (K = 1056: two K blocks; N = 53: a
  // full panel of 48 channels and a partial one).
  for (int64_t M : {2, 4, 5, 8, 9, 17, 40})
    for (int64_t K : {32, 96, 256, 1056})
      for (int64_t N : {1, 7, 16, 53})
        for (bool with_bias : {false, true}) {
          const auto xb = random_values<bf16>(static_cast<size_t>(M * K), 21);
          const std::vector<float> x = as_floats(xb);
          std::vector<int8_t> w(static_cast<size_t>(N * K));
          std::mt19937 gen(22);
          for (auto& v : w) v = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(gen));
          const auto scale = random_values<float>(static_cast<size_t>(N), 23, 0.01f);
          const auto bias = random_values<float>(static_cast<size_t>(N), 24);
          const float* b = with_bias ? bias.data() : nullptr;
          std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
          linear_int8_ref<float>(x.data(), w.data(), scale.data(), 1, b, {M, K, N, 0, N}, want.data());
          const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
          k.linear_w8_bf16x(xb.data(), w.data(), scale.data(), 1, b, {M, K, N, 0, mid}, got.data());
          k.linear_w8_bf16x(xb.data(), w.data(), scale.data(), 1, b, {M, K, N, mid, N}, got.data());
          expect_close(got, want, "w8, bf16 activations");  // int8 and bf16 products are exact
          // One scale for the whole tensor (stride 0).
          linear_int8_ref<float>(x.data(), w.data(), scale.data(), 0, b, {M, K, N, 0, N}, want.data());
          k.linear_w8_bf16x(xb.data(), w.data(), scale.data(), 0, b, {M, K, N, 0, N}, got.data());
          expect_close(got, want, "w8 per-tensor scale, bf16 activations");
        }
}

// The batch kernels fold powers of two into x (2/4-bit slot decoding, float8 bit patterns),
// scaled per row to the row's magnitude: activations far from 1 must come out as accurately
// as the reference computes them (the tolerance here has no absolute floor).
TEST_P(LinearPerIsa, ActivationsOfAnyMagnitude) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  const int64_t K = 256, N = 7;
  auto expect_relative = [](const std::vector<float>& got, const std::vector<float>& want, const std::string& what) {
    float scale = 0.0f;
    for (float w : want) scale = std::max(scale, std::fabs(w));
    ASSERT_GT(scale, 0.0f) << what;
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 2e-5f * scale) << what << " at " << i;
  };
  const auto codes4 = random_codes(static_cast<size_t>(N * K), 4, 61);
  const auto codes2 = random_codes(static_cast<size_t>(N * K), 2, 62);
  std::vector<uint8_t> tiled4(static_cast<size_t>(N * K / 2)), tiled2(static_cast<size_t>(N * K / 4));
  tile_w4_ref(codes4.data(), K, 0, N, tiled4.data());
  tile_w2_ref(codes2.data(), K, 0, N, tiled2.data());
  const int64_t gs = 64, groups = N * K / gs;
  const auto scale = random_values<float>(static_cast<size_t>(groups), 63, 0.1f);
  const auto shift = random_values<float>(static_cast<size_t>(groups), 64, 0.5f);
  std::vector<uint8_t> fp8(static_cast<size_t>(N * K));
  std::mt19937 gen(65);
  // Finite e4m3fn codes (no S.1111.111), subnormals included.
  for (auto& v : fp8) v = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(gen) & 0xF7);
  const auto wscale = random_values<float>(static_cast<size_t>(N), 66, 0.01f);
  for (float magnitude : {1e-30f, 1e-12f, 1e12f, 1e30f})
    for (int64_t M : {1, 3, 9}) {
      auto x = random_values<float>(static_cast<size_t>(M * K), 67);
      for (float& v : x) v *= magnitude;
      const LinearShape all{M, K, N, 0, N};
      char what_c[64];
      std::snprintf(what_c, sizeof(what_c), "magnitude %g, M=%lld", magnitude, static_cast<long long>(M));
      const std::string what = what_c;
      std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
      linear_w4_tiled_ref(x.data(), tiled4.data(), gs, scale.data(), shift.data(), nullptr, all, want.data());
      k.linear_w4_tiled(x.data(), tiled4.data(), gs, scale.data(), shift.data(), nullptr, all, got.data());
      expect_relative(got, want, "w4, " + what);
      linear_w2_tiled_ref(x.data(), tiled2.data(), gs, scale.data(), shift.data(), nullptr, all, want.data());
      k.linear_w2_tiled(x.data(), tiled2.data(), gs, scale.data(), shift.data(), nullptr, all, got.data());
      expect_relative(got, want, "w2, " + what);
      linear_fp8_ref<float>(x.data(), fp8.data(), Fp8Format::e4m3fn, wscale.data(), 1, nullptr, all, want.data());
      k.linear_fp8(x.data(), fp8.data(), Fp8Format::e4m3fn, wscale.data(), 1, nullptr, all, got.data());
      expect_relative(got, want, "fp8, " + what);
    }
}

// W8A8: exact int32 sums and a shared epilogue, so every ISA matches the reference bit for bit.
TEST_P(LinearPerIsa, W8A8MatchesReferenceExactly) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  std::mt19937 gen(41);
  auto random_int8 = [&](size_t n) {
    std::vector<int8_t> v(n);
    for (auto& b : v) b = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(gen));
    return v;
  };
  // M = 17 and 30 take the packed VNNI path (full 6-row tiles and a tail); N = 40 spans two
  // 32-channel blocks.
  for (int64_t M : {1, 3, 4, 8, 17, 30})
    for (int64_t K : {1, 33, 64, 257})
      for (int64_t N : {1, 7, 16, 40})
        for (int64_t x_scale_stride : {0, 1}) {
          auto x = random_int8(static_cast<size_t>(M * K));
          auto w = random_int8(static_cast<size_t>(N * K));
          x[0] = -128;  // extremes: the u8 offset of VNNI must not overflow
          w[0] = -128;
          const auto xs = random_values<float>(static_cast<size_t>(M), 42, 0.01f);
          const auto ws = random_values<float>(static_cast<size_t>(N), 43, 0.01f);
          const auto bias = random_values<float>(static_cast<size_t>(N), 44);
          std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
          linear_w8a8_ref(x.data(), xs.data(), x_scale_stride, w.data(), ws.data(), 1, bias.data(), {M, K, N, 0, N},
                          want.data());
          const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
          k.linear_w8a8(x.data(), xs.data(), x_scale_stride, w.data(), ws.data(), 1, bias.data(), {M, K, N, 0, mid},
                        got.data());
          k.linear_w8a8(x.data(), xs.data(), x_scale_stride, w.data(), ws.data(), 1, bias.data(), {M, K, N, mid, N},
                        got.data());
          EXPECT_EQ(got, want) << "M=" << M << " K=" << K << " N=" << N;
        }
}

// W8A8 on the packed layout: every ISA matches the reference on the canonical weights bit for
// bit, whatever split of N the threads use (block-aligned or not).
TEST_P(LinearPerIsa, W8A8PackedMatchesReferenceExactly) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  std::mt19937 gen(51);
  auto random_int8 = [&](size_t n) {
    std::vector<int8_t> v(n);
    for (auto& b : v) b = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(gen));
    return v;
  };
  for (int64_t M : {1, 3, 17, 130})
    for (int64_t K : {1, 33, 257})
      for (int64_t N : {1, 7, 40, 130})
        for (int64_t x_scale_stride : {0, 1}) {
          auto x = random_int8(static_cast<size_t>(M * K));
          auto w = random_int8(static_cast<size_t>(N * K));
          x[0] = -128;
          w[0] = -128;
          w[w.size() - 1] = 127;
          const auto xs = random_values<float>(static_cast<size_t>(M), 52, 0.01f);
          const auto ws = random_values<float>(static_cast<size_t>(N), 53, 0.01f);
          const auto bias = random_values<float>(static_cast<size_t>(N), 54);
          std::vector<uint8_t> packed(static_cast<size_t>(w8a8_block_count(N) * w8a8_block_bytes(K)), 0xAB);
          pack_w8a8_ref(w.data(), N, K, 0, w8a8_block_count(N), packed.data());
          std::vector<float> want(static_cast<size_t>(M * N)), got(want.size(), NAN), got_nb(want.size(), NAN);
          linear_w8a8_ref(x.data(), xs.data(), x_scale_stride, w.data(), ws.data(), 1, bias.data(), {M, K, N, 0, N},
                          want.data());
          const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
          k.linear_w8a8_packed(x.data(), xs.data(), x_scale_stride, packed.data(), ws.data(), 1, bias.data(),
                               {M, K, N, 0, mid}, got.data());
          k.linear_w8a8_packed(x.data(), xs.data(), x_scale_stride, packed.data(), ws.data(), 1, bias.data(),
                               {M, K, N, mid, N}, got.data());
          EXPECT_EQ(got, want) << "M=" << M << " K=" << K << " N=" << N;
          // No bias, per-tensor weight scale.
          linear_w8a8_ref(x.data(), xs.data(), x_scale_stride, w.data(), ws.data(), 0, nullptr, {M, K, N, 0, N},
                          want.data());
          k.linear_w8a8_packed(x.data(), xs.data(), x_scale_stride, packed.data(), ws.data(), 0, nullptr,
                               {M, K, N, 0, N}, got_nb.data());
          EXPECT_EQ(got_nb, want) << "no bias, M=" << M << " K=" << K << " N=" << N;
        }
}

// float8 weights over every code but the NaNs, on both the float path and (where present) the
// bf16 GEMM path: products are exact in both.
// W4A8 against an independent double-precision evaluation of the formula (the reference is
// checked the same way), within float rounding of the magnitudes summed (|x_k · code_k · scale|
// and |x_k · shift| over k: cancellation, between the scale and shift terms or between lanes of
// partial sums, makes a tolerance relative to the output alone meaningless).
TEST_P(LinearPerIsa, W4A8MatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  // K = 96 and 576: a short last chunk (64 or 128 codes a register); gs = K: one group per
  // output row; 96: groups that neither fill nor divide a chunk. M: every tile remainder, and
  // prefill sizes (16-19: each remainder of the VNNI prefill tile of 4 rows; 32). extreme:
  // codes 0 / 15 and x -128 / 127 only (int16 pair sums at their limits).
  const std::vector<int64_t> batches{1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17, 18, 19, 32};
  int cases = 0;
  for (int64_t M : batches)
    for (int64_t K : {32, 64, 96, 256, 576, 1088})
      for (int64_t N : {1, 7, 30, 150})  // 150: several blocks of 64 channels on the VNNI prefill path
        for (int64_t listed : {32, 64, 96, 128, 256, 0})  // 0: one group per output row (gs = K)
          for (int variant = 0; variant < 4; ++variant) {  // bit 0: zero-point shift; bit 1: extreme values
            if (listed == 0 && K <= 256) continue;  // K is listed already
            const int64_t gs = listed == 0 ? K : listed;
            if (K % gs != 0) continue;
            if (M > 9 && (N == 7 || variant == 1)) continue;  // keep prefill sizes cheap
            if (N == 150 && (M < 16 || variant != 0)) continue;
            const bool zero_point = variant & 1, extreme = variant & 2;
            const uint32_t seed = static_cast<uint32_t>(M * 1000003 + K * 101 + N * 7 + gs + variant);
            std::mt19937 gen(seed);
            std::vector<uint8_t> codes(static_cast<size_t>(N * K));
            std::vector<int8_t> x(static_cast<size_t>(M * K));
            for (auto& c : codes)
              c = static_cast<uint8_t>(extreme ? 15 * std::uniform_int_distribution<int>(0, 1)(gen)
                                               : std::uniform_int_distribution<int>(0, 15)(gen));
            for (auto& v : x)
              v = static_cast<int8_t>(extreme ? (std::uniform_int_distribution<int>(0, 1)(gen) ? 127 : -128)
                                              : std::uniform_int_distribution<int>(-128, 127)(gen));
            std::vector<uint8_t> tiled(static_cast<size_t>(N * K / 2));
            tile_w4_ref(codes.data(), K, 0, N, tiled.data());
            const int64_t groups = K / gs;
            const auto scale = random_values<float>(static_cast<size_t>(N * groups), seed + 1, 0.1f);
            std::vector<float> shift = random_values<float>(static_cast<size_t>(N * groups), seed + 2, 0.5f);
            if (zero_point)  // shift = zp · scale, as the op layer turns a uint8 zero-point into a float shift
              for (size_t i = 0; i < shift.size(); ++i)
                shift[i] = static_cast<float>(std::uniform_int_distribution<int>(0, 15)(gen)) * scale[i];
            const auto x_scale = random_values<float>(static_cast<size_t>(M), seed + 3, 0.01f);
            const auto bias = random_values<float>(static_cast<size_t>(N), seed + 4);
            const int64_t xs_stride = (M + K) % 2;  // per token or per tensor
            const float* b = (N + M) % 2 ? bias.data() : nullptr;
            std::vector<double> exact(static_cast<size_t>(M * N)), mag(exact.size());
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < N; ++n) {
                double acc = 0.0, abs_acc = 0.0;
                for (int64_t g = 0; g < groups; ++g) {
                  int64_t dot = 0, xsum = 0, abs_dot = 0, abs_xsum = 0;  // the kernels may split a group's sums
                  for (int64_t kk = g * gs; kk < (g + 1) * gs; ++kk) {
                    const int64_t xk = x[m * K + kk];
                    dot += xk * codes[n * K + kk];
                    xsum += xk;
                    abs_dot += std::abs(xk) * codes[n * K + kk];
                    abs_xsum += std::abs(xk);
                  }
                  const double sc = scale[n * groups + g], sh = shift[n * groups + g];
                  acc += sc * dot - sh * xsum;
                  abs_acc += std::fabs(sc) * abs_dot + std::fabs(sh) * abs_xsum;
                }
                const double xsc = x_scale[m * xs_stride];
                exact[m * N + n] = xsc * acc + (b ? b[n] : 0.0);
                mag[m * N + n] = std::fabs(xsc) * abs_acc + (b ? std::fabs(b[n]) : 0.0);
              }
            std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
            linear_w4a8_tiled_ref(x.data(), x_scale.data(), xs_stride, tiled.data(), gs, scale.data(), shift.data(), b,
                                  {M, K, N, 0, N}, want.data());
            const int64_t mid = N / 2 + (N > 2 ? 1 : 0);
            k.linear_w4a8_tiled(x.data(), x_scale.data(), xs_stride, tiled.data(), gs, scale.data(), shift.data(), b,
                                {M, K, N, 0, mid}, got.data());
            k.linear_w4a8_tiled(x.data(), x_scale.data(), xs_stride, tiled.data(), gs, scale.data(), shift.data(), b,
                                {M, K, N, mid, N}, got.data());
            for (size_t i = 0; i < got.size(); ++i) {
              const double tol = 1e-5 * mag[i] + 1e-30;
              ASSERT_NEAR(want[i], exact[i], tol) << "reference M=" << M << " K=" << K << " N=" << N << " gs=" << gs
                                                  << " variant=" << variant << " at " << i;
              ASSERT_NEAR(got[i], exact[i], tol) << "kernel M=" << M << " K=" << K << " N=" << N << " gs=" << gs
                                                 << " variant=" << variant << " at " << i;
            }
            ++cases;
          }
  EXPECT_GT(cases, 500);
}

TEST_P(LinearPerIsa, Fp8MatchesReference) {
  const LinearKernels& k = kernel_table(GetParam()).linear;
  for (Fp8Format format : {Fp8Format::e4m3fn, Fp8Format::e4m3fnuz, Fp8Format::e5m2})
    for (int64_t M : {1, 2, 3, 4, 8, 9, 17})
      for (int64_t K : {33, 64, 257, 1100})
        for (int64_t N : {1, 7, 16}) {
          std::vector<uint8_t> w(static_cast<size_t>(N * K));
          std::mt19937 gen(31);
          for (auto& v : w) {
            do v = static_cast<uint8_t>(std::uniform_int_distribution<int>(0, 255)(gen));
            while (std::isnan(fp8_to_float(v, format)) || std::isinf(fp8_to_float(v, format)));
          }
          const auto scale = random_values<float>(static_cast<size_t>(N), 32, 0.01f);
          const auto bias = random_values<float>(static_cast<size_t>(N), 33);
          const auto xb = random_values<bf16>(static_cast<size_t>(M * K), 34);
          const std::vector<float> x = as_floats(xb);
          std::vector<float> want(static_cast<size_t>(M * N)), got(want.size());
          const LinearShape all{M, K, N, 0, N};
          linear_fp8_ref<float>(x.data(), w.data(), format, scale.data(), 1, bias.data(), all, want.data());
          k.linear_fp8(x.data(), w.data(), format, scale.data(), 1, bias.data(), all, got.data());
          expect_close(got, want, "fp8");
          if (k.linear_fp8_bf16x != nullptr && M >= 2 && K % 32 == 0) {
            k.linear_fp8_bf16x(xb.data(), w.data(), format, scale.data(), 1, bias.data(), all, got.data());
            expect_close(got, want, "fp8, bf16 activations");
          }
        }
}

INSTANTIATE_TEST_SUITE_P(Isas, LinearPerIsa, ::testing::ValuesIn(supported_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(W8A8PackedLayout, RoundTripsExactlyAndCarriesRowSums) {
  for (int64_t K : {1, 3, 4, 33, 257})
    for (int64_t N : {1, 7, 40, 64, 130}) {
      std::mt19937 gen(static_cast<uint32_t>(K * 1000 + N));
      std::vector<int8_t> w(static_cast<size_t>(N * K)), back(w.size(), 0);
      for (auto& v : w) v = static_cast<int8_t>(std::uniform_int_distribution<int>(-128, 127)(gen));
      const int64_t blocks = w8a8_block_count(N), bytes = w8a8_block_bytes(K);
      std::vector<uint8_t> packed(static_cast<size_t>(blocks * bytes), 0xCD);
      // Packing block by block (as threads do) is the same as packing at once.
      for (int64_t b = 0; b < blocks; ++b) pack_w8a8_ref(w.data(), N, K, b, b + 1, packed.data());
      unpack_w8a8_ref(packed.data(), N, K, 0, blocks, back.data());
      ASSERT_EQ(back, w) << "K=" << K << " N=" << N;
      // Layout: channel 5 (if present), k = 6 sits in quad 1, lane 5, byte 2.
      if (N > 5 && K > 6) {
        EXPECT_EQ(static_cast<int8_t>(packed[(1 * kW8A8BlockN + 5) * 4 + 2]), w[5 * K + 6]);
      }
      for (int64_t n = 0; n < blocks * kW8A8BlockN; ++n) {
        int32_t want = 0;
        if (n < N)
          for (int64_t k = 0; k < K; ++k) want += 128 * w[n * K + k];
        int32_t got;
        std::memcpy(&got, packed.data() + (n / kW8A8BlockN) * bytes + w8a8_quads(K) * kW8A8BlockN * 4 + (n % kW8A8BlockN) * 4,
                    sizeof(got));
        EXPECT_EQ(got, want) << "n=" << n;
      }
      // Padding (channels past N, k past K) is zero.
      if (N % kW8A8BlockN != 0) {
        EXPECT_EQ(packed[static_cast<size_t>((blocks - 1) * bytes + (kW8A8BlockN - 1) * 4)], 0);
      }
    }
}

TEST(TiledLayout, RoundTripsExactlyAndPutsRowsTogether) {
  const int64_t N = 3, K = 64;
  const auto codes = random_codes(N * K, 4, 9);
  std::vector<uint8_t> tiled(N * K / 2), back(N * K);
  tile_w4_ref(codes.data(), K, 0, N, tiled.data());
  untile_w4_ref(tiled.data(), K, 0, N, back.data());
  EXPECT_EQ(back, codes);
  // Row 1, block 1: byte 3 holds codes k = 32 + 3 (low) and k = 32 + 19 (high).
  EXPECT_EQ(tiled[1 * 32 + 16 + 3], codes[1 * K + 35] | (codes[1 * K + 51] << 4));
}

TEST(TiledLayout, TwoBitRoundTripsAndAgreesWithTheCanonicalLayout) {
  const int64_t M = 3, N = 5, K = 128, gs = 64, groups = N * K / gs;
  const auto codes = random_codes(N * K, 2, 19);
  std::vector<uint8_t> tiled(N * K / 4), back(N * K), packed(packed_rows(groups, 2) * gs);
  tile_w2_ref(codes.data(), K, 0, N, tiled.data());
  untile_w2_ref(tiled.data(), K, 0, N, back.data());
  EXPECT_EQ(back, codes);
  // Row 2, block 1: byte 5 holds k = 64 + 5, + 21, + 37, + 53 at bits 0, 2, 4, 6.
  EXPECT_EQ(tiled[2 * 32 + 16 + 5], codes[2 * K + 69] | (codes[2 * K + 85] << 2) | (codes[2 * K + 101] << 4) |
                                        (codes[2 * K + 117] << 6));
  ASSERT_TRUE(pack_ref(codes.data(), groups, gs, 2, 0, packed_rows(groups, 2), packed.data()));
  const auto scale = random_values<float>(groups, 20, 0.1f), shift = random_values<float>(groups, 21, 0.5f);
  const auto x = random_values<float>(M * K, 22);
  std::vector<float> canonical(M * N), fast(M * N);
  linear_qbits_ref<float>(x.data(), packed.data(), 2, gs, scale.data(), shift.data(), nullptr, {M, K, N, 0, N},
                          canonical.data());
  linear_w2_tiled_ref(x.data(), tiled.data(), gs, scale.data(), shift.data(), nullptr, {M, K, N, 0, N}, fast.data());
  EXPECT_EQ(fast, canonical);
}

TEST(TiledLayout, AgreesWithTheCanonicalLayout) {
  // The same weights through the canonical packed path and the tiled path.
  const int64_t M = 2, N = 5, K = 128, gs = 64, groups = N * K / gs;
  const auto codes = random_codes(N * K, 4, 10);
  std::vector<uint8_t> packed(packed_rows(groups, 4) * gs), tiled(N * K / 2);
  ASSERT_TRUE(pack_ref(codes.data(), groups, gs, 4, 0, packed_rows(groups, 4), packed.data()));
  tile_w4_ref(codes.data(), K, 0, N, tiled.data());
  const auto scale = random_values<float>(groups, 11, 0.1f), shift = random_values<float>(groups, 12, 0.5f);
  const auto x = random_values<float>(M * K, 13);
  std::vector<float> canonical(M * N), fast(M * N);
  linear_qbits_ref<float>(x.data(), packed.data(), 4, gs, scale.data(), shift.data(), nullptr, {M, K, N, 0, N},
                          canonical.data());
  linear_w4_tiled_ref(x.data(), tiled.data(), gs, scale.data(), shift.data(), nullptr, {M, K, N, 0, N}, fast.data());
  EXPECT_EQ(fast, canonical);  // same per-element arithmetic, same order
}

}  // namespace
}  // namespace quanto::kernels
