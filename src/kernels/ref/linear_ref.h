// Scalar reference matmuls: y = x @ W^T (+ bias) for each quantized weight format.
//
// x is row-major [M, K] in T (float, bf16, fp16); y is [M, N] in T, written for output
// columns [n_begin, n_end) only, so the op layer can split N across threads. Scales and
// biases arrive as float (the op layer converts them). A scale array is indexed
// n * scale_stride: stride 1 for one scale per output channel, 0 for one per tensor.
// Accumulation is in float (int32 for W8A8); y is rounded to T once, at the end.
#pragma once

#include <cstdint>

#include "kernels/layout_geometry.h"
#include "kernels/numeric.h"

namespace quanto::kernels {

struct LinearShape {
  int64_t M, K, N;
  int64_t n_begin, n_end;
};

// W8: w int8 [N, K].
template <typename T>
void linear_int8_ref(const T* x, const int8_t* w, const float* w_scale, int64_t scale_stride,
                     const float* bias, LinearShape s, T* y);

// FP8: w float8 codes [N, K].
template <typename T>
void linear_fp8_ref(const T* x, const uint8_t* w, Fp8Format format, const float* w_scale,
                    int64_t scale_stride, const float* bias, LinearShape s, T* y);

// W4/W2: affine codes of W [N, K], grouped along K in groups of group_size (which divides K):
// group g = (n * K + k) / group_size holds weight (n, k); codes are packed by pack_ref over the
// grouped [N * K / group_size, group_size] matrix. w(n, k) = code * scale[g] - shift[g].
template <typename T>
void linear_qbits_ref(const T* x, const uint8_t* packed, int bits, int64_t group_size,
                      const float* scale, const float* shift, const float* bias, LinearShape s,
                      T* y);

// Rows [n_begin, n_end) of that W as floats (out holds (n_end - n_begin) · K): the weights
// linear_qbits_ref multiplies, each decoded once (its own loop decodes every weight once per row
// of x, with two divisions each). The op layer multiplies blocks of them with ATen's float GEMM.
void dequantize_qbits_rows_ref(const uint8_t* packed, int bits, int64_t group_size, int64_t N, int64_t K,
                               const float* scale, const float* shift, int64_t n_begin, int64_t n_end, float* out);

// W8A8: x int8 [M, K] with a float scale per tensor (x_scale_stride 0, static calibration) or
// per row (1, dynamic per-token), w int8 [N, K]; exact int32 accumulation, then
// y = acc * (x_scale[m] * w_scale[n]) + bias[n], in float. Optimised variants compute the same
// int32 sums and the same epilogue, so they match this bit for bit.
void linear_w8a8_ref(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                     const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y);

// ---- W8A8 with pre-packed weights (converted once, at freeze or load; exact round trip) ----
// The layout the VNNI kernels read without any per-call work: output channels in blocks of
// kW8A8BlockN, block b holding, for each quad q of 4 consecutive k (K padded with zero weights
// to a multiple of 4), kW8A8BlockN · 4 bytes: byte (q · kW8A8BlockN + j) · 4 + i = w[b · kW8A8BlockN
// + j, 4q + i] (0 for channels past N); then kW8A8BlockN little-endian int32 that are 128 · Σ_k w[n, k]
// (0 past N), the correction for the u8 offset of x that vpdpbusd needs (derived data: unpacking
// ignores it, packing recomputes it). The packed tensor is uint8 [blocks, w8a8_block_bytes(K)];
// the sizes live in kernels/layout_geometry.h.
// The weight w[n, k] inside a packed block (n relative to the block).
inline int8_t w8a8_packed_at(const uint8_t* block, int64_t j, int64_t k) {
  return static_cast<int8_t>(block[((k / 4) * kW8A8BlockN + j) * 4 + k % 4]);
}
inline const int32_t* w8a8_block_offsets(const uint8_t* block, int64_t K) {
  return reinterpret_cast<const int32_t*>(block + w8a8_quads(K) * kW8A8BlockN * 4);
}

// w int8 [N, K] -> blocks [b_begin, b_end) of the packed layout, and back.
void pack_w8a8_ref(const int8_t* w, int64_t N, int64_t K, int64_t b_begin, int64_t b_end, uint8_t* packed);
void unpack_w8a8_ref(const uint8_t* packed, int64_t N, int64_t K, int64_t b_begin, int64_t b_end, int8_t* w);

// linear_w8a8_ref on packed weights: same int32 sums, same epilogue, same results bit for bit.
void linear_w8a8_packed_ref(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,
                            const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y);

// The W8A8 epilogue, shared by every variant so they agree bit for bit.
inline float w8a8_output(int32_t acc, float x_scale, float w_scale, const float* bias, int64_t n) {
  const float out = static_cast<float>(acc) * (x_scale * w_scale);
  return bias ? out + bias[n] : out;
}

}  // namespace quanto::kernels
