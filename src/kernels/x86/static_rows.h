// Run-time row counts to compile-time ones: the kernels take their batch or tile height as a
// template parameter so that their accumulators (plain arrays in unrolled loops) stay in registers.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace quanto::kernels::simd {

// Calls f(std::integral_constant<int, n>{}) for a run-time n in [Min, Max]; nothing otherwise.
template <int Min, int Max, class F>
inline void with_static_rows(int64_t n, F&& f) {
  static_assert(Min >= 1 && Min <= Max);
  [&]<int... I>(std::integer_sequence<int, I...>) {
    (void)((n == Min + I ? (f(std::integral_constant<int, Min + I>{}), true) : false) || ...);
  }(std::make_integer_sequence<int, Max - Min + 1>{});
}

}  // namespace quanto::kernels::simd
