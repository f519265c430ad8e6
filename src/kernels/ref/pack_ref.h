// Packing of 2- and 4-bit codes into bytes, in optimum-quanto's layout (docs/format.md).
//
// codes is a row-major [rows, cols] block of uint8 codes < 2^bits. With k = 8 / bits and
// R = ceil(rows / k), packed is [R, cols]: code row i * R + p lives in packed row p, bits
// [bits * i, bits * (i + 1)). Work is split over packed rows [p_begin, p_end).
#pragma once

#include <cstdint>

namespace quanto::kernels {

inline int64_t packed_rows(int64_t rows, int bits) {
  const int64_t k = 8 / bits;
  return (rows + k - 1) / k;
}

// Returns false (and leaves the output unspecified) if a code does not fit in `bits`.
bool pack_ref(const uint8_t* codes, int64_t rows, int64_t cols, int bits, int64_t p_begin,
              int64_t p_end, uint8_t* packed);
// Writes the code rows that live in packed rows [p_begin, p_end).
void unpack_ref(const uint8_t* packed, int64_t rows, int64_t cols, int bits, int64_t p_begin,
                int64_t p_end, uint8_t* codes);

}  // namespace quanto::kernels
