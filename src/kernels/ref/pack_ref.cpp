#include "kernels/ref/pack_ref.h"

namespace quanto::kernels {

bool pack_ref(const uint8_t* codes, int64_t rows, int64_t cols, int bits, int64_t p_begin,
              int64_t p_end, uint8_t* packed) {
  const int k = 8 / bits;
  const int64_t R = packed_rows(rows, bits);
  const unsigned limit = 1u << bits;
  bool fits = true;
  for (int64_t p = p_begin; p < p_end; ++p) {
    for (int64_t c = 0; c < cols; ++c) {
      unsigned byte = 0;
      for (int i = 0; i < k; ++i) {
        const int64_t r = i * R + p;
        if (r >= rows) break;
        const unsigned code = codes[r * cols + c];
        fits &= code < limit;
        byte |= code << (bits * i);
      }
      packed[p * cols + c] = static_cast<uint8_t>(byte);
    }
  }
  return fits;
}

void unpack_ref(const uint8_t* packed, int64_t rows, int64_t cols, int bits, int64_t p_begin,
                int64_t p_end, uint8_t* codes) {
  const int k = 8 / bits;
  const int64_t R = packed_rows(rows, bits);
  const unsigned mask = (1u << bits) - 1u;
  for (int i = 0; i < k; ++i) {
    for (int64_t p = p_begin; p < p_end; ++p) {
      const int64_t r = i * R + p;
      if (r >= rows) break;
      for (int64_t c = 0; c < cols; ++c)
        codes[r * cols + c] = static_cast<uint8_t>((packed[p * cols + c] >> (bits * i)) & mask);
    }
  }
}

}  // namespace quanto::kernels
