"""Reference matmuls: the reference for a quantized op is the float op on the dequantized
weight, so the test isolates kernel error from quantization error."""

import pytest
import reference as ref
import torch
import torch.nn.functional as F
from conftest import FLOAT_DTYPES, random_tensor

ops = torch.ops.quanto
TOL = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}
SHAPES = [(1, 1, 1), (3, 33, 1), (2, 257, 5), (4, 64, 16), (7, 128, 33)]  # (M, K, N)


def check_close(got, want, dtype):
    assert got.dtype == dtype and got.shape == want.shape
    torch.testing.assert_close(got.float(), want, rtol=TOL[dtype], atol=TOL[dtype] * want.abs().max().item())


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("wtype", ["qint8", "qfloat8_e4m3fn", "qfloat8_e5m2", "qfloat8_e4m3fnuz"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("per_tensor", [False, True])
def test_linear_qbytes(dtype, M, K, N, wtype, bias, per_tensor):
    x = random_tensor((M, K), dtype)
    w = random_tensor((N, K), torch.float32)
    scale = ops.absmax_scale(w, wtype, None if per_tensor else 0)
    data = ops.symmetric_quantize(w, scale, wtype, None if per_tensor else 0)
    b = random_tensor((N,), dtype) if bias else None
    got = ops.linear_qbytes(x, data, scale, b)
    want = F.linear(x.float(), ops.symmetric_dequantize(data, scale), None if b is None else b.float())
    check_close(got, want, dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M,K,N,group_size", [(1, 32, 1, 32), (3, 64, 5, 32), (2, 256, 33, 128), (4, 96, 7, 32)])
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("zeropoint", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_qbits(dtype, M, K, N, group_size, bits, zeropoint, bias):
    qtype = f"qint{bits}"
    x = random_tensor((M, K), dtype)
    w = random_tensor((N, K), torch.float32)
    scale, shift = ops.minmax_scale_shift(w, qtype, 0, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, qtype)
    codes = ops.affine_quantize(w, scale, shift, qtype, 0, group_size)
    packed = ops.pack_codes(codes, bits)
    b = random_tensor((N,), dtype) if bias else None
    got = ops.linear_qbits(x, packed, scale, shift, bits, group_size, b)
    w_deq = ref.affine_dequantize(codes, scale, shift, (N, K), 0, group_size)
    want = F.linear(x.float(), w_deq, None if b is None else b.float())
    check_close(got, want, dtype)


@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M,K,N", SHAPES)
@pytest.mark.parametrize("bias", [False, True])
def test_linear_w8a8_accumulates_in_int32(out_dtype, M, K, N, bias):
    x = random_tensor((M, K), torch.float32)
    w = random_tensor((N, K), torch.float32)
    x_scale = ops.absmax_scale(x, "qint8")
    w_scale = ops.absmax_scale(w, "qint8", 0)
    xq = ops.symmetric_quantize(x, x_scale, "qint8")
    wq = ops.symmetric_quantize(w, w_scale, "qint8", 0)
    b = random_tensor((N,), torch.float32) if bias else None
    got = ops.linear_w8a8(xq, x_scale, wq, w_scale, b, out_dtype)
    acc = xq.to(torch.int64) @ wq.to(torch.int64).T  # exact
    want = acc.double() * (x_scale.double() * w_scale.double().view(1, N))
    if b is not None:
        want = want + b.double()
    check_close(got, want.float(), out_dtype)


@pytest.mark.parametrize("M,K,N", [(1, 64, 8), (5, 257, 7), (17, 128, 33)])
def test_linear_w8a8_with_dynamic_per_token_scales(M, K, N):
    x = random_tensor((M, K), torch.float32)
    w = random_tensor((N, K), torch.float32)
    x_scale = ops.absmax_scale(x, "qint8", 0)  # one scale per row (token)
    w_scale = ops.absmax_scale(w, "qint8", 0)
    xq = ops.symmetric_quantize(x, x_scale, "qint8", 0)
    wq = ops.symmetric_quantize(w, w_scale, "qint8", 0)
    got = ops.linear_w8a8(xq, x_scale, wq, w_scale, None, torch.float32)
    acc = xq.to(torch.int64) @ wq.to(torch.int64).T
    want = (acc.double() * (x_scale.double() * w_scale.double().view(1, N))).float()
    check_close(got, want, torch.float32)


def test_linear_keeps_leading_dims():
    x = random_tensor((2, 3, 64), torch.float32)
    w = random_tensor((8, 64), torch.float32)
    s = ops.absmax_scale(w, "qint8", 0)
    y = ops.linear_qbytes(x, ops.symmetric_quantize(w, s, "qint8", 0), s)
    assert y.shape == (2, 3, 8)


def test_linear_shape_errors_name_the_argument():
    x = torch.randn(2, 64)
    w = torch.zeros(8, 32, dtype=torch.int8)
    with pytest.raises(ValueError, match="x has 64 features in its last dim but the weight has 32"):
        ops.linear_qbytes(x, w, torch.ones(8, 1))
    with pytest.raises(ValueError, match="w_scale must hold 1 value or one per output channel"):
        ops.linear_qbytes(torch.randn(2, 32), w, torch.ones(3, 1))
    with pytest.raises(ValueError, match="bias must have shape"):
        ops.linear_qbytes(torch.randn(2, 32), w, torch.ones(8, 1), torch.ones(7))
    with pytest.raises(TypeError, match="w_data must be int8 or a float8 dtype"):
        ops.linear_qbytes(torch.randn(2, 32), w.float(), torch.ones(8, 1))
    with pytest.raises(ValueError, match="group_size 48 does not divide in_features 64"):
        ops.linear_qbits(x, torch.zeros(1, 48, dtype=torch.uint8), torch.ones(4, 1), torch.ones(4, 1), 4, 48)


def quantize_w4(w, group_size, zeropoint=False):
    scale, shift = ops.minmax_scale_shift(w, "qint4", 0, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, "qint4")
    codes = ops.affine_quantize(w, scale, shift, "qint4", 0, group_size)
    return codes, ops.pack_codes(codes, 4), scale, shift


@pytest.mark.parametrize("N,K,group_size", [(1, 32, 32), (7, 64, 32), (16, 256, 128), (33, 384, 128), (5, 192, 64)])
def test_tiled_layout_round_trips_to_the_canonical_bytes(N, K, group_size):
    w = random_tensor((N, K), torch.float32)
    _, packed, _, _ = quantize_w4(w, group_size)
    tiled = ops.tile_qbits(packed, 4, N, K, group_size)
    assert tiled.shape == (N, K // 2) and tiled.dtype == torch.uint8
    assert torch.equal(ops.untile_qbits(tiled, 4, N, K, group_size), packed)


# (300, 576, 32): rows split between threads (each converts and computes its own range).
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M", [1, 3, 4, 17])
@pytest.mark.parametrize("N,K,group_size", [(1, 32, 32), (7, 64, 32), (16, 256, 128), (33, 384, 128), (300, 576, 32)])
@pytest.mark.parametrize("zeropoint", [False, True])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("params_in_model_dtype", [False, True])
def test_linear_qbits_tiled(dtype, M, N, K, group_size, zeropoint, bias, params_in_model_dtype):
    x = random_tensor((M, K), dtype)
    w = random_tensor((N, K), torch.float32)
    codes, packed, scale, shift = quantize_w4(w, group_size, zeropoint)
    if params_in_model_dtype:  # as a bf16/fp16 model holds them (a zero-point stays uint8)
        scale = scale.to(dtype)
        shift = shift if zeropoint else shift.to(dtype)
    tiled = ops.tile_qbits(packed, 4, N, K, group_size)
    b = random_tensor((N,), dtype) if bias else None
    got = ops.linear_qbits_tiled(x, tiled, scale, shift, 4, group_size, b)
    w_deq = ref.affine_dequantize(codes, scale.float(), shift if zeropoint else shift.float(), (N, K), 0, group_size)
    check_close(got, F.linear(x.float(), w_deq, None if b is None else b.float()), dtype)


@pytest.mark.parametrize("M", [1, 5, 17])
def test_linear_qbytes_int8_fast_path_on_leading_dims(M):
    x = random_tensor((2, M, 96), torch.bfloat16)
    w = random_tensor((40, 96), torch.float32)
    s = ops.absmax_scale(w, "qint8", 0)
    q = ops.symmetric_quantize(w, s, "qint8", 0)
    got = ops.linear_qbytes(x, q, s)
    check_close(got, F.linear(x.float(), ops.symmetric_dequantize(q, s)), torch.bfloat16)


def test_tiled_errors_name_the_problem():
    packed = torch.zeros(8, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="tiled layout needs group_size to be a multiple of 32, got 48"):
        ops.tile_qbits(packed, 4, 4, 96, 48)
    with pytest.raises(ValueError, match="tiled layout needs group_size to be a multiple of 64, got 32"):
        ops.tile_qbits(packed, 2, 4, 64, 32)
    with pytest.raises(ValueError, match=r"packed must have shape \[4, 32\]"):
        ops.tile_qbits(packed, 4, 4, 64, 32)
    with pytest.raises(ValueError, match="one value per group"):
        ops.linear_qbits_tiled(torch.randn(1, 64), torch.zeros(4, 32, dtype=torch.uint8), torch.ones(3, 1),
                               torch.ones(3, 1), 4, 32)
