// GPTQ's inverse Hessian factor, shared by the CPU kernel and the device-generic implementation of
// gptq_quantize (both written with ATen ops for this step).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

namespace quanto::ops {

// Upper Cholesky factor of the inverse of the Hessian dampened by percdamp * mean(diag), float32
// [n, n], factorised in `wide` (float64 where the device has it). A zero diagonal entry (an input
// never seen in calibration) becomes 1. Errors name NaN/inf, a negative mean diagonal and a
// matrix that is not positive definite after dampening.
at::Tensor gptq_inverse_hessian_factor(const char* op, const at::Tensor& hessian, double percdamp,
                                       c10::ScalarType wide);

}  // namespace quanto::ops
