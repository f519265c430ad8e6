// x86 builds of the HQQ kernel; call only through the dispatch table, after cpu_supports().
// Same contract as hqq_refine_ref (kernels/ref/hqq_ref.h).
#pragma once

#include <cstdint>

#include "kernels/ref/hqq_ref.h"

namespace quanto::kernels {
namespace avx2 {
void hqq_refine(const float* x, int64_t n_groups, int64_t group_size, const HqqConfig& config, float* scale,
                float* shift, float* sq_error);
}  // namespace avx2
namespace avx512 {
void hqq_refine(const float* x, int64_t n_groups, int64_t group_size, const HqqConfig& config, float* scale,
                float* shift, float* sq_error);
}  // namespace avx512
}  // namespace quanto::kernels
