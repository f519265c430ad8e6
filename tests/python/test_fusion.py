"""linear_qbits_tiled_cat (several tiled weights on one x) and quanto.fusion's graph pass, which
rewrites sibling linear_qbits_tiled calls of a compiled graph into it."""

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import quanto

ops = torch.ops.quanto


def tiled_weight(n, k, bits=4, group_size=32, params_dtype=torch.float32, zeropoint=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    qtype = "qint4" if bits == 4 else "qint2"
    scale, shift = ops.minmax_scale_shift(w, qtype, 0, group_size)
    codes = ops.affine_quantize(w, scale, shift, qtype, 0, group_size)
    tiled = ops.tile_qbits(ops.pack_codes(codes, bits), bits, n, k, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, qtype)
    else:
        shift = shift.to(params_dtype)
    return tiled, scale.to(params_dtype), shift


def separate(x, weights, bits, group_size, biases):
    return torch.cat([ops.linear_qbits_tiled(x, *w, bits, group_size, b) for w, b in zip(weights, biases)], dim=-1)


def fused(x, weights, bits, group_size, biases):
    lists = [list(t) for t in zip(*weights)]
    return ops.linear_qbits_tiled_cat(x, *lists, bits, group_size, biases)


# Batch 1 in bf16 is the fused decode pass (a thread's rows may span parts: 576 + 192 + 200 rows,
# the last not a multiple of the kernels' row blocks); the other cases run the parts one by one.
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("with_bias", [False, True])
def test_cat_equals_the_separate_calls(shape, dtype, bits, with_bias):
    k, gs = 576, 32 if bits == 4 else 64  # the 2-bit tiled layout holds groups of 64 and more
    weights = [tiled_weight(576, k, bits, gs, seed=1, params_dtype=dtype), tiled_weight(192, k, bits, gs, seed=2),
               tiled_weight(200, k, bits, gs, seed=3, params_dtype=dtype, zeropoint=bits == 4)]
    x = torch.randn(*shape, k).to(dtype)
    biases = [torch.randn(w[0].shape[0]).to(dtype) for w in weights] if with_bias else [None] * 3
    want = separate(x, weights, bits, gs, biases)
    got = fused(x, weights, bits, gs, biases if with_bias else [])
    assert got.shape == (*shape, 968) and got.dtype == dtype
    assert torch.equal(got, want)


def int8_weight(n, k, fp8=False, per_tensor=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * 0.05
    qtype = "qfloat8" if fp8 else "qint8"
    scale = ops.absmax_scale(w, qtype, None if per_tensor else 0)
    return ops.symmetric_quantize(w, scale, qtype, None if per_tensor else 0), scale


@pytest.mark.parametrize("shape", [(1, 1), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float16])
@pytest.mark.parametrize("with_bias", [False, True])
def test_qbytes_cat_equals_the_separate_calls(shape, dtype, with_bias):
    k = 576
    weights = [int8_weight(576, k, seed=1), int8_weight(192, k, fp8=True, seed=2),
               int8_weight(203, k, per_tensor=True, seed=3)]
    weights = [(w, s.to(dtype)) for w, s in weights]
    x = torch.randn(*shape, k).to(dtype)
    biases = [torch.randn(w.shape[0]).to(dtype) for w, _ in weights] if with_bias else [None] * 3
    want = torch.cat([ops.linear_qbytes(x, w, s, b) for (w, s), b in zip(weights, biases)], dim=-1)
    got = ops.linear_qbytes_cat(x, [w for w, _ in weights], [s for _, s in weights], biases if with_bias else [])
    assert got.shape == (*shape, 971) and got.dtype == dtype
    assert torch.equal(got, want)


def test_qbytes_cat_gradients_opcheck_and_errors():
    (w1, s1), (w2, s2) = int8_weight(64, 128, seed=1), int8_weight(32, 128, seed=2)
    x = torch.randn(1, 128, requires_grad=True)
    b = [torch.randn(64), torch.randn(32, requires_grad=True)]
    g = torch.randn(1, 96)
    (ops.linear_qbytes_cat(x, [w1, w2], [s1, s2], b) * g).sum().backward()
    got = (x.grad, b[1].grad)
    x.grad = b[1].grad = None
    (torch.cat([ops.linear_qbytes(x, w1, s1, b[0]), ops.linear_qbytes(x, w2, s2, b[1])], -1) * g).sum().backward()
    assert torch.equal(got[0], x.grad) and torch.equal(got[1], b[1].grad)
    torch.library.opcheck(ops.linear_qbytes_cat.default, (torch.randn(1, 128).bfloat16(), [w1, w2], [s1, s2], []))
    with pytest.raises(ValueError, match="linear_qbytes_cat: the weight lists must hold one tensor per weight"):
        ops.linear_qbytes_cat(torch.randn(1, 128), [w1, w2], [s1], [])


def test_cat_generic_path_matches_cpu():
    weights = [tiled_weight(64, 128, seed=1), tiled_weight(32, 128, seed=2)]
    x = torch.randn(1, 128).bfloat16()
    want = fused(x, weights, 4, 32, [])
    previous = ops.force_generic_path(True)
    try:
        got = fused(x, weights, 4, 32, [])
    finally:
        ops.force_generic_path(previous)
    torch.testing.assert_close(got, want, rtol=1e-2, atol=1e-2)


def test_cat_gradients_reach_x_and_bias():
    weights = [tiled_weight(64, 128, seed=1), tiled_weight(32, 128, seed=2)]
    x = torch.randn(3, 128, requires_grad=True)
    biases = [torch.randn(64, requires_grad=True), torch.randn(32, requires_grad=True)]
    g = torch.randn(3, 96)
    (fused(x, weights, 4, 32, biases) * g).sum().backward()
    got = (x.grad, biases[0].grad, biases[1].grad)
    x.grad = biases[0].grad = biases[1].grad = None
    (separate(x, weights, 4, 32, biases) * g).sum().backward()
    for a, b in zip(got, (x.grad, biases[0].grad, biases[1].grad)):
        assert a is not None and torch.equal(a, b)


def test_cat_opcheck():
    weights = [tiled_weight(64, 128, seed=1), tiled_weight(32, 128, seed=2, zeropoint=True)]
    lists = [list(t) for t in zip(*weights)]
    torch.library.opcheck(ops.linear_qbits_tiled_cat.default, (torch.randn(1, 128).bfloat16(), *lists, 4, 32, []))
    torch.library.opcheck(ops.linear_qbits_tiled_cat.default,
                          (torch.randn(3, 128), *lists, 4, 32, [torch.randn(64), None]))


def test_cat_rejects_bad_lists():
    a, b = tiled_weight(64, 128, seed=1), tiled_weight(32, 256, seed=2)
    x = torch.randn(1, 128)
    with pytest.raises(ValueError, match="linear_qbits_tiled_cat: needs at least one weight"):
        ops.linear_qbits_tiled_cat(x, [], [], [], 4, 32, [])
    with pytest.raises(ValueError, match="one tensor per weight"):
        ops.linear_qbits_tiled_cat(x, [a[0]], [a[1], a[1]], [a[2]], 4, 32, [])
    with pytest.raises(ValueError, match="bias must be empty or hold one entry per weight"):
        ops.linear_qbits_tiled_cat(x, [a[0]], [a[1]], [a[2]], 4, 32, [None, None])
    with pytest.raises(ValueError, match="linear_qbits_tiled_cat"):  # b's in_features are 256, x's 128
        ops.linear_qbits_tiled_cat(x, [a[0], b[0]], [a[1], b[1]], [a[2], b[2]], 4, 32, [])


def siblings(x, *flat):
    """q, k, v on one input, then gate and up on another, and a lone down projection (flat: each
    weight's tiled codes, scale and shift in turn)."""
    w = [flat[i:i + 3] for i in range(0, len(flat), 3)]
    q, k, v = (ops.linear_qbits_tiled(x, *w[i], 4, 32) for i in range(3))
    h = q + torch.nn.functional.pad(k + v, (0, q.shape[-1] - k.shape[-1]))
    gate, up = (ops.linear_qbits_tiled(h, *w[i], 4, 32) for i in (3, 4))
    return ops.linear_qbits_tiled(torch.nn.functional.silu(gate) * up, *w[5], 4, 32)


class Siblings(torch.nn.Module):
    def __init__(self, weights):
        super().__init__()
        self.flat = [t for w in weights for t in w]

    def forward(self, x):
        return siblings(x, *self.flat)


def sibling_weights():
    shapes = [(128, 128), (64, 128), (64, 128), (256, 128), (256, 128), (128, 256)]
    return [tiled_weight(n, k, seed=i, params_dtype=torch.bfloat16) for i, (n, k) in enumerate(shapes)]


def test_pass_fuses_siblings_and_keeps_results():
    flat = [t for w in sibling_weights() for t in w]
    x = torch.randn(1, 1, 128).bfloat16()
    gm = make_fx(siblings, tracing_mode="fake")(x, *flat)
    quanto.fusion.fuse_sibling_linears(gm.graph)
    gm.recompile()
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(ops.linear_qbits_tiled_cat.default) == 2  # q/k/v and gate/up
    assert targets.count(ops.linear_qbits_tiled.default) == 1  # down has no sibling
    assert torch.equal(gm(x, *flat), siblings(x, *flat))


def test_pass_fuses_int8_siblings():
    (wq, sq), (wk, sk), (wv, sv) = (int8_weight(n, 128, seed=i) for i, n in enumerate((128, 64, 64)))

    def fn(x, wq, sq, wk, sk, wv, sv):
        q, k, v = ops.linear_qbytes(x, wq, sq), ops.linear_qbytes(x, wk, sk), ops.linear_qbytes(x, wv, sv)
        return q[..., :64] * k + v

    args = (torch.randn(1, 1, 128), wq, sq, wk, sk, wv, sv)
    gm = make_fx(fn, tracing_mode="fake")(*args)
    quanto.fusion.fuse_sibling_linears(gm.graph)
    gm.recompile()
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(ops.linear_qbytes_cat.default) == 1 and ops.linear_qbytes.default not in targets
    assert torch.equal(gm(*args), fn(*args))


def test_pass_leaves_mixed_bias_groups_alone():
    w = sibling_weights()

    def fn(x, b, *flat):
        return ops.linear_qbits_tiled(x, *flat[:3], 4, 32, b) + ops.linear_qbits_tiled(x, *flat[3:], 4, 32)[..., :128]

    gm = make_fx(fn, tracing_mode="fake")(torch.randn(1, 128).bfloat16(), torch.randn(128).bfloat16(), *w[0], *w[3])
    quanto.fusion.fuse_sibling_linears(gm.graph)
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert ops.linear_qbits_tiled_cat.default not in targets


def compiled_result(model, x, graph_pass):
    torch._dynamo.reset()
    try:
        with torch.no_grad(), torch._inductor.config.patch(freezing=True, cpp_wrapper=True,
                                                           post_grad_custom_post_pass=graph_pass):
            return torch.compile(model, fullgraph=True)(x)
    finally:
        torch._dynamo.reset()


def counting_pass(target, calls):
    """The pass, appending to ``calls`` how many ``target`` calls each graph it rewrote holds."""

    class Counting(quanto.fusion.SiblingLinearFusion):
        def __call__(self, graph):
            super().__call__(graph)
            calls.append(sum(n.target is target for n in graph.nodes))

        def uuid(self):
            return None  # no cached graph: the pass runs on this compile

    return Counting()


def test_pass_fuses_decode_rows_only():
    """Prefill (several rows) and float32 rows keep their separate calls: the fused pass serves one
    bf16 row."""
    flat = [t for w in sibling_weights() for t in w]
    for x in (torch.randn(1, 4, 128).bfloat16(), torch.randn(1, 128)):
        gm = make_fx(siblings, tracing_mode="fake")(x, *flat)
        quanto.fusion.fuse_sibling_linears(gm.graph)
        assert not any(n.target is ops.linear_qbits_tiled_cat.default for n in gm.graph.nodes)


def test_torch_compile_with_the_pass():
    """Under torch.compile (freezing and the C++ wrapper, as decode steps are compiled) the pass
    runs, and the result is the compiled graph's without it (inductor's own elementwise code
    rounds differently from eager's bf16 ops, the same with and without the pass)."""
    model = Siblings(sibling_weights())
    x = torch.randn(1, 1, 128).bfloat16()
    calls = []
    got = compiled_result(model, x, counting_pass(ops.linear_qbits_tiled_cat.default, calls))
    assert calls and calls[-1] == 2
    assert torch.equal(got, compiled_result(model, x, None))
    torch.testing.assert_close(got, model(x), rtol=2e-2, atol=2e-2)


def test_inductor_options_name_the_pass():
    assert quanto.fusion.inductor_options() == {"post_grad_custom_post_pass": quanto.fusion.fuse_sibling_linears}
    assert quanto.fusion.fuse_sibling_linears.uuid()
