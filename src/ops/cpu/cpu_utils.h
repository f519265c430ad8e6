// Helpers for the CPU op implementations: dtype dispatch onto the kernels' element types,
// raw data access, the grouped 2-D layout, and threading (the op layer owns it).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "kernels/numeric.h"
#include "ops/checks.h"

namespace quanto::ops::cpu {

template <typename T>
struct Tag {
  using type = T;
};

// Calls fn(Tag<T>{}) with T the kernels' element type for a float dtype.
template <typename Fn>
decltype(auto) dispatch_float(c10::ScalarType dtype, const char* op, Fn&& fn) {
  switch (dtype) {
    case at::kFloat:
      return fn(Tag<float>{});
    case at::kBFloat16:
      return fn(Tag<kernels::bf16>{});
    case at::kHalf:
      return fn(Tag<kernels::fp16>{});
    default:
      TORCH_CHECK_TYPE(false, op, ": unsupported dtype ", dtype);
  }
}

template <typename T>
T* data_as(const at::Tensor& t) {
  return reinterpret_cast<T*>(t.data_ptr());
}

inline kernels::Fp8Format fp8_format(c10::ScalarType d) {
  switch (d) {
    case at::kFloat8_e4m3fnuz:
      return kernels::Fp8Format::e4m3fnuz;
    case at::kFloat8_e5m2:
      return kernels::Fp8Format::e5m2;
    default:
      return kernels::Fp8Format::e4m3fn;
  }
}

// Splits [0, n) over the intra-op thread pool, with at least `grain` items a task.
template <typename Fn>
void parallel_rows(int64_t n, int64_t grain, Fn&& fn) {
  at::parallel_for(0, n, grain, [&](int64_t b, int64_t e) { fn(b, e); });
}
// A grain that gives each task roughly 32K elements of work.
inline int64_t grain_for(int64_t cols) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1)); }

// x (contiguous, in its grouped layout) as the 2-D block the kernels see.
at::Tensor grouped_2d(const at::Tensor& x, const Grouping& g);
// Inverse of grouped_2d, back to `shape`.
at::Tensor ungrouped(const at::Tensor& y2d, const Grouping& g, at::IntArrayRef shape);

}  // namespace quanto::ops::cpu
