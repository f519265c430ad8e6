// The number-format conversions: exhaustive where the format is small.
#include <gtest/gtest.h>

#include "kernels/numeric.h"

namespace quanto::kernels {
namespace {

TEST(Bf16, EveryValueRoundTrips) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const bf16 h{static_cast<uint16_t>(b)};
    const float f = to_float(h);
    if (std::isnan(f)) continue;
    EXPECT_EQ(bf16_from_float(f).bits, h.bits) << std::hex << b;
  }
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(to_float(bf16_from_float(1.0f + 0x1p-8f)), 1.0f);               // tie -> even (down)
  EXPECT_EQ(to_float(bf16_from_float(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);  // tie -> even (up)
  EXPECT_EQ(to_float(bf16_from_float(1.0f + 0x1p-8f + 0x1p-20f)), 1.0f + 0x1p-7f);
  EXPECT_TRUE(std::isnan(to_float(bf16_from_float(std::nanf("")))));
}

TEST(Fp16, EveryValueRoundTrips) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    const fp16 h{static_cast<uint16_t>(b)};
    const float f = to_float(h);
    if (std::isnan(f)) continue;
    EXPECT_EQ(fp16_from_float(f).bits, h.bits) << std::hex << b;
  }
}

TEST(Fp16, RoundsAndSaturatesLikeIeee) {
  EXPECT_EQ(to_float(fp16_from_float(1.0f + 0x1p-11f)), 1.0f);
  EXPECT_EQ(to_float(fp16_from_float(1.0f + 3 * 0x1p-11f)), 1.0f + 0x1p-9f);
  EXPECT_EQ(to_float(fp16_from_float(65519.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(to_float(fp16_from_float(65520.0f))));
  EXPECT_EQ(to_float(fp16_from_float(0x1p-25f)), 0.0f);            // tie with 0 -> 0
  EXPECT_EQ(to_float(fp16_from_float(0x1p-25f + 0x1p-30f)), 0x1p-24f);
  EXPECT_EQ(to_float(fp16_from_float(3 * 0x1p-25f)), 2 * 0x1p-24f);  // subnormal tie -> even
}

struct Fp8Case {
  Fp8Format format;
  float max;
  uint8_t max_code;
};

class Fp8 : public ::testing::TestWithParam<Fp8Case> {};

TEST_P(Fp8, EveryCodeRoundTripsAndMaxIsRight) {
  const auto [format, max, max_code] = GetParam();
  EXPECT_EQ(fp8_to_float(max_code, format), max);
  for (int c = 0; c < 256; ++c) {
    const float f = fp8_to_float(static_cast<uint8_t>(c), format);
    if (std::isnan(f) || std::isinf(f)) continue;
    EXPECT_EQ(fp8_from_float(f, format), (format == Fp8Format::e4m3fnuz && f == 0.0f) ? 0 : c) << c;
  }
}

TEST_P(Fp8, HalfwayBetweenCodesRoundsToEven) {
  const auto [format, max, max_code] = GetParam();
  for (int c = 1; c < max_code; ++c) {
    const float lo = fp8_to_float(static_cast<uint8_t>(c), format);
    const float hi = fp8_to_float(static_cast<uint8_t>(c + 1), format);
    const uint8_t got = fp8_from_float(0.5f * (lo + hi), format);
    EXPECT_EQ(got, (c % 2 == 0) ? c : c + 1) << "between codes " << c << " and " << c + 1;
  }
}

TEST_P(Fp8, NanIsNan) {
  const auto [format, max, max_code] = GetParam();
  EXPECT_TRUE(std::isnan(fp8_to_float(fp8_from_float(std::nanf(""), format), format)));
}

// The SIMD decoders' bit-pattern form: every finite code, subnormals included, is exactly the
// weight times 2^-rebias_exp.
TEST_P(Fp8, BitPatternIsTheValueTimesAPowerOfTwo) {
  const auto [format, max, max_code] = GetParam();
  const Fp8Bits bits = fp8_bits(format);
  for (int c = 0; c < 256; ++c) {
    const float want = fp8_to_float(static_cast<uint8_t>(c), format);
    if (!std::isfinite(want)) continue;
    const float got = std::ldexp(fp8_bits_to_float(static_cast<uint8_t>(c), bits), bits.rebias_exp);
    EXPECT_TRUE(got == want && std::signbit(got) == std::signbit(want))
        << "code " << c << ": " << got << " vs " << want;
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, Fp8,
                         ::testing::Values(Fp8Case{Fp8Format::e4m3fn, 448.0f, 0x7E},
                                           Fp8Case{Fp8Format::e4m3fnuz, 240.0f, 0x7F},
                                           Fp8Case{Fp8Format::e5m2, 57344.0f, 0x7B}));

}  // namespace
}  // namespace quanto::kernels
