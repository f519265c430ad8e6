#include "kernels/ref/hqq_ref.h"

#include "kernels/ref/hqq_impl.h"

namespace quanto::kernels {

float round_param(float v, ParamPrecision precision) { return hqq_detail::round_param_impl(v, precision); }

void hqq_refine_ref(const float* x, int64_t n_groups, int64_t group_size, const HqqConfig& config,
                    float* scale, float* shift, float* sq_error) {
  hqq_detail::hqq_refine_impl(x, n_groups, group_size, config, scale, shift, sq_error);
}

}  // namespace quanto::kernels
