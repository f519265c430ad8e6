"""symmetric/affine quantize and dequantize: bit-exact against the docs/format.md reference and
against optimum-quanto 0.2.7's own ops, on several shapes and dtypes."""

import optimum.quanto as oq
import pytest
import reference as ref
import torch
from conftest import FLOAT_DTYPES, SHAPES, assert_bitwise_equal, random_tensor
from optimum.quanto.tensor.weights.quantization import quantize_weight

import quanto

ops = torch.ops.quanto
SYMMETRIC = [quanto.qint8, quanto.qfloat8_e4m3fn, quanto.qfloat8_e4m3fnuz, quanto.qfloat8_e5m2]


def optimum_quantize_symmetric(x, qtype, axis, scale):
    # optimum-quanto's op of the same purpose, registered in the same namespace by its import.
    return torch.ops.quanto.quantize_symmetric(x, dtype=qtype.dtype, axis=axis, scale=scale)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("qtype", SYMMETRIC + [quanto.qint4, quanto.qint2])
def test_symmetric_quantize_matches_reference(dtype, shape, axis, qtype):
    x = random_tensor(shape, dtype)
    scale = ref.absmax_scale(x, qtype, axis) * 0.7  # some values saturate
    got = ops.symmetric_quantize(x, scale, qtype.name, axis)
    assert_bitwise_equal(got, ref.symmetric_quantize(x, scale, qtype))
    assert_bitwise_equal(ops.symmetric_dequantize(got, scale), ref.symmetric_dequantize(got, scale))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(3, 33), (16, 64), (32, 257), (4, 6, 32)])
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("qtype", SYMMETRIC)
def test_symmetric_quantize_matches_optimum_quanto(dtype, shape, axis, qtype):
    x = random_tensor(shape, dtype)
    scale = ops.absmax_scale(x, qtype.name, axis)
    got = ops.symmetric_quantize(x, scale, qtype.name, axis)
    assert_bitwise_equal(got, optimum_quantize_symmetric(x, qtype, axis, scale))
    if axis is not None:
        # optimum-quanto's weight tensor dequantizes with its own code path.
        wq = quantize_weight(x, oq.qtypes[qtype.name], axis, scale, optimized=False)
        assert_bitwise_equal(ops.symmetric_dequantize(got, scale), wq.dequantize())


def test_symmetric_quantize_with_a_float32_activation_scale_uses_the_input_dtype():
    # A 0-dim float32 scale with bfloat16 input computes in bfloat16, as PyTorch does.
    x = random_tensor((8, 64), torch.bfloat16)
    scale = torch.tensor(0.0123, dtype=torch.float32)
    got = ops.symmetric_quantize(x, scale, "qint8")
    assert_bitwise_equal(got, ref.symmetric_quantize(x, scale, quanto.qint8))


@pytest.mark.parametrize("src", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("qtype", [quanto.qfloat8_e4m3fn, quanto.qfloat8_e4m3fnuz, quanto.qfloat8_e5m2])
def test_float8_rounding_matches_torch_on_every_16_bit_value(src, qtype):
    x = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16).view(src).reshape(256, 256)
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    one = torch.tensor(1.0, dtype=src)
    got = ops.symmetric_quantize(x, one, qtype.name)
    assert_bitwise_equal(got, torch.clamp(x, qtype.qmin, qtype.qmax).to(qtype.dtype))


@pytest.mark.parametrize("qtype", SYMMETRIC)
def test_saturation_and_nan_policy(qtype):
    x = torch.tensor([[1e30, -1e30, float("inf"), -float("inf"), float("nan"), 0.0, 2.5, -3.5]])
    got = ops.symmetric_quantize(x, torch.tensor(1.0), qtype.name).float()
    assert got[0, :4].tolist() == [qtype.qmax, qtype.qmin, qtype.qmax, qtype.qmin]
    if qtype.is_floating_point:
        assert torch.isnan(got[0, 4])
    else:
        assert got[0, 4] == 0  # NaN quantizes like 0 for integer codes
        assert got[0, 6:].tolist() == [2.0, -4.0]  # ties to even


def test_zero_scale_quantizes_to_zero():
    x = torch.randn(4, 8)
    scale = torch.ones(4, 1)
    scale[1] = 0
    q = ops.symmetric_quantize(x, scale, "qint8", 0)
    assert (q[1] == 0).all()


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "shape,axis,group_size",
    [((16, 64), 0, None), ((16, 64), -1, None), ((32, 256), 0, 128), ((64, 96), 0, 32), ((32, 64), -1, 16),
     ((4, 6, 32), 0, 64), ((3, 33), 0, 11), ((384, 1536), 0, 128)],
)
@pytest.mark.parametrize("qtype", [quanto.qint2, quanto.qint4])
@pytest.mark.parametrize("zeropoint", [False, True])
def test_affine_quantize_matches_reference_and_optimum_quanto(dtype, shape, axis, group_size, qtype, zeropoint):
    x = random_tensor(shape, dtype)
    scale, shift = ops.minmax_scale_shift(x, qtype.name, axis, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, qtype.name)
    codes = ops.affine_quantize(x, scale, shift, qtype.name, axis, group_size)
    assert_bitwise_equal(codes, ref.affine_quantize(x, scale, shift, qtype.bits, axis, group_size))
    theirs = torch.ops.quanto.quantize_affine(x, qtype.bits, axis, group_size, scale, shift)
    assert_bitwise_equal(codes, theirs)
    y = ops.affine_dequantize(codes, scale, shift, list(shape), axis, group_size)
    assert_bitwise_equal(y, ref.affine_dequantize(codes, scale, shift, shape, axis, group_size))
    if x.ndim == 2:
        wq = quantize_weight(x, oq.qtypes[qtype.name], axis, scale, shift, group_size, optimized=False)
        assert_bitwise_equal(y, wq.dequantize())


@pytest.mark.parametrize("qtype", [quanto.qint2, quanto.qint4])
def test_affine_quantization_error_is_bounded_by_half_a_step(qtype):
    x = random_tensor((64, 256), torch.float32)
    scale, shift = ops.minmax_scale_shift(x, qtype.name, 0, 64)
    y = ops.affine_dequantize(ops.affine_quantize(x, scale, shift, qtype.name, 0, 64), scale, shift, [64, 256], 0, 64)
    err = (y - x).reshape(-1, 64).abs().amax(dim=1, keepdim=True)
    assert (err <= scale * 0.5 + 1e-6).all()
