// Scalar reference kernels for scales, quantization and dequantization.
//
// These define the arithmetic: every optimised variant must match them bit for bit, and they
// in turn match PyTorch (hence optimum-quanto) evaluated in the input dtype T — each
// intermediate tensor of the PyTorch formulation is rounded to T here too.
//
// Shapes: x is a row-major [rows, cols] block. A parameter (scale, shift) of element (r, c)
// is params[r * layout.row_stride + c * layout.col_stride]. Quantize/dequantize kernels take
// their parameters as float: every float16/bfloat16 value is exact in float, and PyTorch
// itself divides a bf16/fp16 tensor by a 0-dim float32 scale at full float precision.
//
// Policies (documented behaviour, tested):
//  - a scale of 0 quantizes every element to the code of 0 (0, or the zero-point) instead of
//    dividing by zero; scale kernels never produce 0 (see absmax_to_scale_ref);
//  - a NaN quotient quantizes like 0 for integer codes, and to NaN for float8 formats;
//  - ±inf quotients saturate to the code range (float8: to ±max, never to inf).
#pragma once

#include <cstdint>

#include "kernels/numeric.h"

namespace quanto::kernels {

struct ParamLayout {
  int64_t row_stride;
  int64_t col_stride;
};
inline constexpr ParamLayout kPerRow{1, 0};
inline constexpr ParamLayout kPerCol{0, 1};
inline constexpr ParamLayout kPerTensor{0, 0};

struct IntRange {
  int32_t qmin;
  int32_t qmax;
};

// ---- ranges (float results; NaN propagates so callers can reject it) ----
template <typename T>
void absmax_rows_ref(const T* x, int64_t rows, int64_t cols, float* amax);
// Columns [0, cols) of a block whose rows are ld elements apart.
template <typename T>
void absmax_cols_ref(const T* x, int64_t rows, int64_t cols, int64_t ld, float* amax);
template <typename T>
void minmax_rows_ref(const T* x, int64_t rows, int64_t cols, float* mn, float* mx);
template <typename T>
void minmax_cols_ref(const T* x, int64_t rows, int64_t cols, int64_t ld, float* mn, float* mx);

// ---- parameters from ranges ----
// scale = round_T(amax / qmax). A scale that would be 0 (all-zero data, or underflow in T)
// becomes 1: every code is then 0 and dequantizes to exactly 0.
template <typename T>
void absmax_to_scale_ref(const float* amax, int64_t n, float qmax, T* scale);
// scale = round_T(round_T(max - min) / (2^bits - 1)), shift = -min (optimum-quanto's MaxOptimizer).
// A zero scale (constant group) becomes round_T(max(|min|, |max|) / (2^bits - 1)), or 1 if that
// is 0 too: a constant group then round-trips (almost) exactly with a float shift or a zero-point.
template <typename T>
void minmax_to_scale_shift_ref(const float* mn, const float* mx, int64_t n, int32_t code_max,
                               T* scale, T* shift);
// zero_point = clamp(round(round_T(shift / scale)), 0, code_max).
template <typename T>
void shift_to_zeropoint_ref(const T* scale, const T* shift, int64_t n, int32_t code_max,
                            uint8_t* zero_point);

// ---- symmetric ----
// q = clamp(round(round_T(x / scale)), qmin, qmax)
template <typename T>
void symmetric_quantize_int_ref(const T* x, const float* scale, ParamLayout layout, int64_t rows,
                                int64_t cols, IntRange range, int8_t* q);
// q = fp8(clamp(round_T(x / scale), -max, max))
template <typename T>
void symmetric_quantize_fp8_ref(const T* x, const float* scale, ParamLayout layout, int64_t rows,
                                int64_t cols, Fp8Format format, uint8_t* q);
// y = round_T(q * scale)
template <typename T>
void symmetric_dequantize_int_ref(const int8_t* q, const float* scale, ParamLayout layout,
                                  int64_t rows, int64_t cols, T* y);
template <typename T>
void symmetric_dequantize_fp8_ref(const uint8_t* q, const float* scale, ParamLayout layout,
                                  int64_t rows, int64_t cols, Fp8Format format, T* y);

// ---- affine (unsigned codes 0 … code_max) ----
// float shift: q = clamp(round(round_T(round_T(x + shift) / scale)), 0, code_max)
template <typename T>
void affine_quantize_ref(const T* x, const float* scale, const float* shift, ParamLayout layout,
                         int64_t rows, int64_t cols, int32_t code_max, uint8_t* q);
// zero-point: q = clamp(round(round_T(x / scale)) + zp, 0, code_max)
template <typename T>
void affine_quantize_zp_ref(const T* x, const float* scale, const uint8_t* zero_point,
                            ParamLayout layout, int64_t rows, int64_t cols, int32_t code_max,
                            uint8_t* q);
// float shift: y = round_T(round_T(q * scale) - shift)
template <typename T>
void affine_dequantize_ref(const uint8_t* q, const float* scale, const float* shift, ParamLayout layout,
                           int64_t rows, int64_t cols, T* y);
// zero-point: y = round_T((q - zp) * scale)
template <typename T>
void affine_dequantize_zp_ref(const uint8_t* q, const float* scale, const uint8_t* zero_point,
                              ParamLayout layout, int64_t rows, int64_t cols, T* y);

}  // namespace quanto::kernels
