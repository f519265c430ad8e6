// Weights stored row by row (k along a row) turned into channels-in-lanes vectors at run time,
// over vector traits V (vec_avx2.h, vec_avx512.h): the prefill kernels of int8 activations
// (w4a8_prefill_simd.h, w8a8_prefill_simd.h) broadcast 4 bytes of x and multiply them against
// V::kWidth channels' 4 bytes at once, so each output channel is one int32 lane and no sum
// crosses lanes.
#pragma once

#include <cstdint>
#include <cstring>

namespace quanto::kernels::simd {

// `rows` rows (a multiple of V::kWidth) of `units` dwords each, row j at src + j · row_bytes,
// as lanes: out[((j / W) · units + u) · W + j % W] = dword u of row j (W = V::kWidth). Each
// vector of W channels is contiguous, so a kernel streams it: with all the channels' dwords
// interleaved, a tile's loads were rows · 4 bytes apart and, at K = 1536, more lines than a few
// L1 sets hold. W × W dwords at a time are one transpose (scalar copies cost most of a prefill
// call, gathers more).
template <class V>
void rows_to_lanes(const uint8_t* src, int64_t row_bytes, int64_t rows, int64_t units, uint8_t* out) {
  constexpr int W = V::kWidth;
  const int64_t whole = units - units % W;
  for (int64_t j0 = 0; j0 < rows; j0 += W) {
    uint8_t* vec = out + (j0 / W) * units * W * 4;
    for (int64_t u0 = 0; u0 < whole; u0 += W) {
      typename V::I r[W];
      for (int i = 0; i < W; ++i) r[i] = V::load_u8(src + (j0 + i) * row_bytes + 4 * u0);
      V::transpose_i32(r);
      for (int i = 0; i < W; ++i) V::store_u8_vec(vec + (u0 + i) * W * 4, r[i]);
    }
    for (int64_t u = whole; u < units; ++u)
      for (int i = 0; i < W; ++i) std::memcpy(vec + (u * W + i) * 4, src + (j0 + i) * row_bytes + 4 * u, 4);
  }
}

}  // namespace quanto::kernels::simd
