#include "kernels/ref/quantize_ref.h"

#include <algorithm>
#include <cmath>

namespace quanto::kernels {
namespace {

// Calls body(i, j) for every element i = r * cols + c of a [rows, cols] block, with j the
// index of its parameters. The two explicit loops (one parameter per row, or one per column)
// let the compiler vectorize each; the arithmetic stays in `body`, shared by both.
template <typename Body>
inline void for_each_element(ParamLayout l, int64_t rows, int64_t cols, Body body) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i0 = r * cols, j0 = r * l.row_stride;
    if (l.col_stride == 0) {
      for (int64_t c = 0; c < cols; ++c) body(i0 + c, j0);
    } else {
      for (int64_t c = 0; c < cols; ++c) body(i0 + c, j0 + c * l.col_stride);
    }
  }
}

// The quotient of the PyTorch formulation, rounded to T, with the documented policies.
template <typename T>
inline float quotient(float num, float scale) {
  if (scale == 0.0f) return 0.0f;
  return round_to<T>(num / scale);
}

// Round half to even without libm: adding and subtracting 1.5 * 2^23 leaves the nearest
// integer (ties to even, the default rounding mode) for |v| < 2^22. std::nearbyint is a
// library call on baseline x86-64, which lacks SSE4.1's roundps.
inline float round_half_even(float v) {
  constexpr float kMagic = 12582912.0f;
  return (v + kMagic) - kMagic;
}

// Clamping a step outside [lo, hi] first keeps |v| small for the rounding trick and cannot
// change the result: anything beyond lo - 1 or hi + 1 saturates either way.
inline float round_clamped(float v, int32_t lo, int32_t hi) {
  v = (v == v) ? v : 0.0f;  // NaN quantizes like 0
  v = std::min(std::max(v, static_cast<float>(lo) - 1.0f), static_cast<float>(hi) + 1.0f);
  return std::min(std::max(round_half_even(v), static_cast<float>(lo)), static_cast<float>(hi));
}

inline int32_t round_clamp_int(float v, int32_t lo, int32_t hi) {
  return static_cast<int32_t>(round_clamped(v, lo, hi));
}

}  // namespace

// The reductions keep a NaN flag beside a plain max/min so the loops vectorize; a NaN
// anywhere makes the result NaN, which the op layer rejects.
template <typename T>
void absmax_rows_ref(const T* x, int64_t rows, int64_t cols, float* amax) {
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0.0f;
    int nan = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::fabs(to_float(x[r * cols + c]));
      m = v > m ? v : m;
      nan |= v != v;
    }
    amax[r] = nan ? std::nanf("") : m;
  }
}

template <typename T>
void minmax_rows_ref(const T* x, int64_t rows, int64_t cols, float* mn, float* mx) {
  for (int64_t r = 0; r < rows; ++r) {
    float lo = INFINITY, hi = -INFINITY;
    int nan = 0;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = to_float(x[r * cols + c]);
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
      nan |= v != v;
    }
    mn[r] = nan ? std::nanf("") : lo;
    mx[r] = nan ? std::nanf("") : hi;
  }
}

namespace {
// Marks the columns that hold a NaN (the rare path of the column reductions).
template <typename T>
void mark_nan_cols(const T* x, int64_t rows, int64_t cols, int64_t ld, float* a, float* b) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      if (std::isnan(to_float(x[r * ld + c]))) {
        a[c] = std::nanf("");
        if (b) b[c] = std::nanf("");
      }
}
}  // namespace

template <typename T>
void absmax_cols_ref(const T* x, int64_t rows, int64_t cols, int64_t ld, float* amax) {
  for (int64_t c = 0; c < cols; ++c) amax[c] = 0.0f;
  int nan = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = std::fabs(to_float(x[r * ld + c]));
      amax[c] = v > amax[c] ? v : amax[c];
      nan |= v != v;
    }
  if (nan) mark_nan_cols(x, rows, cols, ld, amax, static_cast<float*>(nullptr));
}

template <typename T>
void minmax_cols_ref(const T* x, int64_t rows, int64_t cols, int64_t ld, float* mn, float* mx) {
  for (int64_t c = 0; c < cols; ++c) {
    mn[c] = INFINITY;
    mx[c] = -INFINITY;
  }
  int nan = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = to_float(x[r * ld + c]);
      mn[c] = v < mn[c] ? v : mn[c];
      mx[c] = v > mx[c] ? v : mx[c];
      nan |= v != v;
    }
  if (nan) mark_nan_cols(x, rows, cols, ld, mn, mx);
}

template <typename T>
void absmax_to_scale_ref(const float* amax, int64_t n, float qmax, T* scale) {
  for (int64_t i = 0; i < n; ++i) {
    const float s = round_to<T>(amax[i] / qmax);
    scale[i] = from_float<T>(s == 0.0f ? 1.0f : s);
  }
}

template <typename T>
void minmax_to_scale_shift_ref(const float* mn, const float* mx, int64_t n, int32_t code_max,
                               T* scale, T* shift) {
  const float levels = static_cast<float>(code_max);
  for (int64_t i = 0; i < n; ++i) {
    float s = round_to<T>(round_to<T>(mx[i] - mn[i]) / levels);
    if (s == 0.0f) {
      s = round_to<T>(std::max(std::fabs(mn[i]), std::fabs(mx[i])) / levels);
      if (s == 0.0f) s = 1.0f;
    }
    scale[i] = from_float<T>(s);
    shift[i] = from_float<T>(-mn[i]);
  }
}

template <typename T>
void shift_to_zeropoint_ref(const T* scale, const T* shift, int64_t n, int32_t code_max,
                            uint8_t* zero_point) {
  for (int64_t i = 0; i < n; ++i) {
    const float q = quotient<T>(to_float(shift[i]), to_float(scale[i]));
    zero_point[i] = static_cast<uint8_t>(round_clamp_int(q, 0, code_max));
  }
}

template <typename T>
void symmetric_quantize_int_ref(const T* x, const float* scale, ParamLayout layout, int64_t rows,
                                int64_t cols, IntRange range, int8_t* q) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    q[i] = static_cast<int8_t>(round_clamp_int(quotient<T>(to_float(x[i]), scale[j]), range.qmin, range.qmax));
  });
}

template <typename T>
void symmetric_quantize_fp8_ref(const T* x, const float* scale, ParamLayout layout, int64_t rows,
                                int64_t cols, Fp8Format format, uint8_t* q) {
  const float max = fp8_spec(format).max;
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    float v = quotient<T>(to_float(x[i]), scale[j]);
    if (!std::isnan(v)) v = std::min(std::max(v, -max), max);
    q[i] = fp8_from_float(v, format);
  });
}

template <typename T>
void symmetric_dequantize_int_ref(const int8_t* q, const float* scale, ParamLayout layout,
                                  int64_t rows, int64_t cols, T* y) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    y[i] = from_float<T>(static_cast<float>(q[i]) * scale[j]);
  });
}

template <typename T>
void symmetric_dequantize_fp8_ref(const uint8_t* q, const float* scale, ParamLayout layout,
                                  int64_t rows, int64_t cols, Fp8Format format, T* y) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    y[i] = from_float<T>(fp8_to_float(q[i], format) * scale[j]);
  });
}

template <typename T>
void affine_quantize_ref(const T* x, const float* scale, const float* shift, ParamLayout layout,
                         int64_t rows, int64_t cols, int32_t code_max, uint8_t* q) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    const float shifted = round_to<T>(to_float(x[i]) + shift[j]);
    q[i] = static_cast<uint8_t>(round_clamp_int(quotient<T>(shifted, scale[j]), 0, code_max));
  });
}

template <typename T>
void affine_quantize_zp_ref(const T* x, const float* scale, const uint8_t* zero_point,
                            ParamLayout layout, int64_t rows, int64_t cols, int32_t code_max,
                            uint8_t* q) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    // |round(v)| beyond 512 saturates whatever the zero-point (<= 255), so clamping there
    // first is exact, and adding in float is exact wherever the result is not clamped.
    const float v = round_clamped(quotient<T>(to_float(x[i]), scale[j]), -512, 512);
    q[i] = static_cast<uint8_t>(round_clamp_int(v + static_cast<float>(zero_point[j]), 0, code_max));
  });
}

template <typename T>
void affine_dequantize_ref(const uint8_t* q, const float* scale, const float* shift, ParamLayout layout,
                           int64_t rows, int64_t cols, T* y) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    y[i] = from_float<T>(round_to<T>(static_cast<float>(q[i]) * scale[j]) - shift[j]);
  });
}

template <typename T>
void affine_dequantize_zp_ref(const uint8_t* q, const float* scale, const uint8_t* zero_point,
                              ParamLayout layout, int64_t rows, int64_t cols, T* y) {
  for_each_element(layout, rows, cols, [&](int64_t i, int64_t j) {
    const float centered = static_cast<float>(static_cast<int>(q[i]) - static_cast<int>(zero_point[j]));
    y[i] = from_float<T>(centered * scale[j]);
  });
}

#define QUANTO_INSTANTIATE_QUANTIZE_REF(T)                                                       \
  template void absmax_rows_ref<T>(const T*, int64_t, int64_t, float*);                         \
  template void absmax_cols_ref<T>(const T*, int64_t, int64_t, int64_t, float*);                \
  template void minmax_rows_ref<T>(const T*, int64_t, int64_t, float*, float*);                 \
  template void minmax_cols_ref<T>(const T*, int64_t, int64_t, int64_t, float*, float*);        \
  template void absmax_to_scale_ref<T>(const float*, int64_t, float, T*);                       \
  template void minmax_to_scale_shift_ref<T>(const float*, const float*, int64_t, int32_t, T*,  \
                                             T*);                                               \
  template void shift_to_zeropoint_ref<T>(const T*, const T*, int64_t, int32_t, uint8_t*);      \
  template void symmetric_quantize_int_ref<T>(const T*, const float*, ParamLayout, int64_t,         \
                                              int64_t, IntRange, int8_t*);                      \
  template void symmetric_quantize_fp8_ref<T>(const T*, const float*, ParamLayout, int64_t,         \
                                              int64_t, Fp8Format, uint8_t*);                    \
  template void symmetric_dequantize_int_ref<T>(const int8_t*, const float*, ParamLayout, int64_t,  \
                                                int64_t, T*);                                   \
  template void symmetric_dequantize_fp8_ref<T>(const uint8_t*, const float*, ParamLayout, int64_t, \
                                                int64_t, Fp8Format, T*);                        \
  template void affine_quantize_ref<T>(const T*, const float*, const float*, ParamLayout, int64_t,      \
                                       int64_t, int32_t, uint8_t*);                             \
  template void affine_quantize_zp_ref<T>(const T*, const float*, const uint8_t*, ParamLayout,      \
                                          int64_t, int64_t, int32_t, uint8_t*);                 \
  template void affine_dequantize_ref<T>(const uint8_t*, const float*, const float*, ParamLayout,       \
                                         int64_t, int64_t, T*);                                 \
  template void affine_dequantize_zp_ref<T>(const uint8_t*, const float*, const uint8_t*,           \
                                            ParamLayout, int64_t, int64_t, T*);

QUANTO_INSTANTIATE_QUANTIZE_REF(float)
QUANTO_INSTANTIATE_QUANTIZE_REF(bf16)
QUANTO_INSTANTIATE_QUANTIZE_REF(fp16)

}  // namespace quanto::kernels
