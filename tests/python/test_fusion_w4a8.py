"""linear_w4a8_tiled_cat (several tiled 4-bit weights on one row of int8 activations) and
quanto.fusion's rewrite of sibling linear_w4a8_tiled calls into it (dynamic activations)."""

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import quanto
from test_fusion import compiled_result, counting_pass, tiled_weight

ops = torch.ops.quanto


def quantized(x):
    return ops.quantize_per_token(x, "qint8")


def separate(xd, xs, weights, group_size, biases, out_dtype):
    return torch.cat([ops.linear_w4a8_tiled(xd, xs, *w, group_size, b, out_dtype) for w, b in zip(weights, biases)],
                     dim=-1)


def fused(xd, xs, weights, group_size, biases, out_dtype):
    lists = [list(t) for t in zip(*weights)]
    return ops.linear_w4a8_tiled_cat(xd, xs, *lists, group_size, biases, out_dtype)


# One row into bf16 is the fused decode pass (a thread's rows may span parts: 576 + 192 + 200 rows,
# the last not a multiple of the kernels' row blocks); the other cases run the parts one by one.
@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (2, 3)])
@pytest.mark.parametrize("out_dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("group_size", [32, 128])
def test_cat_equals_the_separate_calls(shape, out_dtype, with_bias, group_size):
    k = 576 if group_size == 32 else 640
    weights = [tiled_weight(576, k, 4, group_size, seed=1, params_dtype=torch.bfloat16),
               tiled_weight(192, k, 4, group_size, seed=2),
               tiled_weight(200, k, 4, group_size, seed=3, params_dtype=torch.bfloat16, zeropoint=True)]
    xd, xs = quantized(torch.randn(*shape, k).to(out_dtype))
    biases = [torch.randn(w[0].shape[0]).to(out_dtype) for w in weights] if with_bias else [None] * 3
    want = separate(xd, xs, weights, group_size, biases, out_dtype)
    got = fused(xd, xs, weights, group_size, biases if with_bias else [], out_dtype)
    assert got.shape == (*shape, 968) and got.dtype == out_dtype
    assert torch.equal(got, want)


def test_decode_row_matches_the_reference():
    """The decode pass against the device-generic path (the activations and weights dequantized to
    float32): they agree within the output's rounding."""
    weights = [tiled_weight(576, 576, seed=1, params_dtype=torch.bfloat16), tiled_weight(192, 576, seed=2)]
    xd, xs = quantized(torch.randn(1, 576).bfloat16())
    got = fused(xd, xs, weights, 32, [], torch.bfloat16)
    previous = ops.force_generic_path(True)
    try:
        want = fused(xd, xs, weights, 32, [], torch.float32)
    finally:
        ops.force_generic_path(previous)
    torch.testing.assert_close(got.float(), want, rtol=1e-2, atol=1e-2)


def test_opcheck_and_errors():
    a, b = tiled_weight(64, 128, seed=1), tiled_weight(32, 256, seed=2)
    xd, xs = quantized(torch.randn(1, 128))
    torch.library.opcheck(ops.linear_w4a8_tiled_cat.default,
                          (xd, xs, [a[0], a[0]], [a[1], a[1]], [a[2], a[2]], 32, [], torch.bfloat16))
    torch.library.opcheck(ops.linear_w4a8_tiled_cat.default,
                          (xd, xs, [a[0]], [a[1]], [a[2]], 32, [torch.randn(64)], torch.float32))
    with pytest.raises(ValueError, match="linear_w4a8_tiled_cat: needs at least one weight"):
        ops.linear_w4a8_tiled_cat(xd, xs, [], [], [], 32, [], torch.bfloat16)
    with pytest.raises(ValueError, match="one tensor per weight"):
        ops.linear_w4a8_tiled_cat(xd, xs, [a[0]], [a[1], a[1]], [a[2]], 32, [], torch.bfloat16)
    with pytest.raises(ValueError, match="linear_w4a8_tiled_cat"):  # b's in_features are 256, x's 128
        ops.linear_w4a8_tiled_cat(xd, xs, [a[0], b[0]], [a[1], b[1]], [a[2], b[2]], 32, [], torch.bfloat16)
    with pytest.raises((ValueError, TypeError), match="linear_w4a8_tiled_cat"):  # float activations
        ops.linear_w4a8_tiled_cat(torch.randn(1, 128), xs, [a[0]], [a[1]], [a[2]], 32, [], torch.bfloat16)


def w4a8_siblings(x, *flat):
    """q, k and v on one quantized row, then a lone output projection on their sum."""
    w = [flat[i:i + 3] for i in range(0, len(flat), 3)]
    xd, xs = ops.quantize_per_token(x, "qint8")
    q, k, v = (ops.linear_w4a8_tiled(xd, xs, *w[i], 32, None, torch.bfloat16) for i in range(3))
    h = q + torch.nn.functional.pad(k + v, (0, q.shape[-1] - k.shape[-1]))
    hd, hs = ops.quantize_per_token(h, "qint8")
    return ops.linear_w4a8_tiled(hd, hs, *w[3], 32, None, torch.bfloat16)


def w4a8_weights():
    shapes = [(128, 128), (64, 128), (64, 128), (128, 128)]
    return [tiled_weight(n, k, seed=i, params_dtype=torch.bfloat16) for i, (n, k) in enumerate(shapes)]


def test_pass_fuses_w4a8_siblings_and_keeps_results():
    flat = [t for w in w4a8_weights() for t in w]
    x = torch.randn(1, 1, 128).bfloat16()
    gm = make_fx(w4a8_siblings, tracing_mode="fake")(x, *flat)
    quanto.fusion.fuse_sibling_linears(gm.graph)
    gm.recompile()
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(ops.linear_w4a8_tiled_cat.default) == 1  # q/k/v
    assert targets.count(ops.linear_w4a8_tiled.default) == 1  # the output projection has no sibling
    assert torch.equal(gm(x, *flat), w4a8_siblings(x, *flat))


def test_pass_leaves_prefill_rows_alone():
    flat = [t for w in w4a8_weights() for t in w]
    gm = make_fx(w4a8_siblings, tracing_mode="fake")(torch.randn(1, 4, 128).bfloat16(), *flat)
    quanto.fusion.fuse_sibling_linears(gm.graph)
    assert not any(n.target is ops.linear_w4a8_tiled_cat.default for n in gm.graph.nodes)


class Attention(torch.nn.Module):
    """q, k and v projections of one input, and o of their sum: a decode step's attention linears."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q, self.k, self.v = torch.nn.Linear(128, 128), torch.nn.Linear(128, 64), torch.nn.Linear(128, 64)
        self.o = torch.nn.Linear(128, 128)

    def forward(self, x):
        q = self.q(x)
        return self.o(q + torch.nn.functional.pad(self.k(x) + self.v(x), (0, 64)))


def test_torch_compile_fuses_a_dynamic_activation_model():
    """A model quantized with dynamic int8 activations, frozen, compiled with the pass: its q/k/v
    become one linear_w4a8_tiled_cat call, with the compiled graph's results without the pass."""
    model = Attention().to(torch.bfloat16)
    quanto.quantize(model, weights="qint4", group_size=32, activations="qint8", dynamic_activations=True)
    quanto.freeze(model)
    x = torch.randn(1, 1, 128).bfloat16()
    calls = []
    got = compiled_result(model, x, counting_pass(ops.linear_w4a8_tiled_cat.default, calls))
    assert calls and calls[-1] == 1
    assert torch.equal(got, compiled_result(model, x, None))
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), rtol=2e-2, atol=2e-2)
