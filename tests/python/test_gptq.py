"""gptq_quantize: against a plain-PyTorch GPTQ reference (same column order, blocks and lazy
group parameters), exact min/max round-to-nearest when the Hessian is the identity, lower layer
output error than min/max on correlated inputs, shapes/dtypes, argument errors, opcheck, meta."""

import pytest
import torch

ops = torch.ops.quanto


def reference_gptq(w, hessian, bits, group_size, percdamp=0.01, blocksize=128):
    """GPTQ in plain PyTorch (float32 weights, float64 Hessian inverse), one column at a time."""
    code_max = 2 ** bits - 1
    W = w.float().clone()
    rows, n = W.shape
    gs = group_size or n
    H = hessian.double().clone()
    d = H.diagonal()
    d[d == 0] = 1
    d += percdamp * d.mean()
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True).float()
    bs = max(blocksize // gs, 1) * gs
    codes = torch.zeros(rows, n, dtype=torch.uint8)
    scales, shifts = torch.zeros(rows, n // gs), torch.zeros(rows, n // gs)
    for i1 in range(0, n, bs):
        i2 = min(i1 + bs, n)
        E = torch.zeros(rows, i2 - i1)
        for i in range(i1, i2):
            if (i - i1) % gs == 0:
                g = W[:, i:i + gs]
                mn, mx = g.amin(1), g.amax(1)
                s = (mx - mn) / code_max
                s = torch.where(s == 0, torch.maximum(mn.abs(), mx.abs()) / code_max, s)
                s = torch.where(s == 0, torch.ones_like(s), s)
                h = -mn
                scales[:, i // gs], shifts[:, i // gs] = s, h
            c = torch.clamp(torch.round((W[:, i] + h) / s), 0, code_max)
            codes[:, i] = c.to(torch.uint8)
            e = (W[:, i] - (c * s - h)) / Hinv[i, i]
            E[:, i - i1] = e
            W[:, i + 1:i2] -= e[:, None] * Hinv[i, i + 1:i2][None, :]
        W[:, i2:] -= E @ Hinv[i1:i2, i2:]
    return codes.reshape(-1, gs), scales.reshape(-1, 1), shifts.reshape(-1, 1)


def correlated_inputs(n, tokens=512):
    mix = torch.randn(n, n) / n ** 0.5 + torch.eye(n)
    return torch.randn(tokens, n) @ mix * torch.linspace(0.2, 3.0, n)


def hessian_of(x):
    return (2.0 * x.T.double() @ x.double()) / x.shape[0]


def dequantize(codes, scale, shift, shape, group_size):
    return ops.affine_dequantize(codes, scale, shift, list(shape), 0, group_size)


@pytest.mark.parametrize("bits,group_size,shape,blocksize", [
    (4, 128, (48, 256), 128), (4, 64, (32, 192), 128), (2, 32, (16, 128), 48), (4, None, (24, 96), 128),
    (4, 32, (8, 96), 8)])
def test_gptq_matches_reference(bits, group_size, shape, blocksize):
    w = torch.randn(shape)
    H = hessian_of(correlated_inputs(shape[1]))
    qtype = f"qint{bits}"
    codes, scale, shift = ops.gptq_quantize(w, H, qtype, group_size, 0.01, blocksize)
    rc, rs, rh = reference_gptq(w, H, bits, group_size, 0.01, blocksize)
    assert codes.dtype == torch.uint8 and codes.shape == rc.shape
    assert scale.shape == rs.shape and shift.shape == rh.shape and scale.dtype == w.dtype
    # Same algorithm, float32 sums in another order: a rare code may flip at a rounding tie.
    assert (codes != rc).float().mean() < 2e-3
    torch.testing.assert_close(scale, rs, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(shift, rh, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_gptq_identity_hessian_is_minmax_rounding(dtype):
    """H = I: no error crosses columns, so GPTQ is min/max round-to-nearest (codes via affine_quantize)."""
    w = torch.randn(32, 256).to(dtype)
    codes, scale, shift = ops.gptq_quantize(w, torch.eye(256), "qint4", 128, 0.0)
    s0, h0 = ops.minmax_scale_shift(w, "qint4", 0, 128)
    torch.testing.assert_close(scale, s0, rtol=0, atol=0)
    torch.testing.assert_close(shift, h0, rtol=0, atol=0)
    want = ops.affine_quantize(w, s0, h0, "qint4", 0, 128)
    if dtype == torch.float32:
        assert torch.equal(codes, want)
    else:  # affine_quantize rounds (w + shift) in the low-precision dtype first
        assert (codes.int() - want.int()).abs().max() <= 1


@pytest.mark.parametrize("group_size", [128, 64])
def test_gptq_lowers_layer_output_error(group_size):
    n = 256
    w = torch.randn(64, n)
    x = correlated_inputs(n, 1024)
    H = hessian_of(x)
    codes, scale, shift = ops.gptq_quantize(w, H, "qint4", group_size)
    wg = dequantize(codes, scale, shift, w.shape, group_size)
    s0, h0 = ops.minmax_scale_shift(w, "qint4", 0, group_size)
    wr = dequantize(ops.affine_quantize(w, s0, h0, "qint4", 0, group_size), s0, h0, w.shape, group_size)
    err_gptq = (x @ (w - wg).T).pow(2).mean()
    err_rtn = (x @ (w - wr).T).pow(2).mean()
    assert err_gptq < 0.8 * err_rtn, (err_gptq, err_rtn)
    # The codes pack into the standard format and dequantize through the usual ops.
    packed = ops.pack_codes(codes, 4)
    assert torch.equal(ops.unpack_codes(packed, 4, codes.shape[0]), codes)


def test_gptq_dead_inputs_and_float64_hessian():
    """Inputs never seen (zero rows/columns in H) fall back to rounding; float32 and float64 agree."""
    x = correlated_inputs(128)
    x[:, :5] = 0
    H = hessian_of(x)
    w = torch.randn(16, 128)
    c64 = ops.gptq_quantize(w, H, "qint4", 64)
    c32 = ops.gptq_quantize(w, H.float(), "qint4", 64)
    assert torch.isfinite(c64[1]).all() and torch.isfinite(c64[2]).all()
    assert (c64[0] != c32[0]).float().mean() < 5e-3


def test_gptq_errors():
    w, H = torch.randn(8, 64), torch.eye(64)
    with pytest.raises(ValueError, match="square"):
        ops.gptq_quantize(w, torch.eye(32), "qint4", 32)
    with pytest.raises(ValueError, match="square"):
        ops.gptq_quantize(w, torch.ones(64, 32), "qint4", 32)
    with pytest.raises(ValueError, match="2-D"):
        ops.gptq_quantize(torch.randn(2, 4, 64), H, "qint4", 32)
    with pytest.raises(ValueError, match="divide|group"):
        ops.gptq_quantize(w, H, "qint4", 48)
    with pytest.raises(ValueError, match="qint8|2 or 4|bits"):
        ops.gptq_quantize(w, H, "qint8", 32)
    with pytest.raises(ValueError, match="percdamp"):
        ops.gptq_quantize(w, H, "qint4", 32, -0.1)
    with pytest.raises(ValueError, match="blocksize"):
        ops.gptq_quantize(w, H, "qint4", 32, 0.01, 0)
    with pytest.raises(TypeError, match="hessian must be float32 or float64"):
        ops.gptq_quantize(w, torch.eye(64, dtype=torch.float16), "qint4", 32)
    with pytest.raises(ValueError, match="not positive definite"):
        ops.gptq_quantize(w, torch.diag(torch.linspace(-1, 3, 64)), "qint4", 32, 0.0)
    with pytest.raises(ValueError, match="negative mean diagonal"):
        ops.gptq_quantize(w, -torch.eye(64), "qint4", 32)
    # A rank-deficient X^T X (fewer tokens than inputs) is singular: dampening makes it usable.
    singular = hessian_of(torch.randn(8, 64))
    with pytest.raises(ValueError, match="not positive definite"):
        ops.gptq_quantize(w, singular.float(), "qint4", 32, 0.0)
    assert torch.isfinite(ops.gptq_quantize(w, singular, "qint4", 32, 0.01)[1]).all()
    with pytest.raises(ValueError, match="NaN"):
        ops.gptq_quantize(w, torch.full((64, 64), float("nan")), "qint4", 32)
    bad = w.clone()
    bad[0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        ops.gptq_quantize(bad, H, "qint4", 32)


def test_gptq_meta_and_opcheck():
    w, H = torch.randn(8, 64), hessian_of(correlated_inputs(64))
    c, s, h = ops.gptq_quantize(w.to("meta"), H.to("meta"), "qint4", 32)
    assert c.shape == (16, 32) and c.dtype == torch.uint8 and s.shape == (16, 1) and h.shape == (16, 1)
    torch.library.opcheck(ops.gptq_quantize.default, (w, H, "qint4", 32, 0.01, 128),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("group_size", [128, 32])
def test_gptq_actorder(group_size):
    """Act-order keeps static min/max groups: identity Hessian = min/max rounding; lower output error."""
    n = 256
    w = torch.randn(32, n)
    codes, scale, shift = ops.gptq_quantize(w, torch.eye(n), "qint4", group_size, 0.0, 128, True)
    s0, h0 = ops.minmax_scale_shift(w, "qint4", 0, group_size)
    assert torch.equal(scale, s0) and torch.equal(shift, h0)
    assert torch.equal(codes, ops.affine_quantize(w, s0, h0, "qint4", 0, group_size))
    x = correlated_inputs(n, 1024)
    H = hessian_of(x)
    codes, scale, shift = ops.gptq_quantize(w, H, "qint4", group_size, 0.01, 128, True)
    assert torch.equal(scale, s0) and torch.equal(shift, h0)
    wg = dequantize(codes, scale, shift, w.shape, group_size)
    wr = dequantize(ops.affine_quantize(w, s0, h0, "qint4", 0, group_size), s0, h0, w.shape, group_size)
    assert (x @ (w - wg).T).pow(2).mean() < 0.8 * (x @ (w - wr).T).pow(2).mean()
