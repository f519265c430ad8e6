// AVX2 + FMA + F16C build of the HQQ group loop (kernels/ref/hqq_impl.h), wider vectors, same arithmetic.
#include "kernels/ref/hqq_impl.h"
#include "kernels/x86/hqq_x86.h"

namespace quanto::kernels::avx2 {

void hqq_refine(const float* x, int64_t n_groups, int64_t group_size, const HqqConfig& config, float* scale,
                float* shift, float* sq_error) {
  hqq_detail::hqq_refine_impl(x, n_groups, group_size, config, scale, shift, sq_error);
}

}  // namespace quanto::kernels::avx2
