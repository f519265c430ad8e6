// Building blocks of the device-generic ops: the reference kernels' rounding policies
// (kernels/ref/quantize_ref.h) written as tensor ops, so any backend reproduces them bit for bit.
#pragma once

#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/Tensor.h>

#include <utility>

namespace quanto::ops::generic {

// The ops have no autograd formula, like the CPU kernels that write raw memory: the ATen ops a
// generic implementation is made of must not record history when an input requires grad.
using NonDifferentiable = at::AutoDispatchBelowADInplaceOrView;

// Raises a TypeError naming the op, device and dtype where the backend cannot hold `dtype`.
void check_device_dtype(const char* op, const at::Device& device, c10::ScalarType dtype);

// float64 where the device has it (the CPU kernels' double formulas), else float32 (MPS).
c10::ScalarType wide_float(const at::Device& device);

// v (float32) rounded to dtype's precision, as float32: one PyTorch op that returns `dtype`.
at::Tensor round_to(const at::Tensor& v, c10::ScalarType dtype);

// a / b with b a value held on a's device: CUDA turns a division by a host scalar into a
// multiplication by its reciprocal, which can round differently.
at::Tensor div_exact(const at::Tensor& a, double b);

// round_T(num / scale), and 0 where scale == 0 (num, scale float32; scale broadcasts).
at::Tensor quotient(const at::Tensor& num, const at::Tensor& scale, c10::ScalarType dtype);

// NaN -> 0, round half to even, clamp to [lo, hi]: the integer codes' policy.
at::Tensor round_clamp(const at::Tensor& v, double lo, double hi);

// Min/max affine parameters in dtype from float32 minima and maxima (minmax_to_scale_shift_ref).
std::pair<at::Tensor, at::Tensor> minmax_params(const at::Tensor& mn, const at::Tensor& mx, int64_t code_max,
                                                c10::ScalarType dtype);

// Bytes from the 8 / bits code planes along `dim` (plane j at bits [bits * j, bits * (j + 1))),
// dropping that dim; codes are uint8 below 2^bits.
at::Tensor pack_planes(const at::Tensor& codes, int64_t dim, int64_t bits);
// The inverse: the planes of `bytes` stacked along a new dim `dim`.
at::Tensor unpack_planes(const at::Tensor& bytes, int64_t dim, int64_t bits);

// An output that never aliases an input: a contiguous copy unless t is already a fresh tensor.
at::Tensor fresh_contiguous(const at::Tensor& t, const at::Tensor& input);

}  // namespace quanto::ops::generic
