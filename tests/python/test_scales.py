"""absmax_scale, minmax_scale_shift, shift_to_zeropoint: bit-exact against the docs/format.md
reference and against optimum-quanto's optimizers."""

import pytest
import reference as ref
import torch
from conftest import FLOAT_DTYPES, SHAPES, assert_bitwise_equal, random_tensor
from optimum.quanto.tensor.optimizers import AbsmaxOptimizer, MaxOptimizer

import quanto

ops = torch.ops.quanto


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("qtype", [quanto.qint8, quanto.qfloat8_e4m3fn, quanto.qfloat8_e5m2, quanto.qint4])
def test_absmax_scale_matches_reference(dtype, shape, axis, qtype):
    x = random_tensor(shape, dtype)
    got = ops.absmax_scale(x, qtype.name, axis)
    assert_bitwise_equal(got, ref.absmax_scale(x, qtype, axis))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(3, 33), (16, 64), (32, 257), (4, 6, 32)])
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("name", ["qint8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2"])
def test_absmax_scale_matches_optimum_quanto(dtype, shape, axis, name):
    x = random_tensor(shape, dtype)
    import optimum.quanto as oq

    assert_bitwise_equal(ops.absmax_scale(x, name, axis), AbsmaxOptimizer()(x, oq.qtypes[name], axis))


def test_absmax_scale_of_zeros_is_one():
    s = ops.absmax_scale(torch.zeros(4, 8), "qint8", 0)
    assert torch.equal(s, torch.ones(4, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("axis", [None, 0, -1])
def test_scales_reject_non_finite_input(bad, axis):
    x = torch.randn(4, 8)
    x[2, 3] = bad
    with pytest.raises(ValueError, match="absmax_scale: x contains NaN or inf"):
        ops.absmax_scale(x, "qint8", axis)
    if axis is not None:
        with pytest.raises(ValueError, match="minmax_scale_shift: x contains NaN or inf"):
            ops.minmax_scale_shift(x, "qint4", axis)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize(
    "shape,axis,group_size",
    [((16, 64), 0, None), ((16, 64), -1, None), ((32, 256), 0, 128), ((32, 256), 0, 64), ((64, 96), 0, 32),
     ((32, 64), -1, 16), ((48, 24), -1, 48), ((4, 6, 32), 0, 64), ((3, 33), 0, 11)],
)
@pytest.mark.parametrize("qtype", [quanto.qint2, quanto.qint4])
def test_minmax_matches_reference_and_optimum_quanto(dtype, shape, axis, group_size, qtype):
    x = random_tensor(shape, dtype)
    scale, shift = ops.minmax_scale_shift(x, qtype.name, axis, group_size)
    want_scale, want_shift = ref.minmax_scale_shift(x, qtype.bits, axis, group_size)
    assert_bitwise_equal(scale, want_scale)
    assert_bitwise_equal(shift, want_shift)
    import optimum.quanto as oq

    o_scale, o_shift = MaxOptimizer()(x, oq.qtypes[qtype.name], axis, group_size)
    assert_bitwise_equal(scale, o_scale)
    assert_bitwise_equal(shift, o_shift)
    o_scale, o_zp = MaxOptimizer()(x, oq.qtypes[qtype.name], axis, group_size, zeropoint=True)
    assert_bitwise_equal(ops.shift_to_zeropoint(scale, shift, qtype.name), o_zp)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_minmax_of_constant_groups_has_no_zero_scale(dtype):
    x = torch.cat([torch.full((2, 32), 0.37), torch.zeros(2, 32), torch.full((2, 32), -5.0)]).to(dtype)
    scale, shift = ops.minmax_scale_shift(x, "qint4", 0, 32)
    assert (scale > 0).all() and torch.isfinite(scale).all()
    codes = ops.affine_quantize(x, scale, shift, "qint4", 0, 32)
    y = ops.affine_dequantize(codes, scale, shift, list(x.shape), 0, 32)
    assert torch.equal(y, x)
    zp = ops.shift_to_zeropoint(scale, shift, "qint4")
    codes = ops.affine_quantize(x, scale, zp, "qint4", 0, 32)
    y = ops.affine_dequantize(codes, scale, zp, list(x.shape), 0, 32)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.float(), x.float(), rtol=1e-2, atol=0)


def test_minmax_range_overflow_in_float16_is_an_error():
    x = torch.tensor([[-60000.0, 60000.0]], dtype=torch.float16).repeat(2, 1)
    with pytest.raises(ValueError, match="overflows"):
        ops.minmax_scale_shift(x, "qint4", 0)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,axis,group_size", [((16, 64), 0, None), ((32, 256), 0, 128), ((64, 96), 0, 32),
                                                   ((32, 64), -1, 16), ((4, 6, 32), 0, 64)])
@pytest.mark.parametrize("qtype", [quanto.qint2, quanto.qint4])
def test_symmetric_scale_shift_is_an_exact_integer_zero_point(dtype, shape, axis, group_size, qtype):
    x = random_tensor(shape, dtype)
    scale, shift = ops.symmetric_scale_shift(x, qtype.name, axis, group_size)
    want_shape = ops.minmax_scale_shift(x, qtype.name, axis, group_size)[0].shape
    assert scale.shape == shift.shape == want_shape and scale.dtype == shift.dtype == dtype
    zero_point = 2 ** (qtype.bits - 1)
    grouped = ref.group(x, axis, group_size) if group_size is not None else x
    amax = grouped.abs().amax(dim=ref.reduce_dims(grouped.ndim, axis), keepdim=True).float()
    assert_bitwise_equal(scale, (amax / (zero_point - 0.5)).to(dtype).reshape(want_shape))
    assert torch.equal(shift, scale * zero_point)
    assert (ops.shift_to_zeropoint(scale, shift, qtype.name) == zero_point).all()
    # Symmetric: zero is exact, and no value is off by more than half a step (+amax is clamped there).
    # (with the integer zero-point it is stored as: a float shift adds in the weight's dtype first)
    zp = ops.shift_to_zeropoint(scale, shift, qtype.name)
    codes = ops.affine_quantize(x, scale, zp, qtype.name, axis, group_size)
    y = ops.affine_dequantize(codes, scale, zp, list(x.shape), axis, group_size)
    assert (y[x == 0] == 0).all()
    step = ops.affine_dequantize(torch.ones_like(codes), scale, torch.zeros_like(shift), list(x.shape), axis,
                                 group_size)
    # (bf16/fp16: plus the rounding of the dequantized value and of the quantizer's arithmetic)
    slack = x.float().abs() * torch.finfo(dtype).eps * 4 + 1e-6
    assert ((y.float() - x.float()).abs() <= step.float() * 0.5 * (1 + 1e-2) + slack).all()


def test_symmetric_scale_shift_refuses_8bit_and_non_finite():
    with pytest.raises(ValueError, match="qint8"):
        ops.symmetric_scale_shift(torch.randn(4, 32), "qint8", 0, None)
    with pytest.raises(ValueError, match="NaN or inf"):
        ops.symmetric_scale_shift(torch.tensor([[float("nan"), 1.0]]), "qint4", 0, None)
