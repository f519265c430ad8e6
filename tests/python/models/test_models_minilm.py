"""all-MiniLM-L6-v2 (packaged weights) through transformers: sentence-embedding cosine of every
weight qtype against the float model, and against optimum-quanto 0.2.7 on the same settings."""

import copy
from pathlib import Path

import pytest
import torch
from optimum import quanto as oq

import quanto
from quanto.models import QuantizedTransformersModel, sentence_embeddings

# Worst-sentence cosine bounds. The issue asks int4 >= 0.98; with min/max int4 weights at the
# default group size (128 for MiniLM) neither quanto nor optimum-quanto reaches it: both measure
# 0.936 (mean 0.950), so the bound here is what min/max int4 gives, with a margin.
MIN_COSINE = {"qint8": 0.999, "qint4": 0.92, "qfloat8_e4m3fn": 0.995, "qfloat8_e4m3fnuz": 0.995,
              "qfloat8_e5m2": 0.985, "qint2": None}
NOISE = 0.002  # quanto may trail optimum-quanto by this much at most


def cosines(model, batch, reference):
    return (sentence_embeddings(model, batch) * reference).sum(-1)


@pytest.fixture(scope="module")
def measured(minilm):
    model, _, batch, reference = minilm
    out = {}
    for name in MIN_COSINE:
        q = QuantizedTransformersModel.quantize(model, weights=name, inplace=False)
        o = copy.deepcopy(model)
        oq.quantize(o, weights=getattr(oq, name))
        oq.freeze(o)
        out[name] = (cosines(q, batch, reference), cosines(o, batch, reference))
    return out


@pytest.mark.parametrize("qtype", list(MIN_COSINE))
def test_minilm_embedding_cosine(measured, qtype):
    ours, theirs = measured[qtype]
    print(f"{qtype}: quanto worst {ours.min():.5f} mean {ours.mean():.5f}; "
          f"optimum-quanto worst {theirs.min():.5f} mean {theirs.mean():.5f}")
    if MIN_COSINE[qtype] is not None:
        assert ours.min() >= MIN_COSINE[qtype]
    assert ours.min() >= theirs.min() - NOISE
    assert ours.mean() >= theirs.mean() - NOISE


def test_minilm_w8a8_calibrated_vs_optimum_quanto(minilm):
    model, tokenizer, batch, reference = minilm
    calib = tokenizer(["Four score and seven years ago our fathers brought forth a new nation.",
                       "It is for us the living, rather, to be dedicated here to the unfinished work."],
                      padding=True, return_tensors="pt")
    q = QuantizedTransformersModel.quantize(model, weights="qint8", activations="qint8", inplace=False)
    with torch.no_grad(), quanto.Calibration():
        q(**calib)
    o = copy.deepcopy(model)
    oq.quantize(o, weights=oq.qint8, activations=oq.qint8)
    with torch.no_grad(), oq.Calibration():
        o(**calib)
    oq.freeze(o)
    ours, theirs = cosines(q, batch, reference), cosines(o, batch, reference)
    print(f"w8a8: quanto worst {ours.min():.5f}, optimum-quanto worst {theirs.min():.5f}")
    assert ours.min() >= 0.9
    assert ours.min() >= theirs.min() - NOISE  # measured 0.98170 vs 0.98176


def test_minilm_w8a8_dynamic_cosine(minilm):
    """Per-token int8 activations need no calibration and beat the calibrated static ones (worst
    0.9817): measured worst 0.99690, mean 0.99780."""
    model, _, batch, reference = minilm
    q = QuantizedTransformersModel.quantize(model, weights="qint8", activations="qint8", dynamic_activations=True,
                                            inplace=False)
    ours = cosines(q, batch, reference)
    print(f"w8a8 dynamic: worst {ours.min():.5f} mean {ours.mean():.5f}")
    assert ours.min() >= 0.995


def test_minilm_save_reload_generic_class(minilm, tmp_path):
    """BertModel has no auto class here: the generic wrapper rebuilds config.architectures."""
    model, _, batch, reference = minilm
    q = QuantizedTransformersModel.quantize(model, weights="qint4", inplace=False)
    q.save_pretrained(tmp_path)
    r = QuantizedTransformersModel.from_pretrained(tmp_path)
    assert type(r.model) is type(model)
    assert torch.equal(sentence_embeddings(r, batch), sentence_embeddings(q, batch))


EVALUATION = __import__("json").loads((Path(__file__).resolve().parents[2] / "data" / "minilm_sentences.json")
                                      .read_text(encoding="utf-8"))
CALIBRATION = [s.strip() for s in (Path(__file__).resolve().parents[2] / "data" / "calibration_sentences.txt")
               .read_text(encoding="utf-8").splitlines() if s.strip()]


@pytest.fixture(scope="module")
def gptq_minilm(minilm):
    """int4 (group 128) GPTQ (act-order, 10% dampening), calibrated one sentence at a time (no padding) on sentences disjoint
    from the evaluation set (tests/data/calibration_sentences.txt)."""
    model, tokenizer, batch, reference = minilm
    q = quanto.quantize(model, weights="qint4", optimizer=quanto.GptqOptimizer(percdamp=0.1, actorder=True),
                        inplace=False)
    with torch.no_grad(), quanto.Calibration():
        for s in CALIBRATION:
            q(**tokenizer(s, return_tensors="pt"))
    quanto.freeze(q)
    return q


def test_minilm_int4_gptq_cosine(minilm, gptq_minilm):
    model, _, batch, reference = minilm
    ours = cosines(gptq_minilm, batch, reference)
    o = copy.deepcopy(model)
    oq.quantize(o, weights=oq.qint4)
    oq.freeze(o)
    minmax = cosines(o, batch, reference)
    print(f"qint4 gptq: worst {ours.min():.5f} mean {ours.mean():.5f}; "
          f"optimum-quanto min/max worst {minmax.min():.5f} mean {minmax.mean():.5f}")
    assert not set(CALIBRATION) & set(EVALUATION["models"] + EVALUATION["cpp_example"]["evaluation"])
    assert ours.min() >= 0.98  # measured worst 0.9811, mean 0.9847
    assert ours.min() >= minmax.min() + 0.03


def test_minilm_int4_gptq_save_reload_and_optimum_quanto(minilm, gptq_minilm, tmp_path):
    """GPTQ writes the standard int4 format: quanto and optimum-quanto 0.2.7 reload it identically."""
    from safetensors.torch import load_file, save_file

    model, _, batch, _ = minilm
    save_file(gptq_minilm.state_dict(), tmp_path / "model.safetensors")
    qmap = quanto.quantization_map(gptq_minilm)
    assert all(v == {"weights": "qint4", "activations": "none"} for v in qmap.values())
    state = load_file(tmp_path / "model.safetensors")
    want = sentence_embeddings(gptq_minilm, batch)
    r = quanto.requantize(copy.deepcopy(model), state, qmap)
    assert torch.equal(sentence_embeddings(r, batch), want)
    o = copy.deepcopy(model)
    oq.requantize(o, load_file(tmp_path / "model.safetensors"), qmap)
    torch.testing.assert_close(sentence_embeddings(o, batch), want, rtol=1e-4, atol=1e-4)


def test_gptq_freeze_without_calibration_names_the_problem(minilm):
    model, _, _, _ = minilm
    q = quanto.quantize(model, weights="qint4", optimizer="gptq", inplace=False)
    with pytest.raises(ValueError, match="needs calibration data"):
        quanto.freeze(q)
    with pytest.raises(ValueError, match="2/4-bit"):
        quanto.quantize(model, weights="qint8", optimizer="gptq", inplace=False)


def test_minilm_w8a8_dynamic_target_recipes(minilm):
    """The issue's W8A8 target is a worst cosine >= 0.998. Plain int8 per-token activations give
    0.9969 (SmoothQuant cannot help much: post-norm BERT folds only value -> attention.output.dense).
    The loss is in the q/k/v inputs (the LayerNorm outputs with outlier channels): float8 e4m3
    per-token activations (measured 0.99850), or int8 ones with the q/k/v inputs left float (a
    mixed recipe, measured 0.99849), reach it."""
    model, _, batch, reference = minilm
    fp8 = QuantizedTransformersModel.quantize(model, weights="qint8", activations="qfloat8", dynamic_activations=True,
                                              inplace=False)
    mixed = quanto.quantize(model, weights="qint8", activations="qint8", dynamic_activations=True,
                            exclude="*.attention.self.*", inplace=False)
    quanto.quantize(mixed, weights="qint8", include="*.attention.self.*")
    c8, cm = cosines(fp8, batch, reference), cosines(mixed, batch, reference)
    print(f"W8 x float8 dynamic: worst {c8.min():.5f}; W8A8 dynamic with float q/k/v inputs: worst {cm.min():.5f}")
    assert c8.min() >= 0.998 and cm.min() >= 0.998


@torch.no_grad()
def test_minilm_int4_mixed_recipe_reaches_099(minilm):
    """int4 g128 alone stays below the issue's 0.99 (GPTQ 0.9811 at best: more calibration
    sentences, other dampening or AWQ+GPTQ do not help); keeping the FFN output layers and the last
    layer at int8 weights (a mixed recipe: ~44% of the linear weights) reaches it (measured 0.99087)."""
    model, tokenizer, batch, reference = minilm
    int8 = ["*.layer.*.output.dense", "encoder.layer.5.*"]
    q = quanto.quantize(model, weights="qint4", optimizer="gptq", exclude=int8, inplace=False)
    quanto.quantize(q, weights="qint8", include=int8)
    with quanto.Calibration():
        for s in CALIBRATION:
            q(**tokenizer(s, return_tensors="pt"))
    quanto.freeze(q)
    ours = cosines(q, batch, reference)
    print(f"mixed int4 g128 GPTQ + int8 FFN outputs and layer 5: worst {ours.min():.5f} mean {ours.mean():.5f}")
    assert ours.min() >= 0.989
