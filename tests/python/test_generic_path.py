"""The device-generic implementations (registered for CompositeExplicitAutograd: what CUDA, MPS,
XPU… run) against the CPU kernels, with quanto::force_generic_path sending CPU tensors through
them: bit for bit where the math is exact (scales, quantization, packing and tiling, W8A8 integer
sums), within float rounding for the float matmuls and HQQ, GPTQ by reconstruction error; opcheck
on the generic path; a tiny random Llama's logits. Where CUDA is available the same comparisons
also run on "cuda" (whatever kernels that device has) against the CPU kernels."""

import contextlib
import copy
import os
import subprocess
import sys

import pytest
import torch
from conftest import FLOAT_DTYPES, assert_bitwise_equal, random_tensor

import quanto

ops = torch.ops.quanto

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]
ALL_QTYPES = ["qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fnuz", "qfloat8_e5m2"]
# Relative size of one unit in the last place of each output dtype (at the bottom of a binade).
ULP = {torch.float32: 2.0 ** -23, torch.bfloat16: 2.0 ** -7, torch.float16: 2.0 ** -10}


@contextlib.contextmanager
def generic_path(enabled=True):
    previous = ops.force_generic_path(enabled)
    try:
        yield
    finally:
        ops.force_generic_path(previous)


@pytest.fixture(autouse=True)
def _cpu_kernels_by_default():
    # Every test starts from the CPU kernels, whatever QUANTO_FORCE_GENERIC said at load.
    with generic_path(False):
        yield


def moved(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (tuple, list)):
        return type(value)(moved(v, device) for v in value)
    return value


def both_paths(op, *args, device="cpu"):
    """(CPU kernels' result, generic result). On "cpu" the switch selects the generic path; on
    another device the op runs there and its result comes back to the CPU."""
    want = op(*args)
    if device == "cpu":
        with generic_path():
            got = op(*args)
    else:
        got = moved(op(*moved(args, device)), "cpu")
    return want, got


def assert_same(want, got):
    """Bit for bit, except that a NaN need only be a NaN: ATen's dtype conversions do not keep a
    NaN's sign or payload (and differ between backends), the reference kernels do."""
    if isinstance(want, (tuple, list)):
        assert len(want) == len(got)
        for w, g in zip(want, got):
            assert_same(w, g)
        return
    if want.dtype.is_floating_point:
        nan = want.float().isnan()
        assert torch.equal(nan, got.float().isnan()), "NaN in different places"
        if nan.any():
            bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32}[want.element_size()]
            want, got = want.view(bits).clone(), got.view(bits).clone()
            want[nan] = got[nan] = 0
    assert_bitwise_equal(got, want)


def assert_same_error(fn):
    """Both paths reject the input with the same exception type and message."""
    with pytest.raises(Exception) as cpu:
        fn()
    with generic_path(), pytest.raises(Exception) as generic:
        fn()
    assert type(generic.value) is type(cpu.value)
    assert str(generic.value).splitlines()[0] == str(cpu.value).splitlines()[0]


def assert_close_sums(got, want, terms, count, extra=None, weight_ulp=0.0):
    """got and want are float32 sums of `count` terms (`terms` their sum of magnitudes) taken in
    different orders, then rounded once to their dtype. weight_ulp: a relative rounding of each
    weight on one side (the CPU's bf16 kernels decode 2/4-bit weights to bf16)."""
    assert got.dtype == want.dtype and got.shape == want.shape
    bound = terms.float() + (0 if extra is None else extra.float().abs())
    tol = (4 * count * 2.0 ** -24 + weight_ulp) * bound + ULP[want.dtype] * want.float().abs() + 2.0 ** -24
    diff = (got.float() - want.float()).abs()
    bad = diff > tol
    assert not bad.any(), f"{int(bad.sum())} of {got.numel()} outside rounding, worst {(diff - tol).max().item()}"


# ---------------------------------------------------------------- the switch itself


def test_switch_returns_the_previous_value():
    assert ops.force_generic_path(True) is False
    assert ops.force_generic_path(True) is True
    assert ops.force_generic_path(False) is True
    assert ops.force_generic_path(False) is False


def test_switch_selects_the_generic_implementation():
    # The CPU kernel packs in C++; the generic one is made of ATen ops, which the profiler sees.
    codes = torch.randint(0, 16, (33, 8), dtype=torch.uint8)

    def aten_ops():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            ops.pack_codes(codes, 4)
        return {e.name for e in prof.events()}

    assert "aten::bitwise_left_shift" not in aten_ops()
    with generic_path():
        assert "aten::bitwise_left_shift" in aten_ops()


@pytest.mark.parametrize("value,forced", [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)])
def test_environment_variable_sets_the_initial_value(value, forced):
    code = "import torch, quanto; print(torch.ops.quanto.force_generic_path(False))"
    env = dict(os.environ, QUANTO_FORCE_GENERIC=value)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(forced)


# ---------------------------------------------------------------- scales

SCALE_SHAPES = [(1, 1), (3, 33), (16, 64), (4, 6, 32)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SCALE_SHAPES)
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("qtype", ALL_QTYPES)
def test_absmax_scale(device, dtype, shape, axis, qtype):
    if axis is not None and len(shape) < 2:
        pytest.skip("per-axis needs 2 dims")
    x = random_tensor(shape, dtype)
    x[0] = 0  # a zero row: its scale falls back to 1 along axis 0
    assert_same(*both_paths(ops.absmax_scale, x, qtype, axis, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,axis,group_size", [((1, 1), 0, None), ((3, 33), 0, None), ((3, 33), -1, None),
                                                   ((3, 33), 0, 11), ((16, 64), 0, 32), ((16, 64), -1, 8),
                                                   ((4, 6, 32), -1, 4), ((4, 6, 32), 0, 16)])
@pytest.mark.parametrize("qtype", ["qint2", "qint4"])
def test_minmax_scale_shift_and_zeropoint(device, dtype, shape, axis, group_size, qtype):
    x = random_tensor(shape, dtype)
    x.view(-1)[: min(x.numel(), 32)] = 0.5  # constant groups take the fallback scale
    want, got = both_paths(ops.minmax_scale_shift, x, qtype, axis, group_size, device=device)
    assert_same(want, got)
    assert_same(*both_paths(ops.shift_to_zeropoint, *want, qtype, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scale_dtype,shift_dtype", [(torch.float32, torch.bfloat16), (torch.float16, torch.float16),
                                                     (torch.bfloat16, torch.float32)])
def test_shift_to_zeropoint_with_mixed_dtypes_zero_and_out_of_range_scales(device, scale_dtype, shift_dtype):
    scale = (torch.rand(64, 1) * 0.1).to(scale_dtype)
    shift = (torch.randn(64, 1) * 2).to(shift_dtype)
    scale[:4] = 0  # the documented policy: zero-point 0
    shift[4:8] = -5  # clamped to 0
    shift[8:12] = 100  # clamped to the code range
    assert_same(*both_paths(ops.shift_to_zeropoint, scale, shift, "qint4", device=device))


def test_scale_errors_are_the_same_on_both_paths():
    x = torch.randn(4, 8)
    x[1, 2] = float("nan")
    assert_same_error(lambda: ops.absmax_scale(x, "qint8", 0))
    assert_same_error(lambda: ops.minmax_scale_shift(x, "qint4", 0, None))
    wide = torch.tensor([[-60000.0, 60000.0]], dtype=torch.float16)
    assert_same_error(lambda: ops.minmax_scale_shift(wide, "qint4", 0, None))
    assert_same_error(lambda: ops.absmax_scale(torch.randn(4, 8), "qint3", 0))
    assert_same_error(lambda: ops.minmax_scale_shift(torch.randn(4, 8), "qint4", 0, 3))


# ---------------------------------------------------------------- quantize / dequantize


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", SCALE_SHAPES)
@pytest.mark.parametrize("axis", [None, 0, -1])
@pytest.mark.parametrize("qtype", ALL_QTYPES)
def test_symmetric_quantize_and_dequantize(device, dtype, shape, axis, qtype):
    x = random_tensor(shape, dtype)
    scale = ops.absmax_scale(x, qtype, axis)
    data = both_paths(ops.symmetric_quantize, x, scale, qtype, axis, device=device)
    assert_same(*data)
    assert_same(*both_paths(ops.symmetric_dequantize, data[0], scale, device=device))


# The CPU kernel's one pass per token against the generic absmax_scale + symmetric_quantize: one
# token (a decode step), tokens split between threads, an all-zero token (scale 1), 3-d input.
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape", [(1, 576), (1, 1, 7), (300, 384), (2, 5, 64)])
@pytest.mark.parametrize("qtype", ["qint8", "qfloat8"])
def test_quantize_per_token(device, dtype, shape, qtype):
    x = random_tensor(shape, dtype, scale=20.0)
    x.view(-1, shape[-1])[-1] = 0
    want, got = both_paths(ops.quantize_per_token, x, qtype, device=device)
    assert_same(want, got)
    assert want[0].shape == x.shape and want[1].shape == (*shape[:-1], 1) and want[1].dtype == dtype


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x_dtype,scale_dtype", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                                 (torch.float32, torch.bfloat16), (torch.float16, torch.bfloat16)])
@pytest.mark.parametrize("scale_shape", [(), (1, 1), (8, 1), (1, 40)])
@pytest.mark.parametrize("qtype", ALL_QTYPES)
def test_symmetric_quantize_with_mixed_dtypes_and_special_values(device, x_dtype, scale_dtype, scale_shape, qtype):
    x = random_tensor((8, 40), x_dtype, scale=40.0)
    x[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0])
    scale = (torch.rand(scale_shape) + 0.05).to(scale_dtype)
    if scale.numel() > 1:
        scale.view(-1)[1] = 0  # quantizes to 0
    axis = None if scale.numel() == 1 else (0 if scale_shape[0] > 1 else -1)
    data = both_paths(ops.symmetric_quantize, x, scale, qtype, axis, device=device)
    assert_same(*data)
    assert_same(*both_paths(ops.symmetric_dequantize, data[0], scale, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,axis,group_size", [((1, 1), 0, None), ((3, 33), 0, None), ((3, 33), -1, None),
                                                   ((3, 33), 0, 11), ((16, 64), 0, 32), ((16, 64), -1, 8),
                                                   ((4, 6, 32), -1, 4), ((4, 6, 32), 0, 16), ((7, 96), 0, 96)])
@pytest.mark.parametrize("qtype", ["qint2", "qint4"])
@pytest.mark.parametrize("zeropoint", [False, True])
def test_affine_quantize_and_dequantize(device, dtype, shape, axis, group_size, qtype, zeropoint):
    x = random_tensor(shape, dtype)
    scale, shift = ops.minmax_scale_shift(x, qtype, axis, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, qtype)
    codes = both_paths(ops.affine_quantize, x, scale, shift, qtype, axis, group_size, device=device)
    assert_same(*codes)
    assert_same(*both_paths(ops.affine_dequantize, codes[0], scale, shift, list(shape), axis, group_size,
                            device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("x_dtype,param_dtype", [(torch.bfloat16, torch.float32), (torch.float32, torch.float16),
                                                 (torch.float16, torch.bfloat16)])
@pytest.mark.parametrize("zeropoint", [False, True])
def test_affine_quantize_with_mixed_dtypes_and_special_values(device, x_dtype, param_dtype, zeropoint):
    x = random_tensor((8, 64), x_dtype, scale=5.0)
    x[0, :3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    scale = (torch.rand(16, 1) * 0.3).to(param_dtype)
    scale[3] = 0  # every code of the group is the code of 0
    shift = torch.randint(0, 16, (16, 1), dtype=torch.uint8) if zeropoint else torch.randn(16, 1).to(param_dtype)
    codes = both_paths(ops.affine_quantize, x, scale, shift, "qint4", 0, 32, device=device)
    assert_same(*codes)
    assert_same(*both_paths(ops.affine_dequantize, codes[0], scale, shift, [8, 64], 0, 32, device=device))


def test_quantize_errors_are_the_same_on_both_paths():
    x = torch.randn(4, 8)
    assert_same_error(lambda: ops.symmetric_quantize(x, torch.ones(3, 1), "qint8", 0))
    assert_same_error(lambda: ops.symmetric_dequantize(torch.zeros(4, 8, dtype=torch.int32), torch.ones(())))
    assert_same_error(lambda: ops.affine_quantize(x, torch.ones(4, 1), torch.ones(3, 1), "qint4", 0, None))
    assert_same_error(lambda: ops.affine_dequantize(torch.zeros(4, 8, dtype=torch.uint8), torch.ones(4, 1),
                                                    torch.ones(4, 1), [4, 9], 0, None))


# ---------------------------------------------------------------- packing and the tiled layout


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("shape", [(1,), (1, 1), (3, 5), (4, 7), (33, 9), (64, 1), (5, 3, 2)])
def test_pack_and_unpack_codes(device, bits, shape):
    codes = torch.randint(0, 2 ** bits, shape, dtype=torch.uint8)
    packed = both_paths(ops.pack_codes, codes, bits, device=device)
    assert_same(*packed)
    assert_same(*both_paths(ops.unpack_codes, packed[0], bits, shape[0], device=device))


def test_pack_codes_rejects_codes_that_do_not_fit_on_both_paths():
    assert_same_error(lambda: ops.pack_codes(torch.tensor([[3, 16]], dtype=torch.uint8), 4))
    assert_same_error(lambda: ops.unpack_codes(torch.zeros(2, 3, dtype=torch.uint8), 4, 7))


TILED = [(4, 1, 32, 32), (4, 7, 64, 32), (4, 16, 256, 128), (4, 33, 384, 128), (4, 5, 192, 64),
         (2, 1, 64, 64), (2, 9, 128, 64), (2, 17, 384, 128), (2, 3, 192, 192)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bits,N,K,group_size", TILED)
def test_tile_and_untile(device, bits, N, K, group_size):
    codes = torch.randint(0, 2 ** bits, (N * K // group_size, group_size), dtype=torch.uint8)
    packed = ops.pack_codes(codes, bits)
    tiled = both_paths(ops.tile_qbits, packed, bits, N, K, group_size, device=device)
    assert_same(*tiled)
    assert_same(*both_paths(ops.untile_qbits, tiled[0], bits, N, K, group_size, device=device))


# ---------------------------------------------------------------- linears

LINEAR_SHAPES = [((1, 33), 1), ((3, 33), 5), ((4, 64), 16), ((2, 3, 96), 7), ((17, 128), 33), ((64,), 8)]


def magnitude(x, w_deq):
    """The sum of |x_k * w_nk| of each output: the size of a float sum's rounding."""
    return x.float().abs() @ w_deq.float().abs().t()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("x_shape,N", LINEAR_SHAPES)
@pytest.mark.parametrize("wtype", ["qint8", "qfloat8", "qfloat8_e4m3fnuz", "qfloat8_e5m2"])
@pytest.mark.parametrize("per_tensor", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_qbytes(device, dtype, x_shape, N, wtype, per_tensor, bias):
    K = x_shape[-1]
    x = random_tensor(x_shape, dtype)
    w = random_tensor((N, K), torch.float32)
    scale = ops.absmax_scale(w, wtype, None if per_tensor else 0)
    data = ops.symmetric_quantize(w, scale, wtype, None if per_tensor else 0)
    b = random_tensor((N,), dtype) if bias else None
    want, got = both_paths(ops.linear_qbytes, x, data, scale, b, device=device)
    assert_close_sums(got, want, magnitude(x, ops.symmetric_dequantize(data, scale).float()), K, b)


# With bf16 activations the CPU's avx512_bf16 kernels multiply 2/4-bit weights decoded to bf16.
BF16_WEIGHTS = {torch.float32: 0.0, torch.bfloat16: 2.0 ** -8, torch.float16: 0.0}


def qbits_weight(N, K, bits, group_size, zeropoint):
    """(packed codes, scale, shift, |code * scale| + |shift| per weight): the CPU may sum the
    code and shift terms of a group apart (the bf16 kernels do), so both bound the rounding."""
    qtype = f"qint{bits}"
    w = random_tensor((N, K), torch.float32)
    scale, shift = ops.minmax_scale_shift(w, qtype, 0, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, qtype)
    codes = ops.affine_quantize(w, scale, shift, qtype, 0, group_size)
    s = scale.float().reshape(-1, 1)
    h = shift.float().reshape(-1, 1) * (s if zeropoint else 1)
    terms = (codes.float().reshape(-1, group_size) * s).abs() + h.abs()
    return ops.pack_codes(codes, bits), scale, shift, terms.reshape(N, K)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("x_shape,N,group_size", [((1, 32), 1, 32), ((3, 33), 5, 33), ((2, 3, 96), 7, 32),
                                                  ((17, 256), 33, 128), ((64,), 3, 64)])
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("zeropoint", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_qbits(device, dtype, x_shape, N, group_size, bits, zeropoint, bias):
    K = x_shape[-1]
    x = random_tensor(x_shape, dtype)
    packed, scale, shift, w_terms = qbits_weight(N, K, bits, group_size, zeropoint)
    b = random_tensor((N,), dtype) if bias else None
    want, got = both_paths(ops.linear_qbits, x, packed, scale, shift, bits, group_size, b, device=device)
    assert_close_sums(got, want, magnitude(x, w_terms), K, b, BF16_WEIGHTS[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M", [(1,), (3,), (17,), (2, 3)])
@pytest.mark.parametrize("bits,N,K,group_size", TILED)
@pytest.mark.parametrize("zeropoint", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_qbits_tiled(device, dtype, M, bits, N, K, group_size, zeropoint, bias):
    x = random_tensor((*M, K), dtype)
    packed, scale, shift, w_terms = qbits_weight(N, K, bits, group_size, zeropoint)
    tiled = ops.tile_qbits(packed, bits, N, K, group_size)
    b = random_tensor((N,), dtype) if bias else None
    want, got = both_paths(ops.linear_qbits_tiled, x, tiled, scale, shift, bits, group_size, b, device=device)
    assert_close_sums(got, want, magnitude(x, w_terms), K, b, BF16_WEIGHTS[dtype])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M", [(1,), (5,), (2, 40)])
@pytest.mark.parametrize("bits", [4, 2])
def test_linear_qbits_tiled_infinite_activations_follow_the_reference(dtype, M, bits):
    """An infinite activation gives what the dequantized weights' product gives (+-inf, NaN where
    a weight is 0): the fused kernels' split of each group into a code and a shift term would make
    inf - inf of every output, so such calls take the generic path; the cat op too."""
    N, K, group_size = 48, 128, 64
    x = random_tensor((*M, K), dtype)
    x[..., 5] = float("inf")
    packed, scale, shift, _ = qbits_weight(N, K, bits, group_size, False)
    tiled = ops.tile_qbits(packed, bits, N, K, group_size)
    want, got = both_paths(ops.linear_qbits_tiled, x, tiled, scale, shift, bits, group_size, None)
    assert_same(want, got)
    assert got.isinf().any() and (got == float("-inf")).any()  # not all NaN: the reference's signs
    cat = ops.linear_qbits_tiled_cat(x, [tiled, tiled], [scale, scale], [shift, shift], bits, group_size, [])
    assert_same(torch.cat([want, want], -1), cat)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M", [(1,), (3,), (17,), (2, 3)])
@pytest.mark.parametrize("N,K,group_size", [(1, 32, 32), (7, 96, 32), (33, 256, 128), (5, 256, 256)])
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("zeropoint", [False, True])
def test_linear_w4a8_tiled(device, out_dtype, M, N, K, group_size, per_token, zeropoint):
    x = random_tensor((*M, K), torch.float32).reshape(-1, K)
    x_scale = ops.absmax_scale(x, "qint8", 0 if per_token else None)
    xq = ops.symmetric_quantize(x, x_scale, "qint8", 0 if per_token else None)
    packed, scale, shift, w_terms = qbits_weight(N, K, 4, group_size, zeropoint)
    tiled = ops.tile_qbits(packed, 4, N, K, group_size)
    b = random_tensor((N,), torch.float32) if zeropoint else None
    want, got = both_paths(ops.linear_w4a8_tiled, xq.reshape(*M, K), x_scale, tiled, scale, shift, group_size, b,
                           out_dtype, device=device)
    terms = magnitude(xq.float() * x_scale.float(), w_terms).reshape(*M, N)
    assert_close_sums(got, want, terms, K, b)


def int8_operands(x_shape, N, per_token):
    K = x_shape[-1]
    x = random_tensor(x_shape, torch.float32)
    w = random_tensor((N, K), torch.float32)
    x_scale = ops.absmax_scale(x.reshape(-1, K), "qint8", 0 if per_token else None)
    xq = ops.symmetric_quantize(x.reshape(-1, K), x_scale, "qint8", 0 if per_token else None).reshape(x_shape)
    w_scale = ops.absmax_scale(w, "qint8", 0)
    return xq, x_scale, ops.symmetric_quantize(w, w_scale, "qint8", 0), w_scale


# (x shape, N): _int_mm's shapes (M > 16, K and N multiples of 8) and the exact float fallback,
# including K beyond one float32-exact chunk of 1024 products.
W8A8_SHAPES = [((1, 33), 1), ((3, 64), 8), ((17, 64), 16), ((32, 40), 24), ((2, 9, 128), 33), ((18, 16), 9),
               ((5, 2100), 6), ((20, 2056), 8)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("x_shape,N", W8A8_SHAPES)
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_w8a8_is_exact(device, out_dtype, x_shape, N, per_token, bias):
    xq, x_scale, wq, w_scale = int8_operands(x_shape, N, per_token)
    b = random_tensor((N,), torch.bfloat16) if bias else None
    assert_same(*both_paths(ops.linear_w8a8, xq, x_scale, wq, w_scale, b, out_dtype, device=device))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("M,K,N", [(1, 2048, 3), (2, 3001, 5), (17, 4096, 8)])
def test_linear_w8a8_extreme_sums_are_exact(device, M, K, N):
    # Odd products of 127 * 127 sum far beyond 2^24, where float32 no longer holds every integer.
    xq = torch.full((M, K), 127, dtype=torch.int8)
    wq = torch.full((N, K), 127, dtype=torch.int8)
    wq[0, ::2] = -128
    wq[-1, ::3] = -127
    want, got = both_paths(ops.linear_w8a8, xq, torch.ones(()), wq, torch.ones(N, 1), None, torch.float32,
                           device=device)
    assert_same(want, got)
    exact = (xq.long() @ wq.long().t()).float()
    assert torch.equal(got, exact)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("N", [1, 63, 64, 65, 130])
@pytest.mark.parametrize("K", [1, 3, 4, 33, 257])
def test_pack_and_unpack_w8a8(device, N, K):
    w = torch.randint(-128, 128, (N, K), dtype=torch.int8)
    packed = both_paths(ops.pack_w8a8, w, device=device)
    assert_same(*packed)
    unpacked = both_paths(ops.unpack_w8a8, packed[0], N, K, device=device)
    assert_same(*unpacked)
    assert torch.equal(unpacked[1], w)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("x_shape,N", W8A8_SHAPES)
@pytest.mark.parametrize("per_token", [False, True])
@pytest.mark.parametrize("bias", [False, True])
def test_linear_w8a8_packed_is_exact(device, out_dtype, x_shape, N, per_token, bias):
    xq, x_scale, wq, w_scale = int8_operands(x_shape, N, per_token)
    b = random_tensor((N,), torch.float32) if bias else None
    packed = ops.pack_w8a8(wq)
    want, got = both_paths(ops.linear_w8a8_packed, xq, x_scale, packed, w_scale, N, b, out_dtype, device=device)
    assert_same(want, got)
    assert_same(want, ops.linear_w8a8(xq, x_scale, wq, w_scale, b, out_dtype))


def test_linear_errors_are_the_same_on_both_paths():
    x = torch.randn(2, 64)
    w = torch.zeros(8, 32, dtype=torch.int8)
    assert_same_error(lambda: ops.linear_qbytes(x, w, torch.ones(8, 1)))
    assert_same_error(lambda: ops.linear_qbits(x, torch.zeros(1, 48, dtype=torch.uint8), torch.ones(4, 1),
                                               torch.ones(4, 1), 4, 48))
    assert_same_error(lambda: ops.linear_w8a8(torch.zeros(2, 32, dtype=torch.int8), torch.ones(3), w,
                                              torch.ones(8, 1), None, torch.float32))
    assert_same_error(lambda: ops.unpack_w8a8(torch.zeros(1, 10, dtype=torch.uint8), 8, 32))


@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device):
    x = random_tensor((64, 24), torch.float32).t()  # [24, 64], transposed strides
    scale = ops.absmax_scale(x, "qint8", 0)
    assert_same(*both_paths(ops.absmax_scale, x, "qint8", -1, device=device))
    assert_same(*both_paths(ops.symmetric_quantize, x, scale, "qint8", 0, device=device))
    s4, h4 = ops.minmax_scale_shift(x, "qint4", -1, 8)
    assert_same(*both_paths(ops.minmax_scale_shift, x, "qint4", -1, 8, device=device))
    codes = ops.affine_quantize(x, s4, h4, "qint4", -1, 8)
    assert_same(*both_paths(ops.affine_quantize, x, s4, h4, "qint4", -1, 8, device=device))
    assert_same(*both_paths(ops.pack_codes, codes.t(), 4, device=device))
    wq = ops.symmetric_quantize(x, scale, "qint8", 0)
    xs = random_tensor((64, 3), torch.bfloat16).t()
    want, got = both_paths(ops.linear_qbytes, xs, wq, scale, None, device=device)
    assert_close_sums(got, want, magnitude(xs, ops.symmetric_dequantize(wq, scale)), 64)
    xq = torch.randint(-128, 128, (64, 5), dtype=torch.int8).t()
    assert_same(*both_paths(ops.linear_w8a8, xq, torch.rand(5, 1), wq, scale, None, torch.float32, device=device))


# ---------------------------------------------------------------- HQQ and GPTQ


def reconstruction_error(w, scale, shift, qtype, axis, group_size):
    codes = ops.affine_quantize(w, scale, shift, qtype, axis, group_size)
    r = ops.affine_dequantize(codes, scale, shift, list(w.shape), axis, group_size)
    return (w.float() - r.float()).pow(2).sum().item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("shape,axis,group_size", [((16, 64), 0, 32), ((33, 96), 0, None), ((16, 64), -1, 8),
                                                   ((4, 6, 32), -1, None), ((1, 33), 0, 11)])
@pytest.mark.parametrize("qtype", ["qint2", "qint4"])
@pytest.mark.parametrize("optimize_scale", [False, True])
def test_hqq_scale_shift(device, dtype, shape, axis, group_size, qtype, optimize_scale):
    w = random_tensor(shape, dtype)
    args = (w, qtype, axis, group_size, 20, 0.7, 10.0, 1.01, optimize_scale)
    want, got = both_paths(ops.hqq_scale_shift, *args, device=device)
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
    # The iteration's float sums run in another order (and |d|^(p-1) is exact, not a polynomial):
    # nearly every group lands on the same parameters, and the error is the same within rounding.
    rel = max(2 * ULP[dtype], 1e-5)  # float32 parameters carry the sums' order through 20 updates
    scale_ok = (got[0] - want[0]).abs() <= rel * want[0].abs()
    shift_ok = (got[1] - want[1]).abs() <= rel * (want[1].abs() + want[0].abs())
    assert (scale_ok & shift_ok).float().mean() >= 0.9
    e_want = reconstruction_error(w, *want, qtype, axis, group_size)
    e_got = reconstruction_error(w, *got, qtype, axis, group_size)
    assert e_got == pytest.approx(e_want, rel=2e-2)
    mm = ops.minmax_scale_shift(w, qtype, axis, group_size)
    assert e_got <= reconstruction_error(w, *mm, qtype, axis, group_size) * (1 + 1e-5)


def layer_output_error(x, w, codes, scale, shift):
    gs = codes.shape[1]
    w_deq = ((codes.float().reshape(-1, gs) * scale.float() - shift.float())).reshape(w.shape)
    return (x @ w.float().t() - x @ w_deq.t()).pow(2).sum().item()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("rows,n,group_size,blocksize", [(8, 64, 32, 128), (5, 96, None, 32), (16, 128, 32, 48),
                                                         (1, 64, 16, 16)])
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("actorder", [False, True])
def test_gptq_quantize(device, dtype, rows, n, group_size, blocksize, bits, actorder):
    w = random_tensor((rows, n), dtype, scale=1.0)
    x = torch.randn(256, n) @ (torch.randn(n, n) / n ** 0.5 + torch.eye(n))
    hessian = x.t() @ x
    args = (w, hessian, f"qint{bits}", group_size, 0.01, blocksize, actorder)
    want, got = both_paths(ops.gptq_quantize, *args, device=device)
    for a, b in zip(want, got):
        assert a.dtype == b.dtype and a.shape == b.shape
    # Ties may round differently (BLAS order on another device): compare what the layer computes.
    assert (got[0] == want[0]).float().mean() >= (0.99 if device == "cpu" else 0.9)
    assert layer_output_error(x, w, *got) == pytest.approx(layer_output_error(x, w, *want), rel=5e-2)


def test_gptq_and_hqq_errors_are_the_same_on_both_paths():
    w = torch.randn(4, 8)
    assert_same_error(lambda: ops.gptq_quantize(w, torch.zeros(8, 8) - torch.eye(8), "qint4", None, 0.01, 128, False))
    assert_same_error(lambda: ops.gptq_quantize(w, torch.eye(7), "qint4", None, 0.01, 128, False))
    assert_same_error(lambda: ops.hqq_scale_shift(w, "qint4", 0, None, 20, 1.5, 10.0, 1.01, False))


# ---------------------------------------------------------------- opcheck on the generic path


def opcheck_samples():
    x = torch.randn(16, 64)
    xb = x.to(torch.bfloat16)
    s0 = ops.absmax_scale(x, "qint8", 0)
    q8 = ops.symmetric_quantize(x, s0, "qint8", 0)
    sf = ops.absmax_scale(x, "qfloat8", -1)
    f8 = ops.symmetric_quantize(x, sf, "qfloat8", -1)
    scale, shift = ops.minmax_scale_shift(x, "qint4", 0, 32)
    zp = ops.shift_to_zeropoint(scale, shift, "qint4")
    codes = ops.affine_quantize(x, scale, shift, "qint4", 0, 32)
    packed = ops.pack_codes(codes, 4)
    tiled = ops.tile_qbits(packed, 4, 16, 64, 32)
    xs = ops.absmax_scale(x, "qint8")
    xq = ops.symmetric_quantize(x, xs, "qint8")
    w = torch.randn(8, 64)
    ws = ops.absmax_scale(w, "qint8", 0)
    wq = ops.symmetric_quantize(w, ws, "qint8", 0)
    fq = ops.symmetric_quantize(w, ops.absmax_scale(w, "qfloat8_e5m2", 0), "qfloat8_e5m2", 0)
    wp = ops.pack_w8a8(wq)
    grad = torch.randn(3, 64, requires_grad=True)  # exercises the autograd-registration check
    hessian = x.t() @ x + torch.eye(64)
    return [
        (ops.absmax_scale, (xb, "qint8", 0)),
        (ops.absmax_scale, (x.clone().requires_grad_(), "qfloat8_e5m2", None)),
        (ops.minmax_scale_shift, (x, "qint4", 0, 32)),
        (ops.minmax_scale_shift, (xb, "qint2", -1, None)),
        (ops.shift_to_zeropoint, (scale, shift, "qint4")),
        (ops.hqq_scale_shift, (x, "qint4", 0, 32, 5, 0.7, 10.0, 1.01, True)),
        (ops.gptq_quantize, (w, hessian, "qint4", 32, 0.01, 32, False)),
        (ops.quantize_per_token, (xb.view(2, 8, 64), "qint8")),
        (ops.symmetric_quantize, (x, s0, "qint8", 0)),
        (ops.symmetric_quantize, (xb, sf.to(torch.bfloat16), "qfloat8", -1)),
        (ops.symmetric_dequantize, (q8, s0.clone().requires_grad_())),
        (ops.symmetric_dequantize, (f8, sf)),
        (ops.affine_quantize, (x, scale, zp, "qint4", 0, 32)),
        (ops.affine_dequantize, (codes, scale, shift, [16, 64], 0, 32)),
        (ops.pack_codes, (codes, 4)),
        (ops.unpack_codes, (packed, 4, codes.shape[0])),
        (ops.tile_qbits, (packed, 4, 16, 64, 32)),
        (ops.untile_qbits, (tiled, 4, 16, 64, 32)),
        (ops.linear_qbytes, (grad, wq, ws, torch.randn(8))),
        (ops.linear_qbytes, (torch.randn(3, 64), fq, ws, None)),
        (ops.linear_qbits, (grad, packed, scale, shift, 4, 32, None)),
        (ops.linear_qbits_tiled, (torch.randn(5, 64).to(torch.bfloat16), tiled, scale, zp, 4, 32, torch.randn(16))),
        (ops.linear_qbits_tiled_cat, (torch.randn(1, 64).to(torch.bfloat16), [tiled, tiled], [scale, scale],
                                      [zp, shift], 4, 32, [])),
        (ops.linear_qbytes_cat, (torch.randn(1, 64), [wq, wq], [ws, ws], [None, torch.randn(8)])),
        (ops.linear_w8a8, (xq, xs, wq, ws, None, torch.float32)),
        (ops.linear_w4a8_tiled, (xq, xs, tiled, scale, zp, 32, torch.randn(16), torch.bfloat16)),
        (ops.linear_w4a8_tiled_cat, (xq[:1], xs, [tiled, tiled], [scale, scale], [zp, shift], 32, [],
                                     torch.bfloat16)),
        (ops.pack_w8a8, (wq,)),
        (ops.unpack_w8a8, (wp, 8, 64)),
        (ops.linear_w8a8_packed, (xq, xs, wp, ws, 8, torch.randn(8), torch.bfloat16)),
        (ops.decode_attention, (torch.randn(2, 4, 1, 16), torch.randn(2, 2, 7, 16), torch.randn(2, 2, 7, 16),
                                torch.randn(2, 1, 1, 7), 0.25)),
    ]


def test_every_op_runs_on_every_backend_and_is_opchecked():
    # An op with a CPU kernel needs a generic twin for the other backends (and a sample below);
    # composite ops are made of quanto ops and follow them to any backend.
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    # optimum-quanto, once imported, registers ops of its own in the same "quanto" namespace: keep
    # the ones whose schema comes from this library (src/ops/schema.cpp).
    names = [n for n in torch._C._dispatch_get_all_op_names()
             if n.startswith("quanto::") and "src/ops/schema.cpp" in torch._C._dispatch_dump(n)]
    tensor_ops = [n for n in names if any("Tensor" in str(a.type) for a in torch._C._get_schema(n, "").arguments)]
    assert tensor_ops
    for n in tensor_ops:
        assert has(n, "CompositeExplicitAutograd") or has(n, "CompositeImplicitAutograd"), n
    with_cpu_kernel = {n.split("::")[1] for n in tensor_ops if has(n, "CPU")}
    for n in with_cpu_kernel:
        assert has(f"quanto::{n}", "CompositeExplicitAutograd"), n
    covered = {op._qualified_op_name.split("::")[1] for op, _ in opcheck_samples()}
    assert with_cpu_kernel <= covered, with_cpu_kernel - covered


# The ops have no autograd formula (CPU kernels included): opcheck's backward through them warns.
@pytest.mark.filterwarnings("ignore:.*an autograd kernel was not registered")
@pytest.mark.parametrize("op,args", opcheck_samples(), ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck_on_the_generic_path(op, args):
    tests = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if any(isinstance(a, torch.Tensor) and a.dtype.is_floating_point and a.element_size() == 1 for a in args):
        tests = tests[1:]  # torch's schema check cannot compare float8 tensors (see test_opcheck.py)
    with generic_path():
        torch.library.opcheck(op, args, test_utils=tests)


@pytest.mark.parametrize("generic", [False, True])
def test_outputs_record_no_history_below_the_autograd_fallback(generic):
    # With the fallback silent, an output that requires grad could only come from ATen ops
    # recorded inside the kernel: the generic implementations must not leak that history. (The
    # linears have autograd kernels of their own, tests/python/test_autograd.py; these ops do not.)
    x = torch.randn(3, 64, requires_grad=True)
    w = torch.randint(-128, 128, (8, 64), dtype=torch.int8)
    previous = torch._C._get_autograd_fallback_mode()
    torch._C._set_autograd_fallback_mode("nothing")
    try:
        with generic_path(generic):
            outs = [ops.absmax_scale(x, "qint8", 0), *ops.minmax_scale_shift(x, "qint4", 0, 32),
                    ops.symmetric_dequantize(w, torch.ones(8, 1, requires_grad=True))]
    finally:
        torch._C._set_autograd_fallback_mode(previous)
    for y in outs:
        assert not y.requires_grad and y.grad_fn is None


# ---------------------------------------------------------------- a tiny Llama, end to end


def tiny_llama(seed=0):
    import transformers as tr

    torch.manual_seed(seed)
    cfg = tr.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    return tr.LlamaForCausalLM(cfg).eval()


IDS = torch.tensor([[5, 17, 100, 3, 99, 42, 7, 127, 64, 1, 120, 33], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])


def quantized_llama(weights, activations, generic):
    model = tiny_llama()
    with generic_path(generic):
        quanto.quantize(model, weights=weights, activations=activations)
        if activations is not None:
            with torch.no_grad(), quanto.Calibration():
                model(IDS)
        quanto.freeze(model)
    return model


def llama_logits(model, device="cpu"):
    with torch.no_grad():
        return model.to(device)(IDS.to(device)).logits.cpu()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weights,activations", [("qint8", None), ("qint4", None), ("qint2", None),
                                                 ("qfloat8", None), ("qint8", "qint8")])
def test_tiny_llama_logits(device, weights, activations):
    model = quantized_llama(weights, activations, generic=False)
    want = llama_logits(model)
    if device == "cpu":
        # Quantizing and freezing on the generic path gives the very same model.
        again = quantized_llama(weights, activations, generic=True)
        for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items()):
            assert torch.equal(a.view(torch.uint8) if a.element_size() == 1 else a,
                               b.view(torch.uint8) if b.element_size() == 1 else b), name
        with generic_path():
            got = llama_logits(model)
    else:
        got = llama_logits(copy.deepcopy(model), device)
    assert got.shape == want.shape
    # Two layers of float32 matmuls summed in another order: rounding, far below quantization error.
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
