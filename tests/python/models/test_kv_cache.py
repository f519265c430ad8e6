"""quanto.cache.QuantizedKVCache: a transformers Cache holding keys/values as int4/int2 codes.

A tiny random Llama (built here, fixed seed) for generate(), the residual window, memory and
errors; SmolLM2-135M-Instruct (the session's packaged model) for greedy-token agreement and
perplexity against the float cache, where near-tied logits of a random model would say nothing.
"""

import warnings

import pytest
import torch
import transformers as tr

from quanto.cache import QuantizedKVCache, QuantizedKVLayer, QuantizedStates
from quanto.models import cached_perplexity

HEAD_DIM = 32


@pytest.fixture(scope="module")
def llama():
    cfg = tr.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    torch.manual_seed(0)
    return tr.LlamaForCausalLM(cfg).eval()


def prompt(n=150, batch=1, seed=1):
    return torch.randint(0, 256, (batch, n), generator=torch.Generator().manual_seed(seed))


def float_cache_bytes(cache):
    return sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)


@torch.no_grad()
def chunked_logits(model, ids, cache, chunk=16):
    return torch.cat([model(ids[:, i:i + chunk], cache=cache, use_cache=True).logits
                      for i in range(0, ids.shape[1], chunk)], dim=1)


def test_generate_through_past_key_values_and_cache(llama):
    ids = prompt()
    want = llama.generate(ids, max_new_tokens=12, do_sample=False)
    for kwarg in ("past_key_values", "cache"):
        cache = QuantizedKVCache(llama.config, nbits=4, q_group_size=32, residual_length=32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers 5.x: past_key_values -> cache
            got = llama.generate(ids, max_new_tokens=12, do_sample=False, **{kwarg: cache})
        assert got.shape == want.shape and torch.equal(got[:, :150], ids)
        assert cache.get_seq_length() == 150 + 12 - 1  # the last token is not fed back
        assert all(layer.quantized_keys.tokens > 0 for layer in cache.layers)


def test_generate_batched_with_padding_and_beams(llama):
    ids = prompt(100, batch=2)
    mask = torch.ones_like(ids)
    mask[1, :7] = 0  # left padding on the second row
    cache = QuantizedKVCache(llama.config, nbits=2, q_group_size=16, residual_length=16)
    out = llama.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, cache=cache)
    assert out.shape == (2, 108)
    # Beam search reorders the cache every step (exactly, on the codes).
    cache = QuantizedKVCache(llama.config, nbits=4, q_group_size=16, residual_length=16)
    out = llama.generate(prompt(80), max_new_tokens=8, num_beams=3, do_sample=False, cache=cache)
    assert out.shape == (1, 88) and cache.layers[0].quantized_keys.batch == 3


def test_int4_closer_to_float_than_int2(llama):
    ids = prompt(256)
    want = chunked_logits(llama, ids, tr.DynamicCache(config=llama.config))
    errors = {}
    for nbits in (4, 2):
        cache = QuantizedKVCache(llama.config, nbits=nbits, q_group_size=32, residual_length=32)
        got = chunked_logits(llama, ids, cache)
        errors[nbits] = ((got - want).norm() / want.norm()).item()
    print("relative logits error", errors)
    assert 0 < errors[4] < errors[2] / 2, errors
    assert errors[4] < 0.05, errors


@pytest.mark.parametrize("axis_key,axis_value", [(-1, 0), (0, 0), (-1, -1), (0, -1)])
def test_residual_window_stays_float(axis_key, axis_value):
    torch.manual_seed(0)
    layer = QuantizedKVLayer(nbits=2, axis_key=axis_key, axis_value=axis_value, q_group_size=16, residual_length=40)
    keys = torch.randn(2, 3, 300, HEAD_DIM)
    values = torch.randn(2, 3, 300, HEAD_DIM)
    steps = [(0, 100)] + [(t, t + 1) for t in range(100, 300)]
    for begin, end in steps:
        k, v = layer.update(keys[:, :, begin:end], values[:, :, begin:end])
        assert k.shape == v.shape == (2, 3, end, HEAD_DIM) and layer.get_seq_length() == end
        window = layer.keys.shape[-2]
        assert 40 <= window < 40 + 16 and layer.quantized_keys.tokens == end - window
        assert layer.quantized_keys.tokens % 16 == 0
        # The window's tokens, at least the 40 most recent, come back exactly ...
        assert torch.equal(k[:, :, end - window:], keys[:, :, end - window:end])
        assert torch.equal(v[:, :, end - window:], values[:, :, end - window:end])
        # ... and the older ones as int2 codes: close, not exact.
        if end > 100:
            old = slice(0, end - window)
            assert not torch.equal(k[:, :, old], keys[:, :, old])
            assert ((k[:, :, old] - keys[:, :, old]).norm() / keys[:, :, old].norm()) < 0.5


def test_residual_length_zero_quantizes_every_block():
    layer = QuantizedKVLayer(nbits=4, q_group_size=8, residual_length=0)
    layer.update(torch.randn(1, 2, 20, HEAD_DIM), torch.randn(1, 2, 20, HEAD_DIM))
    assert layer.quantized_keys.tokens == 16 and layer.keys.shape[-2] == 4


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("nbits", [4, 2])
def test_appending_blocks_equals_one_append_and_batch_selection_is_exact(axis, nbits):
    torch.manual_seed(0)
    states = torch.randn(3, 2, 96, HEAD_DIM, dtype=torch.bfloat16)
    whole, pieces = QuantizedStates(nbits, axis, 16), QuantizedStates(nbits, axis, 16)
    whole.append(states)
    for i in range(0, 96, 32):
        pieces.append(states[:, :, i:i + 32])
    ref = whole.dequantize()
    assert ref.dtype == torch.bfloat16 and torch.equal(pieces.dequantize(), ref)
    index = torch.tensor([2, 0, 2, 1])
    pieces.index_batch(index)
    assert torch.equal(pieces.dequantize(), ref[index])


def test_layer_batch_operations_are_exact():
    torch.manual_seed(0)
    layer = QuantizedKVLayer(nbits=4, q_group_size=16, residual_length=16)
    layer.update(torch.randn(3, 2, 70, HEAD_DIM), torch.randn(3, 2, 70, HEAD_DIM))
    step = torch.zeros(3, 2, 0, HEAD_DIM)
    keys, values = layer.update(step, step)  # no new token: what the layer holds, in float
    layer.batch_repeat_interleave(2)
    k, v = layer.update(step.repeat_interleave(2, 0), step.repeat_interleave(2, 0))
    assert torch.equal(k, keys.repeat_interleave(2, 0)) and torch.equal(v, values.repeat_interleave(2, 0))
    layer.batch_select_indices(torch.tensor([True, False, False, True, True, False]))  # rows 0, 1, 2 again
    layer.reorder_cache(torch.tensor([2, 0, 1]))
    k, _ = layer.update(step, step)
    assert torch.equal(k, keys[[2, 0, 1]])
    layer.reset()
    assert layer.get_seq_length() == 0 and layer.nbytes() == 0


def test_memory_is_packed():
    # 1 layer, batch 1, 4 heads, 1024 tokens, head_dim 64, float16: per-token groups of 64.
    n, g = 4 * 1024 * 64, 64
    for nbits in (4, 2):
        layer = QuantizedKVLayer(nbits=nbits, axis_key=0, axis_value=0, q_group_size=g, residual_length=0)
        layer.update(torch.randn(1, 4, 1024, 64, dtype=torch.float16), torch.randn(1, 4, 1024, 64, dtype=torch.float16))
        codes, params = n * nbits // 8, (n // g) * 2 * 2  # a float16 scale and shift per group
        assert layer.nbytes() == 2 * (codes + params)
        # nbits + 1/2 bits per value (scale and shift: 32 bits per 64 values) of float16's 16.
        assert layer.nbytes() * 16 == 2 * n * 2 * (nbits + 0.5)


def test_cache_bytes_below_float_cache(llama):
    ids = prompt(400)
    float_cache = tr.DynamicCache(config=llama.config)
    llama.generate(ids, max_new_tokens=4, do_sample=False, cache=float_cache)
    float_bytes = float_cache_bytes(float_cache)
    sizes = {}
    for nbits in (4, 2):
        cache = QuantizedKVCache(llama.config, nbits=nbits, q_group_size=32, residual_length=32)
        llama.generate(ids, max_new_tokens=4, do_sample=False, cache=cache)
        sizes[nbits] = cache.nbytes()
    print("cache bytes: float", float_bytes, "int4", sizes[4], "int2", sizes[2])
    # 403 tokens, 32..63 of them float32 in the window: int4 codes + a float32 scale and shift
    # per 32 values are 6/32 of float32, int2 4/32.
    assert sizes[2] < sizes[4] < 0.35 * float_bytes


def test_bad_arguments_name_the_problem(llama):
    with pytest.raises(ValueError, match=r"nbits must be one of \[2, 4\].*got 3"):
        QuantizedKVCache(llama.config, nbits=3)
    with pytest.raises(ValueError, match=r"axis must be one of 0 .*-1 .*got 1"):
        QuantizedKVCache(llama.config, axis_key=1)
    with pytest.raises(ValueError, match=r"\(values\): axis must be one of"):
        QuantizedKVCache(llama.config, axis_value=2)
    with pytest.raises(ValueError, match="q_group_size must be a positive int, got 0"):
        QuantizedKVCache(llama.config, q_group_size=0)
    with pytest.raises(TypeError, match="q_group_size must be a positive int, got str"):
        QuantizedKVCache(llama.config, q_group_size="64")
    with pytest.raises(ValueError, match="residual_length must be an int >= 0, got -1"):
        QuantizedKVCache(llama.config, residual_length=-1)
    # Per-token groups split head_dim (32 here): checked against the config up front ...
    with pytest.raises(ValueError, match=r"head_dim=32 .*got q_group_size=24 \(valid: \[1, 2, 4, 8, 16, 32\]\)"):
        QuantizedKVCache(llama.config, axis_value=0, q_group_size=24)
    # ... and at the first update without a config; per-channel groups (along tokens) need not divide it.
    cache = QuantizedKVCache(None, axis_key=0, q_group_size=24)
    with pytest.raises(ValueError, match="head_dim=32"):
        llama(prompt(10), cache=cache)
    QuantizedKVCache(llama.config, axis_key=-1, axis_value=-1, q_group_size=24)
    with pytest.raises(ValueError, match="cannot be cropped"):
        QuantizedKVCache(llama.config, q_group_size=32).crop(-1)
    sliding = tr.MistralConfig(vocab_size=64, hidden_size=64, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=2, num_key_value_heads=1, sliding_window=16)
    with pytest.raises(ValueError, match="full-attention layers only.*sliding_attention"):
        QuantizedKVCache(sliding)
    with pytest.raises(ValueError, match="per-channel groups take tokens 16 at a time, got 10"):
        QuantizedStates(4, -1, 16).append(torch.randn(1, 1, 10, 32))


# SmolLM2-135M-Instruct: a real model, whose greedy tokens are not near-ties.
@pytest.fixture(scope="module")
def smollm2_float(smollm2, smollm2_text_ids):
    model, _ = smollm2
    ids = smollm2_text_ids[:384].unsqueeze(0)
    generated = model.generate(ids[:, :320], max_new_tokens=16, do_sample=False, cache=tr.DynamicCache(config=model.config))
    return ids, generated, cached_perplexity(model, ids, tr.DynamicCache(config=model.config))


def test_smollm2_greedy_tokens_and_perplexity_near_float(smollm2, smollm2_float):
    model, _ = smollm2
    ids, want, (ppl, predictions) = smollm2_float
    results = {}
    for nbits in (4, 2):
        cache = QuantizedKVCache(model.config, nbits=nbits)
        got = model.generate(ids[:, :320], max_new_tokens=16, do_sample=False, cache=cache)
        agree = (got[0, 320:] == want[0, 320:]).float().mean().item()
        qppl, qpredictions = cached_perplexity(model, ids, QuantizedKVCache(model.config, nbits=nbits))
        results[nbits] = (agree, qppl, (qpredictions == predictions).float().mean().item())
    print(f"float ppl {ppl:.3f}; (greedy agreement, ppl, top-1 agreement): {results}")
    # Measured on this text: int4 14/16 greedy tokens, ppl within 0.1%, top-1 94%; int2 1.45x ppl, top-1 75%.
    assert results[4][0] >= 0.75 and results[4][2] >= 0.85
    assert abs(results[4][1] / ppl - 1) < 0.05
    assert ppl < results[2][1] < 2.5 * ppl and results[2][2] < results[4][2]
