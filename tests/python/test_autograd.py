"""Gradients through quantized layers: the weight-only linear ops have a backward w.r.t. x and bias
(dL/dx = dL/dy @ W with W the dequantized weight), on the CPU kernels and on the device-generic
path; frozen models never leave an input that requires grad without a gradient; int8 x int8
layers pass the gradient straight through the activation quantization."""

import pytest
import torch
import torch.nn.functional as F
from conftest import random_tensor

import quanto

ops = torch.ops.quanto


@pytest.fixture(params=[False, True], ids=["cpu-kernels", "generic"])
def generic(request):
    previous = ops.force_generic_path(request.param)
    yield request.param
    ops.force_generic_path(previous)


def _grads(fn, x, bias):
    """(y, dL/dx, dL/dbias) for L = sum(y * g), g random but the same for every call of a shape."""
    x = x.detach().clone().requires_grad_()
    b = None if bias is None else bias.detach().clone().requires_grad_()
    y = fn(x, b)
    g = torch.randn(y.shape, dtype=torch.float32, generator=torch.Generator().manual_seed(7)).to(y.dtype)
    (y.float() * g.float()).sum().backward()
    return y, x.grad, None if b is None else b.grad


def _close(got, want, dtype):
    tol = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}[dtype]
    scale = want.float().abs().max().clamp_min(1.0)
    assert (got.float() - want.float()).abs().max() <= tol * scale


def _qbytes(N, K, wtype, per_tensor):
    w = random_tensor((N, K), torch.float32)
    scale = ops.absmax_scale(w, wtype) if per_tensor else ops.absmax_scale(w, wtype, 0)
    return ops.symmetric_quantize(w, scale, wtype, None if per_tensor else 0), scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("wtype,per_tensor", [("qint8", False), ("qint8", True), ("qfloat8", False)])
@pytest.mark.parametrize("x_shape", [(3, 64), (2, 3, 64)])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_qbytes_backward(generic, dtype, wtype, per_tensor, x_shape, with_bias):
    data, scale = _qbytes(24, 64, wtype, per_tensor)
    w = ops.symmetric_dequantize(data, scale).to(dtype)
    x = random_tensor(x_shape, dtype)
    bias = random_tensor((24,), dtype) if with_bias else None
    y, gx, gb = _grads(lambda x, b: ops.linear_qbytes(x, data, scale.to(dtype), b), x, bias)
    y_ref, gx_ref, gb_ref = _grads(lambda x, b: F.linear(x, w, b), x, bias)
    assert gx is not None and gx.dtype == dtype and gx.shape == x.shape
    _close(gx, gx_ref, dtype)
    if with_bias:
        _close(gb, gb_ref, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("bits,group_size,tiled", [(4, 32, False), (4, 64, True), (2, 64, True), (2, 64, False),
                                                     (4, 128, True)])
@pytest.mark.parametrize("zeropoint", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_qbits_backward(generic, dtype, bits, group_size, tiled, zeropoint, with_bias):
    N, K = 20, 128
    qtype = f"qint{bits}"
    wf = random_tensor((N, K), torch.float32)
    scale, shift = ops.minmax_scale_shift(wf, qtype, 0, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, qtype)
    codes = ops.affine_quantize(wf, scale, shift, qtype, 0, group_size)
    packed = ops.pack_codes(codes, bits)
    w = ops.affine_dequantize(codes, scale, shift, [N, K], 0, group_size).to(dtype)
    data = ops.tile_qbits(packed, bits, N, K, group_size) if tiled else packed
    op = ops.linear_qbits_tiled if tiled else ops.linear_qbits
    sc = scale.to(dtype)
    sh = shift if zeropoint else shift.to(dtype)
    x = random_tensor((5, K), dtype)
    bias = random_tensor((N,), dtype) if with_bias else None
    y, gx, gb = _grads(lambda x, b: op(x, data, sc, sh, bits, group_size, b), x, bias)
    y_ref, gx_ref, gb_ref = _grads(lambda x, b: F.linear(x, w, b), x, bias)
    _close(gx, gx_ref, dtype)
    if with_bias:
        _close(gb, gb_ref, dtype)


def test_opcheck_autograd_registration(generic):
    x = torch.randn(3, 64, requires_grad=True)
    data, scale = _qbytes(8, 64, "qint8", False)
    torch.library.opcheck(ops.linear_qbytes.default, (x, data, scale, torch.randn(8, requires_grad=True)))
    wf = torch.randn(8, 64)
    s, sh = ops.minmax_scale_shift(wf, "qint4", 0, 32)
    packed = ops.pack_codes(ops.affine_quantize(wf, s, sh, "qint4", 0, 32), 4)
    torch.library.opcheck(ops.linear_qbits.default, (x, packed, s, sh, 4, 32, None))
    tiled = ops.tile_qbits(packed, 4, 8, 64, 32)
    torch.library.opcheck(ops.linear_qbits_tiled.default, (x, tiled, s, sh, 4, 32, None))


def test_a_scale_that_requires_grad_is_refused():
    x = torch.randn(3, 64, requires_grad=True)
    data, scale = _qbytes(8, 64, "qint8", False)
    with pytest.raises(ValueError, match="w_scale requires grad"):
        ops.linear_qbytes(x, data, scale.requires_grad_(), None)


def _mlp():
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 32))


@pytest.mark.parametrize("weights", ["qint8", "qint4", "qint2", "qfloat8"])
def test_frozen_model_input_gradient_matches_the_dequantized_float_model(generic, weights):
    model = _mlp()
    quanto.quantize(model, weights=weights)
    quanto.freeze(model)
    ref = _mlp()
    with torch.no_grad():
        for i in (0, 2):
            ref[i].weight.copy_(model[i].weight)
            ref[i].bias.copy_(model[i].bias)
    x = torch.randn(4, 64)
    _, gx, _ = _grads(lambda x, b: model(x), x, None)
    _, gx_ref, _ = _grads(lambda x, b: ref(x), x, None)
    assert gx is not None
    _close(gx, gx_ref, torch.float32)


def test_frozen_w8a8_gradient_is_straight_through(generic):
    torch.manual_seed(3)
    layer = torch.nn.Linear(64, 32)
    model = torch.nn.Sequential(layer)
    quanto.quantize(model, weights="qint8", activations="qint8")
    with quanto.Calibration():
        model(torch.randn(8, 64))
    quanto.freeze(model)
    x = torch.randn(4, 64)
    g = torch.randn(4, 32)
    xr = x.clone().requires_grad_()
    y = model(xr)
    (y * g).sum().backward()
    # Straight through the input and output activation quantization: g @ W (dequantized).
    want = g @ model[0].dequantized_weight()
    _close(xr.grad, want, torch.float32)
    assert model[0].bias.grad is not None
    # The forward values are the int8 product's, whether or not autograd records.
    with torch.no_grad():
        assert torch.equal(model(x), y.detach())


def test_frozen_conv_and_embedding_models_propagate_gradients():
    conv = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 6 * 6, 5))
    quanto.quantize(conv, weights="qint4")
    quanto.freeze(conv)
    x = torch.randn(2, 4, 8, 8, requires_grad=True)
    conv(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_qat_keeps_training_the_float_weight():
    model = _mlp()
    quanto.quantize(model, weights="qint4")
    x = torch.randn(4, 64)
    model(x).sum().backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0


def test_assigning_a_frozen_weight_requantizes_it():
    model = _mlp()
    quanto.quantize(model, weights="qint8")
    quanto.freeze(model)
    layer = model[0]
    w = layer.weight
    delta = torch.randn_like(w) * 0.05
    # What PEFT's LoRA merge does: weight.data += delta.
    layer.weight.data += delta
    assert (layer.weight - (w + delta)).abs().max() <= layer.weight_scale.max() * 0.51
    # In-place arithmetic on the returned copy alone changes nothing.
    before = layer.weight.clone()
    layer.weight.mul_(2)
    assert torch.equal(layer.weight, before)
    with pytest.raises(ValueError, match="shape"):
        layer.weight.data = torch.zeros(3, 3)
