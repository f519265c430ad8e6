// Packing of 2/4-bit codes: the exact byte layout of docs/format.md, round trips on
// remainder shapes, split ranges, and rejection of codes that do not fit.
#include <gtest/gtest.h>

#include <random>

#include "kernels/ref/pack_ref.h"

namespace quanto::kernels {
namespace {

std::vector<uint8_t> random_codes(int64_t n, int bits, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(0, (1 << bits) - 1);
  std::vector<uint8_t> out(static_cast<size_t>(n));
  for (auto& c : out) c = static_cast<uint8_t>(dist(gen));
  return out;
}

TEST(Pack, LayoutOfFiveRowsOfNibbles) {
  // 5 rows, 4 bits: R = 3; slice 0 = rows 0..2 (low nibble), slice 1 = rows 3..4 (high nibble).
  const uint8_t codes[] = {1, 2, 3, 4, 5};
  uint8_t packed[3];
  ASSERT_TRUE(pack_ref(codes, 5, 1, 4, 0, 3, packed));
  EXPECT_EQ(packed[0], 1 | (4 << 4));
  EXPECT_EQ(packed[1], 2 | (5 << 4));
  EXPECT_EQ(packed[2], 3);
}

TEST(Pack, LayoutOfTwoBitCodes) {
  // 6 rows, 2 bits: R = 2; rows 2i and 2i+1 ... slice i holds rows [2i, 2i + 2).
  const uint8_t codes[] = {0, 1, 2, 3, 1, 2};
  uint8_t packed[2];
  ASSERT_TRUE(pack_ref(codes, 6, 1, 2, 0, 2, packed));
  EXPECT_EQ(packed[0], 0 | (2 << 2) | (1 << 4));
  EXPECT_EQ(packed[1], 1 | (3 << 2) | (2 << 4));
}

TEST(Pack, RoundTripsOnRemainderShapes) {
  for (int bits : {2, 4})
    for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 33})
      for (int64_t cols : {1, 3, 64}) {
        const auto codes = random_codes(rows * cols, bits, static_cast<uint32_t>(rows * 100 + cols + bits));
        const int64_t R = packed_rows(rows, bits);
        std::vector<uint8_t> packed(static_cast<size_t>(R * cols)), split(packed.size()), back(codes.size());
        ASSERT_TRUE(pack_ref(codes.data(), rows, cols, bits, 0, R, packed.data()));
        // Any split of the packed rows gives the same bytes (the op layer threads over them).
        for (int64_t p = 0; p < R; ++p) ASSERT_TRUE(pack_ref(codes.data(), rows, cols, bits, p, p + 1, split.data()));
        EXPECT_EQ(split, packed);
        unpack_ref(packed.data(), rows, cols, bits, 0, R, back.data());
        EXPECT_EQ(back, codes) << "bits=" << bits << " rows=" << rows << " cols=" << cols;
      }
}

TEST(Pack, RejectsCodesThatDoNotFit) {
  const uint8_t codes[] = {3, 16};
  uint8_t packed[1];
  EXPECT_FALSE(pack_ref(codes, 2, 1, 4, 0, 1, packed));
  const uint8_t two_bit[] = {4};
  EXPECT_FALSE(pack_ref(two_bit, 1, 1, 2, 0, 1, packed));
}

}  // namespace
}  // namespace quanto::kernels
