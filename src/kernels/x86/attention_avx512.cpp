// AVX512 build of decode attention (kernels/ref/attention_impl.h): same arithmetic, its own vectors.
#include "kernels/ref/attention_impl.h"
#include "kernels/x86/attention_x86.h"
#include "kernels/x86/vec_avx512.h"

QUANTO_DEFINE_DECODE_ATTENTION(avx512)
