#include "kernels/ref/linear_ref.h"

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
  const unsigned mask = (1u << bits) - 1u;
  auto weight = [&](int64_t n, int64_t k) {
    const int64_t flat = n * s.K + k;
    const int64_t g = flat / group_size, j = flat % group_size;
    const unsigned code = (packed[(g % R) * group_size + j] >> (bits * (g / R))) & mask;
    return static_cast<float>(code) * scale[g] - shift[g];
  };
  linear_float_acc(x, bias, s, y, weight, nullptr, 0);
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
