"""SmoothQuant and AWQ on the packaged real models (guards; examples/activation_aware_tables.py
measures the full tables). Calibration texts are disjoint from the evaluation texts."""

import copy
from pathlib import Path

import torch

import quanto
from quanto.models import perplexity, sentence_embeddings

DATA = Path(__file__).resolve().parents[2] / "data"
CALIBRATION = [s.strip() for s in (DATA / "calibration_sentences.txt").read_text(encoding="utf-8").splitlines()
               if s.strip()]


def gettysburg_ids(tokenizer):
    return tokenizer((DATA / "gettysburg_address.txt").read_text(encoding="utf-8"), return_tensors="pt").input_ids


@torch.no_grad()
def test_smollm2_smoothquant_rescues_static_w8a8(smollm2, smollm2_text_ids):
    model, tokenizer = smollm2
    calib, ids = gettysburg_ids(tokenizer), smollm2_text_ids[:512]
    ppl = {"fp32": perplexity(model, ids, 512)}
    for name in ("plain", "smoothquant"):
        m = copy.deepcopy(model)
        if name == "smoothquant":
            with quanto.SmoothQuant(m, alpha=0.75, exclude="lm_head") as sq:
                m(calib, use_cache=False)
            assert len(sq.smoothed) == 4 * 30  # q/k/v, o (GQA), gate/up, down in every layer
        quanto.quantize(m, weights="qint8", activations="qint8", exclude="lm_head")
        with quanto.Calibration():
            m(calib, use_cache=False)
        ppl[name] = perplexity(quanto.freeze(m), ids, 512)
        del m
    print("SmolLM2 W8A8 perplexity (512 tokens):", {k: round(v, 3) for k, v in ppl.items()})
    # measured 15.28 float, 68.5 plain, 20.7 smoothed (calibrated on 320 tokens only; the tables'
    # 1758-token calibration gives 24.05 vs 22.81 on the whole text)
    assert ppl["smoothquant"] < 0.4 * ppl["plain"]
    assert ppl["smoothquant"] < 1.5 * ppl["fp32"]


@torch.no_grad()
def test_smollm2_awq_beats_minmax(smollm2, smollm2_text_ids):
    """int4 (default groups) on the first 8 layers only, to keep it quick."""
    model, tokenizer = smollm2
    calib, ids = gettysburg_ids(tokenizer), smollm2_text_ids[:512]
    ppl = {}
    for name in ("minmax", "awq"):
        q = quanto.quantize(model, weights="qint4", optimizer=name, include="model.layers.[0-7].*", inplace=False)
        if name == "awq":
            with quanto.Calibration():
                q(calib, use_cache=False)
        ppl[name] = perplexity(quanto.freeze(q), ids, 512)
        del q
    print("SmolLM2 int4 layers 0-7 perplexity (512 tokens):", {k: round(v, 3) for k, v in ppl.items()})
    assert ppl["awq"] < 0.9 * ppl["minmax"]  # measured 18.54 vs 22.03 (float 15.28)


@torch.no_grad()
def test_minilm_awq_gptq(minilm):
    """BERT is post-norm: only value -> attention.output.dense folds; clipping and GPTQ do the rest."""
    model, tokenizer, batch, reference = minilm
    opt = quanto.AwqOptimizer(base="gptq")
    q = quanto.quantize(model, weights="qint4", optimizer=opt, inplace=False)
    with quanto.Calibration():
        for s in CALIBRATION:
            q(**tokenizer(s, return_tensors="pt"))
    quanto.freeze(q)
    assert sorted(e["predecessor"] for e in opt.report if e["predecessor"]) == sorted(
        f"encoder.layer.{i}.attention.self.value" for i in range(6))
    ours = (sentence_embeddings(q, batch) * reference).sum(-1)
    rtn = quanto.freeze(quanto.quantize(model, weights="qint4", inplace=False))
    minmax = (sentence_embeddings(rtn, batch) * reference).sum(-1)
    print(f"MiniLM int4 g128 worst cosine: min/max {minmax.min():.5f}, AWQ+GPTQ {ours.min():.5f}")
    assert ours.min() >= 0.975 and ours.min() >= minmax.min() + 0.03  # measured 0.9811 vs 0.9364
