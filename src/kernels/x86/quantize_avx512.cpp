// AVX-512 (F, BW, VL, DQ) instantiation of the SIMD quantization kernels.
#include "kernels/x86/quantize_simd.h"
#include "kernels/x86/vec_avx512.h"
#include "kernels/x86/quantize_x86.h"

namespace quanto::kernels::avx512 {

QUANTO_DEFINE_QUANTIZE_X86(Vec, float, f32)
QUANTO_DEFINE_QUANTIZE_X86(Vec, bf16, bf16)

}  // namespace quanto::kernels::avx512
