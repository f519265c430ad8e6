#include "kernels/ref/quantize_ref.h"

#include <algorithm>
#include <cmath>

namespace quanto::kernels {
namespace {

// max that keeps a NaN once seen, so a NaN anywhere in the data reaches the caller.
inline float nan_max(float m, float v) { return (v > m || std::isnan(v)) ? v : m; }
inline float nan_min(float m, float v) { return (v < m || std::isnan(v)) ? v : m; }

inline float param(const float* p, ParamLayout l, int64_t r, int64_t c) {
  return p[r * l.row_stride + c * l.col_stride];
}

// The quotient of the PyTorch formulation, rounded to T, with the documented policies.
template <typename T>
inline float quotient(float num, float scale) {
  if (scale == 0.0f) return 0.0f;
  return round_to<T>(num / scale);
}

inline int32_t round_clamp_int(float v, int32_t lo, int32_t hi) {
  if (std::isnan(v)) v = 0.0f;
  v = std::nearbyint(v);  // ties to even under the default rounding mode, like torch.round
  if (v <= static_cast<float>(lo)) return lo;
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int32_t>(v);
}

}  // namespace

template <typename T>
void absmax_rows_ref(const T* x, int64_t rows, int64_t cols, float* amax) {
  for (int64_t r = 0; r < rows; ++r) {
    float m = 0.0f;
    for (int64_t c = 0; c < cols; ++c) m = nan_max(m, std::fabs(to_float(x[r * cols + c])));
    amax[r] = m;
  }
}

template <typename T>
void absmax_cols_ref(const T* x, int64_t rows, int64_t cols, int64_t ld, float* amax) {
  for (int64_t c = 0; c < cols; ++c) amax[c] = 0.0f;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) amax[c] = nan_max(amax[c], std::fabs(to_float(x[r * ld + c])));
}

template <typename T>
void minmax_rows_ref(const T* x, int64_t rows, int64_t cols, float* mn, float* mx) {
  for (int64_t r = 0; r < rows; ++r) {
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = to_float(x[r * cols + c]);
      lo = nan_min(lo, v);
      hi = nan_max(hi, v);
    }
    mn[r] = lo;
    mx[r] = hi;
  }
}

template <typename T>
void minmax_cols_ref(const T* x, int64_t rows, int64_t cols, int64_t ld, float* mn, float* mx) {
  for (int64_t c = 0; c < cols; ++c) {
    mn[c] = INFINITY;
    mx[c] = -INFINITY;
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = to_float(x[r * ld + c]);
      mn[c] = nan_min(mn[c], v);
      mx[c] = nan_max(mx[c], v);
    }
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
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float v = quotient<T>(to_float(x[r * cols + c]), param(scale, layout, r, c));
      q[r * cols + c] = static_cast<int8_t>(round_clamp_int(v, range.qmin, range.qmax));
    }
}

template <typename T>
void symmetric_quantize_fp8_ref(const T* x, const float* scale, ParamLayout layout, int64_t rows,
                                int64_t cols, Fp8Format format, uint8_t* q) {
  const float max = fp8_spec(format).max;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float v = quotient<T>(to_float(x[r * cols + c]), param(scale, layout, r, c));
      if (!std::isnan(v)) v = std::min(std::max(v, -max), max);
      q[r * cols + c] = fp8_from_float(v, format);
    }
}

template <typename T>
void symmetric_dequantize_int_ref(const int8_t* q, const float* scale, ParamLayout layout,
                                  int64_t rows, int64_t cols, T* y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] =
          from_float<T>(static_cast<float>(q[r * cols + c]) * param(scale, layout, r, c));
}

template <typename T>
void symmetric_dequantize_fp8_ref(const uint8_t* q, const float* scale, ParamLayout layout,
                                  int64_t rows, int64_t cols, Fp8Format format, T* y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      y[r * cols + c] =
          from_float<T>(fp8_to_float(q[r * cols + c], format) * param(scale, layout, r, c));
}

template <typename T>
void affine_quantize_ref(const T* x, const float* scale, const float* shift, ParamLayout layout,
                         int64_t rows, int64_t cols, int32_t code_max, uint8_t* q) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float shifted = round_to<T>(to_float(x[r * cols + c]) + param(shift, layout, r, c));
      const float v = quotient<T>(shifted, param(scale, layout, r, c));
      q[r * cols + c] = static_cast<uint8_t>(round_clamp_int(v, 0, code_max));
    }
}

template <typename T>
void affine_quantize_zp_ref(const T* x, const float* scale, const uint8_t* zero_point,
                            ParamLayout layout, int64_t rows, int64_t cols, int32_t code_max,
                            uint8_t* q) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float v = quotient<T>(to_float(x[r * cols + c]), param(scale, layout, r, c));
      if (std::isnan(v)) v = 0.0f;
      // |round(v)| beyond the code range saturates either way, so adding in float is exact
      // wherever the result is not clamped.
      v = std::nearbyint(v) + static_cast<float>(zero_point[r * layout.row_stride + c * layout.col_stride]);
      q[r * cols + c] = static_cast<uint8_t>(round_clamp_int(v, 0, code_max));
    }
}

template <typename T>
void affine_dequantize_ref(const uint8_t* q, const float* scale, const float* shift, ParamLayout layout,
                           int64_t rows, int64_t cols, T* y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const float scaled = round_to<T>(static_cast<float>(q[r * cols + c]) * param(scale, layout, r, c));
      y[r * cols + c] = from_float<T>(scaled - param(shift, layout, r, c));
    }
}

template <typename T>
void affine_dequantize_zp_ref(const uint8_t* q, const float* scale, const uint8_t* zero_point,
                              ParamLayout layout, int64_t rows, int64_t cols, T* y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int zp = zero_point[r * layout.row_stride + c * layout.col_stride];
      const float centered = static_cast<float>(static_cast<int>(q[r * cols + c]) - zp);
      y[r * cols + c] = from_float<T>(centered * param(scale, layout, r, c));
    }
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
