// float -> bf16 / fp16 runs: every ISA build bit for bit against the scalar reference, on runs of
// every remainder length, with random values and the edge cases of each format (ties to even,
// carries into the exponent, overflow to infinity, fp16 subnormals, NaN of either sign and any
// payload).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "kernels/ref/convert_ref.h"
#include "test_util.h"

namespace quanto::kernels {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Random values of several magnitudes, then the edge cases, spread through the run.
std::vector<float> inputs(int64_t n, uint32_t seed) {
  std::vector<float> v = testing::random_values<float>(static_cast<size_t>(n), seed, 100.0f);
  const uint32_t edges[] = {
      0x3F808000u, 0x3F818000u, 0xBF808000u,  // bf16 ties: to even, up, negative
      0x3F80FFFFu, 0x7F7FFFFFu, 0xFF7FFFFFu,  // bf16 carries into the exponent / to infinity
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0x7FFFFFFFu, 0xFFA00001u,  // NaNs: signs, payloads, signalling
      0x7F800000u, 0xFF800000u, 0x00000000u, 0x80000000u, 0x00000001u,  // infinities, zeros, float subnormal
      0x477FEFFFu, 0x477FF000u, 0xC77FF000u,  // fp16: just below / at the rounding to infinity
      0x33000000u, 0x33400000u, 0x33C00000u, 0xB3C00000u,  // fp16 subnormal ties: 2^-25, 1.5·2^-25, 3·2^-25
      0x387FC000u, 0x38800000u, 0x3A001000u,  // fp16: rounding up to the smallest normal, it, a mantissa tie
  };
  for (size_t i = 0; i < std::size(edges) && 3 * i < v.size(); ++i) v[3 * i] = from_bits(edges[i]);
  return v;
}

class ConvertPerIsa : public ::testing::TestWithParam<CpuIsa> {};

TEST_P(ConvertPerIsa, MatchesReferenceBitForBit) {
  const ConvertKernels& k = kernel_table(GetParam()).convert;
  for (int64_t n : {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 257}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const std::vector<float> src = inputs(n, static_cast<uint32_t>(n) + 1u);
    // Sentinels past the run: nothing beyond n may be written.
    std::vector<bf16> b(n + 3, bf16{0xABCD}), b_ref(n + 3, bf16{0xABCD});
    std::vector<fp16> h(n + 3, fp16{0xABCD}), h_ref(n + 3, fp16{0xABCD});
    k.to_bf16(src.data(), b.data(), n);
    to_bf16_ref(src.data(), b_ref.data(), n);
    k.to_fp16(src.data(), h.data(), n);
    to_fp16_ref(src.data(), h_ref.data(), n);
    for (int64_t i = 0; i < n + 3; ++i) {
      ASSERT_EQ(b[i].bits, b_ref[i].bits) << "bf16 at " << i << " of " << src[i < n ? i : 0];
      ASSERT_EQ(h[i].bits, h_ref[i].bits) << "fp16 at " << i << " of " << src[i < n ? i : 0];
    }
  }
}

// bf16 -> float: every 16-bit pattern (NaN payloads, subnormals, both zeros), bit for bit, at
// every offset of a vector and with nothing written past the run.
TEST_P(ConvertPerIsa, FromBf16MatchesReferenceBitForBit) {
  const ConvertKernels& k = kernel_table(GetParam()).convert;
  std::vector<bf16> all(65536);
  for (size_t i = 0; i < all.size(); ++i) all[i] = bf16{static_cast<uint16_t>(i)};
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{15}, int64_t{17}, int64_t{65536 - 5}}) {
    SCOPED_TRACE("n = " + std::to_string(n));
    const bf16* src = all.data() + (65536 - n) / 2;
    std::vector<float> got(n + 3, -7.0f), want(n + 3, -7.0f);
    k.from_bf16(src, got.data(), n);
    from_bf16_ref(src, want.data(), n);
    ASSERT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0);
  }
  EXPECT_EQ(to_float(bf16{0x3F80}), 1.0f);  // the reference: the bits shifted up
}

// The reference itself on the edge cases: what c10's conversions give.
TEST(ConvertRef, EdgeCases) {
  const float src[] = {from_bits(0x3F808000u), from_bits(0x3F818000u), from_bits(0x7F7FFFFFu),
                       from_bits(0xFFC00000u), 65520.0f, 65519.0f, from_bits(0x33000000u), from_bits(0x33400000u)};
  bf16 b[8];
  fp16 h[8];
  to_bf16_ref(src, b, 8);
  to_fp16_ref(src, h, 8);
  EXPECT_EQ(b[0].bits, 0x3F80);  // tie to even (down)
  EXPECT_EQ(b[1].bits, 0x3F82);  // tie to even (up)
  EXPECT_EQ(b[2].bits, 0x7F80);  // rounds to infinity
  EXPECT_EQ(b[3].bits, 0x7FC0);  // NaN, canonical
  EXPECT_EQ(h[3].bits, 0xFE00);  // NaN keeps its sign in fp16
  EXPECT_EQ(h[4].bits, 0x7C00);  // 65520 rounds to infinity
  EXPECT_EQ(h[5].bits, 0x7BFF);  // 65519 to 65504
  EXPECT_EQ(h[6].bits, 0x0000);  // 2^-25: a tie, to even (zero)
  EXPECT_EQ(h[7].bits, 0x0001);  // 1.5·2^-25 rounds up to 2^-24
}

INSTANTIATE_TEST_SUITE_P(Isas, ConvertPerIsa, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<CpuIsa>& info) { return std::string(isa_name(info.param)); });

}  // namespace
}  // namespace quanto::kernels
