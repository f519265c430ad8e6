"""torch.ops.quanto.decode_attention against PyTorch's scaled_dot_product_attention, its errors,
and the transformers attention implementation built on it (quanto.models.use_decode_attention)."""

import pytest
import torch
import torch.nn.functional as F

import quanto

ops = torch.ops.quanto
TOL = {torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}


def sdpa_float64(q, k, v, mask, scale):
    if mask is not None:
        mask = mask.expand(q.shape[0], q.shape[1], 1, k.shape[2])
        mask = mask if mask.dtype == torch.bool else mask.double()
    return F.scaled_dot_product_attention(q.double(), k.double(), v.double(), attn_mask=mask, scale=scale,
                                          enable_gqa=True)


def cache(batch, kv_heads, used, dim, dtype, capacity=None):
    """k/v as a static cache's slice: the first `used` positions of a larger buffer (strided rows)."""
    g = torch.Generator().manual_seed(used * 31 + dim)
    full = torch.randn(batch, kv_heads, capacity or used, dim + 8, generator=g).to(dtype)
    return full[:, :, :used, :dim]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("batch,heads,kv_heads,length,dim", [(1, 9, 3, 128, 64), (2, 8, 2, 700, 128),
                                                             (1, 4, 4, 1, 64), (3, 6, 1, 37, 80)])
@pytest.mark.parametrize("mask_kind", ["none", "bool", "bool_per_head", "float"])
def test_matches_sdpa(dtype, batch, heads, kv_heads, length, dim, mask_kind):
    torch.manual_seed(0)
    q = torch.randn(batch, heads, 1, dim).to(dtype)
    k, v = cache(batch, kv_heads, length, dim, dtype, capacity=length + 5), cache(batch, kv_heads, length, dim, dtype)
    mask = {"none": None,
            "bool": torch.rand(batch, 1, 1, length) > 0.4,
            "bool_per_head": torch.rand(batch, heads, 1, length) > 0.4,
            "float": torch.randn(length).to(dtype)}[mask_kind]
    if mask is not None and mask.dtype == torch.bool:
        mask[..., 0] = True  # every query keeps a position (SDPA's all-masked rows are tested below)
    out = ops.decode_attention(q, k, v, mask, dim ** -0.5)
    want = sdpa_float64(q, k, v, mask, dim ** -0.5)
    assert out.dtype == dtype and out.shape == (batch, heads, 1, dim)
    torch.testing.assert_close(out.double(), want, atol=TOL[dtype], rtol=TOL[dtype])


def test_masked_positions_are_not_read():
    # A static cache's unused tail may hold anything: NaN there must not reach the output.
    q, k, v = torch.randn(1, 4, 1, 32), torch.randn(1, 2, 64, 32), torch.randn(1, 2, 64, 32)
    mask = torch.zeros(1, 1, 1, 64, dtype=torch.bool)
    mask[..., :20] = True
    k[:, :, 20:], v[:, :, 20:] = float("nan"), float("nan")
    out = ops.decode_attention(q, k, v, mask, 0.2)
    torch.testing.assert_close(out, sdpa_float64(q[..., :], k[:, :, :20], v[:, :, :20], None, 0.2).float())


def test_fully_masked_query_gives_zeros_like_sdpa():
    q, k, v = torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    mask = torch.zeros(1, 1, 1, 5, dtype=torch.bool)
    out = ops.decode_attention(q, k, v, mask, 0.3)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(out, F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=0.3))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("mask_kind", ["bool", "bool_per_head", "bool_strided", "float"])
def test_masked_tail_of_a_long_cache(mask_kind, threads):
    # A static cache's mask keeps a prefix of its capacity (a different one per batch row or head
    # here); the op covers only the positions up to the last one any query keeps, which one row
    # keeps alone, far from the others (a wrong extent loses half of that row's weights). The tail
    # holds NaN: it must not be read.
    batch, heads, kv_heads, capacity, dim, far = 2, 6, 3, 3000, 64, 2500
    used = torch.tensor([[37, 30, 5, 1, 29, 12], [3, 17, 40, 9, 33, 25]])  # [batch, heads]
    torch.manual_seed(0)
    q = torch.randn(batch, heads, 1, dim)
    k, v = torch.randn(batch, kv_heads, capacity, dim), torch.randn(batch, kv_heads, capacity, dim)
    if mask_kind == "bool":  # one prefix per batch row, broadcast over heads
        mask = torch.arange(capacity) < used[:, :1, None, None]
        mask[1, 0, 0, far] = True
    elif mask_kind == "bool_strided":  # positions every other element of a wider buffer
        wide = torch.arange(2 * capacity) < 2 * used[:, :, None, None]
        wide[0, 4, 0, 2 * far] = True
        mask = wide[..., ::2]
    else:
        mask = torch.arange(capacity) < used[:, :, None, None]
        mask[1, 3, 0, far] = True
    if mask_kind == "float":
        mask = torch.where(mask, torch.randn(mask.shape), torch.tensor(float("-inf")))
    k[:, :, far + 1:], v[:, :, far + 1:] = float("nan"), float("nan")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = ops.decode_attention(q, k, v, mask, dim ** -0.5)
    finally:
        torch.set_num_threads(previous)
    end = far + 1
    want = sdpa_float64(q, k[:, :, :end], v[:, :, :end], mask[..., :end], dim ** -0.5)
    torch.testing.assert_close(out.double(), want, atol=2e-6, rtol=2e-6)


def test_only_the_last_position_kept():
    # The extent is the whole cache: nothing trimmed, the last position read.
    q, k, v = torch.randn(1, 4, 1, 32), torch.randn(1, 2, 700, 32), torch.randn(1, 2, 700, 32)
    mask = torch.zeros(1, 1, 1, 700, dtype=torch.bool)
    mask[..., -1] = True
    out = ops.decode_attention(q, k, v, mask, 0.2)
    torch.testing.assert_close(out.double(), sdpa_float64(q, k, v, mask, 0.2), atol=2e-6, rtol=2e-6)


@pytest.mark.parametrize("threads", [1, 2])
def test_long_cache_split_over_threads(threads):
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        q, k, v = torch.randn(1, 8, 1, 64), torch.randn(1, 1, 5000, 64), torch.randn(1, 1, 5000, 64)
        out = ops.decode_attention(q, k, v, None, 0.125)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(out.double(), sdpa_float64(q, k, v, None, 0.125), atol=2e-6, rtol=2e-6)


def test_generic_path_and_meta_agree():
    q, k, v = torch.randn(2, 6, 1, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16)
    mask = torch.rand(2, 1, 1, 9) > 0.3
    mask[..., 0] = True
    previous = ops.force_generic_path(True)
    try:
        generic = ops.decode_attention(q, k, v, mask, 0.25)
    finally:
        ops.force_generic_path(previous)
    torch.testing.assert_close(ops.decode_attention(q, k, v, mask, 0.25), generic)
    meta = ops.decode_attention(q.to("meta"), k.to("meta"), v.to("meta"), mask.to("meta"), 0.25)
    assert meta.shape == generic.shape and meta.device.type == "meta"


def test_compiles_without_graph_breaks():
    q, k, v = torch.randn(1, 4, 1, 32), torch.randn(1, 2, 40, 32), torch.randn(1, 2, 40, 32)
    mask = torch.rand(1, 1, 1, 40) > 0.5
    mask[..., 0] = True

    def f(q, k, v, mask):
        return ops.decode_attention(q * 2, k, v, mask, 0.1) + 1

    torch.testing.assert_close(torch.compile(f, fullgraph=True)(q, k, v, mask), f(q, k, v, mask))


@pytest.mark.parametrize("args,error,message", [
    ((torch.randn(1, 2, 2, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8), None), ValueError, "one position"),
    ((torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8).double(), torch.randn(1, 2, 5, 8), None), TypeError, "float32"),
    ((torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8).bfloat16(), torch.randn(1, 2, 5, 8), None), TypeError,
     "one dtype"),
    ((torch.randn(1, 3, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8), None), ValueError, "multiple"),
    ((torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 4), torch.randn(1, 2, 5, 4), None), ValueError, "head_dim"),
    ((torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 4, 8), None), ValueError, "positions"),
    ((torch.randn(2, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8), None), ValueError, "4-d"),
    ((torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8), torch.ones(1, 1, 1, 4).bool()),
     ValueError, "does not broadcast"),
    ((torch.randn(1, 2, 1, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8), torch.ones(5, dtype=torch.int64)),
     TypeError, "mask must be bool"),
])
def test_bad_input_is_refused_with_a_clear_error(args, error, message):
    with pytest.raises(error, match=message):
        ops.decode_attention(*args, 0.5)
    with pytest.raises(error, match=message):  # the shape-only kernel refuses the same inputs
        ops.decode_attention(*[a.to("meta") if a is not None else None for a in args], 0.5)


def test_non_finite_scale_is_refused():
    with pytest.raises(ValueError, match="scale must be finite"):
        ops.decode_attention(torch.randn(1, 1, 1, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4), None,
                             float("inf"))


def test_gradient_request_is_refused_not_dropped():
    q = torch.randn(1, 2, 1, 8, requires_grad=True)
    k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    with pytest.raises(ValueError, match="computes no gradient"):
        ops.decode_attention(q, k, v, None, 0.3)
    with torch.no_grad():
        assert ops.decode_attention(q, k, v, None, 0.3).shape == (1, 2, 1, 8)


# --- the transformers attention implementation ---------------------------------------------------

def tiny_llama(dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=97, max_position_embeddings=128)
    torch.manual_seed(0)
    return LlamaForCausalLM(cfg).to(dtype).eval()


@pytest.fixture
def decode_calls(monkeypatch):
    """The query shapes of every decode_attention call the attention implementation makes."""
    calls = []
    original = ops.decode_attention

    def spy(q, *args):
        calls.append(tuple(q.shape))
        return original(q, *args)

    monkeypatch.setattr(ops, "decode_attention", spy)
    return calls


@pytest.mark.parametrize("cache_implementation", [None, "static"])
def test_generate_matches_sdpa(cache_implementation, decode_calls):
    model = tiny_llama(torch.float32)
    ids = torch.tensor([[5, 17, 3, 88, 41, 9]])
    kwargs = dict(max_new_tokens=12, do_sample=False, output_scores=True, return_dict_in_generate=True,
                  cache_implementation=cache_implementation)
    with torch.no_grad():
        want = model.generate(ids, **kwargs)
        quanto.models.use_decode_attention(model)
        assert model.config._attn_implementation == quanto.models.DECODE_ATTENTION
        got = model.generate(ids, **kwargs)
    assert len(decode_calls) == 2 * 11  # two layers, every step after the prompt
    assert torch.equal(got.sequences, want.sequences)
    for a, b in zip(got.scores, want.scores):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_prompt_and_training_keep_sdpa(decode_calls):
    model = quanto.models.use_decode_attention(tiny_llama(torch.float32))
    model.train()
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()  # prompt of 3 with gradients
    model(torch.tensor([[4]])).logits.sum().backward()  # one position, but gradients wanted
    assert decode_calls == []
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None


def test_quantized_bf16_model_decodes_with_it(decode_calls):
    model = tiny_llama(torch.bfloat16)
    quanto.quantize(model, weights="qint4", exclude="lm_head")
    quanto.freeze(model)
    ids = torch.tensor([[5, 17, 3, 88]])
    kwargs = dict(max_new_tokens=6, do_sample=False, output_scores=True, return_dict_in_generate=True)
    with torch.no_grad():
        want = model.generate(ids, **kwargs)
        got = quanto.models.use_decode_attention(model).generate(ids, **kwargs)
    assert len(decode_calls) == 2 * 5
    # bf16 activations: SDPA rounds its internals to bf16, the op does not, so later steps may pick
    # other tokens; the first decode step sees the same cache.
    torch.testing.assert_close(got.scores[1], want.scores[1], atol=6e-2, rtol=6e-2)


def test_refuses_what_is_not_a_transformers_model():
    with pytest.raises(TypeError, match="PreTrainedModel"):
        quanto.models.use_decode_attention(torch.nn.Linear(2, 2))
