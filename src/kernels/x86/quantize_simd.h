// Quantization kernels written once over a vector-traits type V, instantiated by each ISA
// translation unit with its own V (quantize_avx2.cpp, quantize_avx512.cpp). Everything here is
// a template of V, so each TU's instantiations are distinct symbols: no AVX-512 code can leak
// into another TU through the linker.
//
// V provides: F (register type), kWidth, load(const float*), load(const bf16*), set1, div,
// add, min, max, zero_nan (NaN lanes -> 0), nan_mask_or (accumulates "is NaN"), any (of such
// a mask), round_even (ties to even), round_bf16 (to the nearest bf16, NaN-free input),
// reduce_max, reduce_min, store_i8 / store_u8 (integer-valued lanes, already in range).
//
// Contracts are those of the scalar references (kernels/ref/quantize_ref.h), bit for bit;
// layouts other than one parameter per row (or per tensor), and tails, go to the reference.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/numeric.h"
#include "kernels/ref/quantize_ref.h"

namespace quanto::kernels::simd {

template <class V, typename T>
typename V::F round_to_input(typename V::F v) {
  if constexpr (std::is_same_v<T, bf16>) return V::round_bf16(v);
  else return v;
}

template <class V, typename T>
void absmax_rows(const T* x, int64_t rows, int64_t cols, float* amax) {
  const int64_t body = cols - cols % V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    typename V::F m = V::set1(0.0f), nan = V::set1(0.0f);
    for (int64_t c = 0; c < body; c += V::kWidth) {
      const typename V::F v = V::abs(V::load(row + c));
      nan = V::nan_mask_or(nan, v);
      m = V::max(v, m);  // operand order of the reference: v > m ? v : m
    }
    float result = V::reduce_max(m);
    if (V::any(nan)) result = __builtin_nanf("");
    if (body < cols) {
      float tail;
      absmax_rows_ref<T>(row + body, 1, cols - body, &tail);
      if (tail > result || tail != tail) result = tail;
    }
    amax[r] = result;
  }
}

template <class V, typename T>
void minmax_rows(const T* x, int64_t rows, int64_t cols, float* mn, float* mx) {
  const int64_t body = cols - cols % V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    typename V::F lo = V::set1(__builtin_inff()), hi = V::set1(-__builtin_inff()), nan = V::set1(0.0f);
    for (int64_t c = 0; c < body; c += V::kWidth) {
      const typename V::F v = V::load(row + c);
      nan = V::nan_mask_or(nan, v);
      lo = V::min(v, lo);  // v < lo ? v : lo, as in the reference
      hi = V::max(v, hi);
    }
    float l = V::reduce_min(lo), h = V::reduce_max(hi);
    if (body < cols) {
      float tl, th;
      minmax_rows_ref<T>(row + body, 1, cols - body, &tl, &th);
      l = tl < l || tl != tl ? tl : l;
      h = th > h || th != th ? th : h;
    }
    if (V::any(nan)) l = h = __builtin_nanf("");
    mn[r] = l;
    mx[r] = h;
  }
}

// q = clamp(round(round_T(x / s)), lo, hi) for one row with a non-zero scale s.
template <class V, typename T>
typename V::F quantize_lanes(typename V::F x, typename V::F s, typename V::F lo, typename V::F hi) {
  typename V::F v = V::zero_nan(V::div(x, s));
  v = V::round_even(round_to_input<V, T>(v));
  return V::min(V::max(v, lo), hi);
}

template <class V, typename T>
void symmetric_quantize_int(const T* x, const float* scale, ParamLayout layout, int64_t rows, int64_t cols,
                            IntRange range, int8_t* q) {
  if (layout.col_stride != 0) return symmetric_quantize_int_ref<T>(x, scale, layout, rows, cols, range, q);
  const typename V::F lo = V::set1(static_cast<float>(range.qmin)), hi = V::set1(static_cast<float>(range.qmax));
  const int64_t body = cols - cols % V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = scale + r * layout.row_stride;
    const T* row = x + r * cols;
    int8_t* out = q + r * cols;
    if (*s == 0.0f) {  // the zero-scale policy lives in the reference
      symmetric_quantize_int_ref<T>(row, s, kPerTensor, 1, cols, range, out);
      continue;
    }
    const typename V::F sv = V::set1(*s);
    for (int64_t c = 0; c < body; c += V::kWidth) V::store_i8(out + c, quantize_lanes<V, T>(V::load(row + c), sv, lo, hi));
    if (body < cols) symmetric_quantize_int_ref<T>(row + body, s, kPerTensor, 1, cols - body, range, out + body);
  }
}

// Float shift: q = clamp(round(round_T(round_T(x + shift) / scale)), 0, code_max).
template <class V, typename T>
void affine_quantize(const T* x, const float* scale, const float* shift, ParamLayout layout, int64_t rows,
                     int64_t cols, int32_t code_max, uint8_t* q) {
  if (layout.col_stride != 0) return affine_quantize_ref<T>(x, scale, shift, layout, rows, cols, code_max, q);
  const typename V::F lo = V::set1(0.0f), hi = V::set1(static_cast<float>(code_max));
  const int64_t body = cols - cols % V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = r * layout.row_stride;
    const T* row = x + r * cols;
    uint8_t* out = q + r * cols;
    if (scale[p] == 0.0f) {
      affine_quantize_ref<T>(row, scale + p, shift + p, kPerTensor, 1, cols, code_max, out);
      continue;
    }
    const typename V::F sv = V::set1(scale[p]), hv = V::set1(shift[p]);
    for (int64_t c = 0; c < body; c += V::kWidth) {
      const typename V::F shifted = round_to_input<V, T>(V::add(V::load(row + c), hv));
      V::store_u8(out + c, quantize_lanes<V, T>(shifted, sv, lo, hi));
    }
    if (body < cols)
      affine_quantize_ref<T>(row + body, scale + p, shift + p, kPerTensor, 1, cols - body, code_max, out + body);
  }
}

// Zero-point: q = clamp(round(round_T(x / scale)) + zp, 0, code_max).
template <class V, typename T>
void affine_quantize_zp(const T* x, const float* scale, const uint8_t* zero_point, ParamLayout layout,
                        int64_t rows, int64_t cols, int32_t code_max, uint8_t* q) {
  if (layout.col_stride != 0)
    return affine_quantize_zp_ref<T>(x, scale, zero_point, layout, rows, cols, code_max, q);
  // Rounding saturates the quotient to ±512 first (exact: see the reference), then adds zp.
  const typename V::F wide_lo = V::set1(-512.0f), wide_hi = V::set1(512.0f);
  const typename V::F lo = V::set1(0.0f), hi = V::set1(static_cast<float>(code_max));
  const int64_t body = cols - cols % V::kWidth;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p = r * layout.row_stride;
    const T* row = x + r * cols;
    uint8_t* out = q + r * cols;
    if (scale[p] == 0.0f) {
      affine_quantize_zp_ref<T>(row, scale + p, zero_point + p, kPerTensor, 1, cols, code_max, out);
      continue;
    }
    const typename V::F sv = V::set1(scale[p]), zv = V::set1(static_cast<float>(zero_point[p]));
    for (int64_t c = 0; c < body; c += V::kWidth) {
      const typename V::F v = quantize_lanes<V, T>(V::load(row + c), sv, wide_lo, wide_hi);
      V::store_u8(out + c, V::min(V::max(V::add(v, zv), lo), hi));
    }
    if (body < cols)
      affine_quantize_zp_ref<T>(row + body, scale + p, zero_point + p, kPerTensor, 1, cols - body, code_max,
                                out + body);
  }
}

}  // namespace quanto::kernels::simd
