// The tiled 4-bit weight layout the fast CPU kernels read, and its scalar reference matmul.
//
// Canonical (docs/format.md) 4-bit weights pack a code's neighbours along dim 0 of the
// grouped matrix, so one output row's codes are spread over two nibble planes far apart: a
// GEMV would read every byte twice. The tiled layout keeps each output row contiguous:
// row n holds K / 2 bytes, in blocks of 32 codes (16 bytes) where byte i holds code i in its
// low nibble and code i + 16 in its high nibble, so a 16-byte load decodes to 32 weights in
// order. It needs K % 32 == 0. Scales and shifts stay [N, K / group_size] row-major floats.
// Conversion happens once (at freeze or load) and round-trips exactly.
#pragma once

#include <cstdint>

#include "kernels/layout_geometry.h"
#include "kernels/ref/linear_ref.h"

namespace quanto::kernels {

// codes: row-major [N, K] uint8 (< 16) -> tiled [N, K / 2]; rows [n_begin, n_end).
void tile_w4_ref(const uint8_t* codes, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* tiled);
// The inverse.
void untile_w4_ref(const uint8_t* tiled, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* codes);

// y = x @ W^T + bias with w(n, k) = code * scale[n, g] - shift[n, g], g = k / group_size,
// group_size a multiple of 32 dividing K; x and y float, columns [n_begin, n_end) of y.
void linear_w4_tiled_ref(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                         const float* shift, const float* bias, LinearShape s, float* y);

// W4A8: int8 activation codes x [M, K] with a float scale per tensor (x_scale_stride 0, static
// calibration) or per row (1, dynamic per token), times tiled 4-bit weights as in
// linear_w4_tiled_ref. With exact int32 sums per (row of x, group g):
//   dot_g = Σ_{k in g} x_k · code_k,   xsum_g = Σ_{k in g} x_k,
//   y[m, n] = x_scale[m] · Σ_g (scale[n, g] · dot_g − shift[n, g] · xsum_g) + bias[n],
// the sum over groups in float, in group order. The optimised variants compute the same int32
// sums (integer u8 × s8 dot products); only their float summation order differs.
void linear_w4a8_tiled_ref(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                           int64_t group_size, const float* scale, const float* shift, const float* bias,
                           LinearShape s, float* y);

// xsum_g above for every row of x [M, K]: exact int32 sums, as float (what the shift terms
// multiply), xsum[m * groups + g]. The W4A8 kernels take them once per call.
inline void w4a8_x_group_sums(const int8_t* x, int64_t M, int64_t K, int64_t group_size, float* xsum) {
  const int64_t groups = K / group_size;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < groups; ++g) {
      int32_t t = 0;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) t += x[m * K + k];
      xsum[m * groups + g] = static_cast<float>(t);
    }
}

// The tiled 2-bit layout: row n holds K / 4 bytes, in blocks of 64 codes (16 bytes) where byte i
// holds codes i, i + 16, i + 32, i + 48 at bits 0, 2, 4, 6, so a 16-byte load decodes to 64
// weights in order. It needs K % 64 == 0 (group_size a multiple of 64).
void tile_w2_ref(const uint8_t* codes, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* tiled);
void untile_w2_ref(const uint8_t* tiled, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* codes);
void linear_w2_tiled_ref(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                         const float* shift, const float* bias, LinearShape s, float* y);

}  // namespace quanto::kernels
