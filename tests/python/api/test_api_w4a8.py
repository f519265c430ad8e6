"""W4A8: qint4 weights with qint8 activations (dynamic per token, or static) run the integer
kernel (torch.ops.quanto.linear_w4a8_tiled) on the activation codes once frozen on the CPU.

Checked against the formula evaluated in float64 from the canonical tensors (docs/format.md):
  y = x_scale · Σ_g (scale_g · Σ_{k in g} x_k · code_k − shift_g · Σ_{k in g} x_k) + bias,
and against the float path on the dequantized activations (what ran before), both within float
rounding of the magnitudes summed; the device-generic path (force_generic_path) agrees too."""

import contextlib

import pytest
import torch
from api_models import make_mlp

import quanto

ops = torch.ops.quanto


def tokens(dtype=torch.float32, seed=3, shape=(2, 6, 256)):
    """Tokens spanning four orders of magnitude (what per-token scales are for)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g) * torch.logspace(-2, 2, shape[-2]).reshape(shape[-2], 1)
    return x.to(dtype)


@contextlib.contextmanager
def generic_path(enabled):
    """The CPU kernels (False) or the device-generic path (True), whatever QUANTO_FORCE_GENERIC says."""
    previous = ops.force_generic_path(enabled)
    try:
        yield
    finally:
        ops.force_generic_path(previous)


@pytest.fixture
def cpu_kernels():
    with generic_path(False):
        yield


def w4a8_mlp(dtype=torch.float32, group_size=None):
    model = make_mlp(dtype)
    quanto.quantize(model, weights="qint4", activations="qint8", dynamic_activations=True, group_size=group_size)
    return quanto.freeze(model)


def formula(module, codes_x, scale_x):
    """(exact, magnitude) in float64: the W4A8 formula and Σ of the absolute values of its terms."""
    w = module.canonical_weight_tensors()
    groups = w["scale"].shape[0]
    N, K = module.out_features, module.in_features
    gs = N * K // groups
    codes = ops.unpack_codes(w["data"], 4, groups).reshape(N, K // gs, gs).double()
    s = w["scale"].double().reshape(N, K // gs)
    h = w["shift"].double().reshape(N, K // gs)
    if w["shift"].dtype == torch.uint8:
        h = h * s
    xg = codes_x.reshape(-1, K // gs, gs).double()
    dots = torch.einsum("tgk,ngk->tng", xg, codes)  # exact: integers below 2^53
    xsum = xg.sum(-1).unsqueeze(1)                  # [T, 1, G]
    xs = scale_x.reshape(-1, 1).double()
    exact = xs * (s * dots - h * xsum).sum(-1) + module.bias.double()
    # Magnitudes of the individual products (the kernels may split a group's sums into parts).
    abs_dots = torch.einsum("tgk,ngk->tng", xg.abs(), codes)
    abs_xsum = xg.abs().sum(-1).unsqueeze(1)
    mag = xs.abs() * (s.abs() * abs_dots + h.abs() * abs_xsum).sum(-1) + module.bias.double().abs()
    shape = list(codes_x.shape[:-1]) + [N]
    return exact.reshape(shape), mag.reshape(shape)


def assert_within_rounding(got, exact, mag, dtype):
    tol = 1e-5 * mag
    if dtype != torch.float32:  # the output rounded once to its dtype
        tol = tol + exact.abs() * torch.finfo(dtype).eps
    err = (got.double() - exact).abs()
    assert bool((err <= tol).all()), float((err / tol).max())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("group_size", [None, 32], ids=["default-groups", "groups-32"])
def test_w4a8_runs_the_integer_kernel_on_per_token_codes(cpu_kernels, dtype, group_size):
    model = w4a8_mlp(dtype, group_size)
    up = model.up
    assert up._quanto_layout == "tiled"
    x = tokens(dtype)
    codes_x, scale_x = ops.quantize_per_token(x, "qint8")
    exact, mag = formula(up, codes_x, scale_x)
    with torch.no_grad():
        y = up(x)
    assert y.dtype == dtype
    assert_within_rounding(y, exact, mag, dtype)
    # It is the integer op on the tiled weight.
    t = up._held_weight()
    op_y = ops.linear_w4a8_tiled(codes_x, scale_x, t[0], t[1], t[2], up.weight_group_size or up.in_features, up.bias,
                                 dtype)
    assert torch.equal(y, op_y)
    # Per token: a token's output does not depend on the other tokens of the batch.
    with torch.no_grad():
        assert torch.equal(up(x[1:2, 4:5]), y[1:2, 4:5])


@pytest.mark.parametrize("M", [1, 8, 32])
def test_w4a8_matches_the_float_path_on_dequantized_activations(cpu_kernels, M):
    model = w4a8_mlp()
    up = model.up
    x = tokens(shape=(1, M, 256), seed=M)
    codes_x, scale_x = ops.quantize_per_token(x, "qint8")
    exact, mag = formula(up, codes_x, scale_x)
    with torch.no_grad():
        y = up(x)
        float_path = ops.weight_linear(codes_x.float() * scale_x, up._held_weight(), "qint4", [128, 256],
                                       up.weight_group_size, up._quanto_layout, up.bias)
    assert_within_rounding(y, exact, mag, torch.float32)
    assert_within_rounding(float_path, exact, mag, torch.float32)


def test_static_activations_and_zero_points_through_the_op(cpu_kernels):
    g = torch.Generator().manual_seed(7)
    w = torch.randn(48, 96, generator=g)
    scale, shift = ops.minmax_scale_shift(w, "qint4", 0, 32)
    zp = ops.shift_to_zeropoint(scale, shift, "qint4")
    tiled = ops.tile_qbits(ops.pack_codes(ops.affine_quantize(w, scale, zp, "qint4", 0, 32), 4), 4, 48, 96, 32)
    x = torch.randn(5, 96, generator=g)
    xs = ops.absmax_scale(x, "qint8")  # static: one scale for the tensor
    xq = ops.symmetric_quantize(x, xs, "qint8")
    bias = torch.randn(48, generator=g)
    for h in (shift, zp):
        y = ops.linear_w4a8_tiled(xq, xs, tiled, scale, h, 32, bias, torch.float32)
        ref = ops.linear_qbits_tiled(xq.float() * xs, tiled, scale, h, 4, 32, bias)
        torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())


def test_bad_inputs_are_named():
    tiled = torch.zeros(8, 32, dtype=torch.uint8)
    scale, shift = torch.ones(16, 1), torch.zeros(16, 1)
    xq = torch.zeros(3, 64, dtype=torch.int8)
    with pytest.raises(TypeError, match="x_data must be Char"):
        ops.linear_w4a8_tiled(xq.float(), torch.ones(()), tiled, scale, shift, 32, None, torch.float32)
    with pytest.raises(ValueError, match="x_scale must hold one value"):
        ops.linear_w4a8_tiled(xq, torch.ones(2), tiled, scale, shift, 32, None, torch.float32)
    with pytest.raises(ValueError, match="group_size"):
        ops.linear_w4a8_tiled(xq, torch.ones(()), tiled, scale, shift, 48, None, torch.float32)
    with pytest.raises(TypeError, match="out_dtype"):
        ops.linear_w4a8_tiled(xq, torch.ones(()), tiled, scale, shift, 32, None, torch.int32)


def test_the_generic_path_agrees():
    x = tokens()
    with torch.no_grad():
        with generic_path(False):
            y_cpu = w4a8_mlp().up(x)
        with generic_path(True):
            model = w4a8_mlp()
            assert model.up._quanto_layout == "canonical"
            y_generic = model.up(x)
    codes_x, scale_x = ops.quantize_per_token(x, "qint8")
    exact, mag = formula(model.up, codes_x, scale_x)
    assert_within_rounding(y_generic, exact, mag, torch.float32)
    assert_within_rounding(y_cpu, exact, mag, torch.float32)


def test_the_generic_op_on_a_tiled_weight_agrees():
    with generic_path(False):
        model = w4a8_mlp(group_size=32)
    up = model.up
    x = tokens(shape=(3, 256))
    codes_x, scale_x = ops.quantize_per_token(x, "qint8")
    t = up._held_weight()
    args = (codes_x, scale_x, t[0], t[1], t[2], 32, up.bias, torch.float32)
    with generic_path(False):
        y_cpu = ops.linear_w4a8_tiled(*args)
    with generic_path(True):
        y_generic = ops.linear_w4a8_tiled(*args)
    exact, mag = formula(up, codes_x, scale_x)
    assert_within_rounding(y_cpu, exact, mag, torch.float32)
    assert_within_rounding(y_generic, exact, mag, torch.float32)


def test_gradients_reach_the_input_straight_through(cpu_kernels):
    model = w4a8_mlp()
    up = model.up
    x = tokens(shape=(4, 256))
    g = torch.randn(4, 128, generator=torch.Generator().manual_seed(5))
    xr = x.clone().requires_grad_()
    y = up(xr)
    (y * g).sum().backward()
    # Straight through the per-token quantization of x: g @ W (dequantized).
    torch.testing.assert_close(xr.grad, g @ up.dequantized_weight(), rtol=1e-5, atol=1e-5)
    assert up.bias.grad is not None
    # The forward values are the integer kernel's, whether or not autograd records.
    with torch.no_grad():
        assert torch.equal(up(x), y.detach())
