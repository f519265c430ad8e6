// AVX2 + FMA + F16C instantiation of the weight-only linear kernels.
#include "kernels/x86/linear_simd.h"
#include "kernels/x86/linear_x86.h"
#include "kernels/x86/w4a8_prefill_simd.h"
#include "kernels/x86/w4a8_simd.h"
#include "kernels/x86/w8a8_prefill_simd.h"
#include "kernels/x86/vec_avx2.h"

namespace quanto::kernels::avx2 {

QUANTO_DEFINE_LINEAR_X86(Vec)

}  // namespace quanto::kernels::avx2
