// AVX2 + FMA + F16C instantiation of the SIMD quantization kernels (built with those -m flags).
#include "kernels/x86/quantize_simd.h"
#include "kernels/x86/vec_avx2.h"
#include "kernels/x86/quantize_x86.h"

namespace quanto::kernels::avx2 {

QUANTO_DEFINE_QUANTIZE_X86(Vec, float, f32)
QUANTO_DEFINE_QUANTIZE_X86(Vec, bf16, bf16)

}  // namespace quanto::kernels::avx2
