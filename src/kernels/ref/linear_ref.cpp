#include "kernels/ref/linear_ref.h"

#include <algorithm>
#include <cstring>

#include "kernels/ref/pack_ref.h"

namespace quanto::kernels {
namespace {

// Shared skeleton: weight(n, k) supplies the float weight, accumulation in float.
template <typename T, typename Weight>
void linear_float_acc(const T* x, const float* bias, LinearShape s, T* y, Weight weight,
                      const float* w_scale, int64_t scale_stride) {
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = s.n_begin; n < s.n_end; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < s.K; ++k) acc += to_float(x[m * s.K + k]) * weight(n, k);
      float out = w_scale ? acc * w_scale[n * scale_stride] : acc;
      if (bias) out += bias[n];
      y[m * s.N + n] = from_float<T>(out);
    }
}

// Code j of group g in the canonical packed layout (pack_ref over the grouped
// [groups, group_size] matrix, R = packed_rows(groups, bits) packed rows).
inline unsigned packed_group_code(const uint8_t* packed, int64_t R, int64_t group_size, int bits, int64_t g,
                                  int64_t j) {
  return (packed[(g % R) * group_size + j] >> (bits * (g / R))) & ((1u << bits) - 1u);
}

}  // namespace

template <typename T>
void linear_int8_ref(const T* x, const int8_t* w, const float* w_scale, int64_t scale_stride,
                     const float* bias, LinearShape s, T* y) {
  auto weight = [&](int64_t n, int64_t k) { return static_cast<float>(w[n * s.K + k]); };
  linear_float_acc(x, bias, s, y, weight, w_scale, scale_stride);
}

template <typename T>
void linear_fp8_ref(const T* x, const uint8_t* w, Fp8Format format, const float* w_scale,
                    int64_t scale_stride, const float* bias, LinearShape s, T* y) {
  auto weight = [&](int64_t n, int64_t k) { return fp8_to_float(w[n * s.K + k], format); };
  linear_float_acc(x, bias, s, y, weight, w_scale, scale_stride);
}

template <typename T>
void linear_qbits_ref(const T* x, const uint8_t* packed, int bits, int64_t group_size,
                      const float* scale, const float* shift, const float* bias, LinearShape s,
                      T* y) {
  const int64_t groups = s.N * s.K / group_size;
  const int64_t R = packed_rows(groups, bits);
  auto weight = [&](int64_t n, int64_t k) {
    const int64_t flat = n * s.K + k;
    const int64_t g = flat / group_size, j = flat % group_size;
    return static_cast<float>(packed_group_code(packed, R, group_size, bits, g, j)) * scale[g] - shift[g];
  };
  linear_float_acc(x, bias, s, y, weight, nullptr, 0);
}

void dequantize_qbits_rows_ref(const uint8_t* packed, int bits, int64_t group_size, int64_t N, int64_t K,
                               const float* scale, const float* shift, int64_t n_begin, int64_t n_end, float* out) {
  const int64_t R = packed_rows(N * K / group_size, bits), row_groups = K / group_size;
  for (int64_t n = n_begin; n < n_end; ++n)
    for (int64_t i = 0; i < row_groups; ++i) {
      const int64_t g = n * row_groups + i;
      const float sc = scale[g], sh = shift[g];
      float* o = out + (n - n_begin) * K + i * group_size;
      for (int64_t j = 0; j < group_size; ++j)
        o[j] = static_cast<float>(packed_group_code(packed, R, group_size, bits, g, j)) * sc - sh;
    }
}

void linear_w8a8_ref(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const int8_t* w,
                     const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = s.n_begin; n < s.n_end; ++n) {
      int32_t acc = 0;
      for (int64_t k = 0; k < s.K; ++k)
        acc += static_cast<int32_t>(x[m * s.K + k]) * static_cast<int32_t>(w[n * s.K + k]);
      y[m * s.N + n] = w8a8_output(acc, x_scale[m * x_scale_stride], w_scale[n * w_scale_stride], bias, n);
    }
}

void pack_w8a8_ref(const int8_t* w, int64_t N, int64_t K, int64_t b_begin, int64_t b_end, uint8_t* packed) {
  const int64_t bytes = w8a8_block_bytes(K), whole = K / 4;
  for (int64_t b = b_begin; b < b_end; ++b) {
    uint8_t* block = packed + b * bytes;
    std::memset(block, 0, static_cast<size_t>(bytes));
    const int64_t n0 = b * kW8A8BlockN, nb = std::min<int64_t>(kW8A8BlockN, N - n0);
    // Whole quads as 4-byte copies, written in order (the reads walk nb rows side by side).
    for (int64_t q = 0; q < whole; ++q)
      for (int64_t j = 0; j < nb; ++j) std::memcpy(block + (q * kW8A8BlockN + j) * 4, w + (n0 + j) * K + 4 * q, 4);
    int32_t offsets[kW8A8BlockN] = {};
    for (int64_t j = 0; j < nb; ++j) {
      const int8_t* row = w + (n0 + j) * K;
      for (int64_t k = 4 * whole; k < K; ++k) block[(whole * kW8A8BlockN + j) * 4 + k % 4] = static_cast<uint8_t>(row[k]);
      int64_t sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += row[k];
      offsets[j] = static_cast<int32_t>(128 * sum);  // |128 Σ w| < 2^31 for K < 2^17 (checked by the op)
    }
    std::memcpy(block + w8a8_quads(K) * kW8A8BlockN * 4, offsets, sizeof(offsets));
  }
}

void unpack_w8a8_ref(const uint8_t* packed, int64_t N, int64_t K, int64_t b_begin, int64_t b_end, int8_t* w) {
  const int64_t bytes = w8a8_block_bytes(K);
  for (int64_t b = b_begin; b < b_end; ++b)
    for (int64_t j = 0; j < kW8A8BlockN && b * kW8A8BlockN + j < N; ++j)
      for (int64_t k = 0; k < K; ++k) w[(b * kW8A8BlockN + j) * K + k] = w8a8_packed_at(packed + b * bytes, j, k);
}

void linear_w8a8_packed_ref(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* packed,
                            const float* w_scale, int64_t w_scale_stride, const float* bias, LinearShape s, float* y) {
  const int64_t bytes = w8a8_block_bytes(s.K);
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = s.n_begin; n < s.n_end; ++n) {
      const uint8_t* block = packed + (n / kW8A8BlockN) * bytes;
      int32_t acc = 0;
      for (int64_t k = 0; k < s.K; ++k)
        acc += static_cast<int32_t>(x[m * s.K + k]) * static_cast<int32_t>(w8a8_packed_at(block, n % kW8A8BlockN, k));
      y[m * s.N + n] = w8a8_output(acc, x_scale[m * x_scale_stride], w_scale[n * w_scale_stride], bias, n);
    }
}

#define QUANTO_INSTANTIATE_LINEAR_REF(T)                                                       \
  template void linear_int8_ref<T>(const T*, const int8_t*, const float*, int64_t,            \
                                   const float*, LinearShape, T*);                            \
  template void linear_fp8_ref<T>(const T*, const uint8_t*, Fp8Format, const float*, int64_t, \
                                  const float*, LinearShape, T*);                             \
  template void linear_qbits_ref<T>(const T*, const uint8_t*, int, int64_t, const float*,     \
                                    const float*, const float*, LinearShape, T*);

QUANTO_INSTANTIATE_LINEAR_REF(float)
QUANTO_INSTANTIATE_LINEAR_REF(bf16)
QUANTO_INSTANTIATE_LINEAR_REF(fp16)

}  // namespace quanto::kernels
