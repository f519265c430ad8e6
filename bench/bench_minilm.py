"""End to end on an encoder: all-MiniLM-L6-v2 embedding a batch of 8 sentences, float against quanto.

One table per CPU ISA tier this machine supports (each in a child process with quanto's kernels
and torch's own held to that tier: isa_tiers.py), so an AVX-512 machine also shows what an
AVX2-only one gets. Rows: torch fp32 and bf16 (the baseline is the faster of the two on that
tier, and the quantized models are made from it), quanto int8 and int4 weights (weight-only:
activations stay float), and int8 / int4 weights with dynamic per-token int8 activations (W8A8 / W4A8: integer dot products). Every row
gives the median time of a forward pass over the batch (tokenized once, padded to the longest
sentence), its ratio to the float baseline (> 1: faster) and the worst cosine of its embeddings
against fp32's. The baseline is timed in rounds alternating with every quantized model, so a
machine that slows down or speeds up during the run moves both sides of each ratio alike.

Run: make bench (this script: `.venv/bin/python bench/bench_minilm.py [--isas avx2,...]`)
"""
import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

import quanto
from isa_tiers import checked_tiers, parse_isas, run_as_tier
from quanto.models import load_minilm, sentence_embeddings

SENTENCES = json.loads((Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_sentences.json")
                       .read_text())["models"]
ROUNDS, REPS = 5, 6  # each model timed REPS times per round, rounds interleaved across models
SETTINGS = [("int8 weights", "qint8", None), ("int4 weights", "qint4", None),
            ("W8A8 dynamic", "qint8", "qint8"), ("W4A8 dynamic", "qint4", "qint8")]


@torch.no_grad()
def interleaved_ms(models, batch):
    """Median forward time (ms) of each model, timed REPS at a time in ROUNDS alternating rounds."""
    for m in models.values():
        for _ in range(3):
            m(**batch)
    times = {name: [] for name in models}
    for _ in range(ROUNDS):
        for name, m in models.items():
            for _ in range(REPS):
                start = time.perf_counter()
                m(**batch)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


@torch.no_grad()
def worst_cosine(model, batch, reference):
    return float((sentence_embeddings(model, batch) * reference).sum(-1).min())


def tier_table():
    model, tokenizer = load_minilm(torch.float32)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = sentence_embeddings(model, batch)
    floats = {"torch fp32": model, "torch bf16": copy.deepcopy(model).to(torch.bfloat16)}
    # The baseline is the faster float path on this tier (fp32 where the CPU has no native bf16),
    # and the quantized models start from it, as a user's would.
    first = interleaved_ms(floats, batch)
    base = min(floats, key=first.get)
    quantized = {}
    for label, weights, activations in SETTINGS:
        q = copy.deepcopy(floats[base])
        quanto.quantize(q, weights=weights, activations=activations, dynamic_activations=activations is not None)
        quanto.freeze(q)
        quantized[f"quanto {label}"] = q
    ms = interleaved_ms({**floats, **quantized}, batch)
    print(f"\n### all-MiniLM-L6-v2, batch of {len(SENTENCES)} sentences ({batch['input_ids'].shape[1]} tokens), "
          f"{torch.get_num_threads()} threads, quanto CPU ISA {torch.ops.quanto.cpu_isa()}; baseline: "
          f"{base.split()[1]} (this tier's faster float path)\n")
    print("| setting | ms per batch | x float | worst cosine vs fp32 |")
    print("| --- | ---: | ---: | ---: |")
    for name, m in {**floats, **quantized}.items():
        print(f"| {name} | {ms[name]:.1f} | {ms[base] / ms[name]:.2f} | {worst_cosine(m, batch, reference):.4f} |",
              flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--isas", type=parse_isas, help="ISA tiers (default: every SIMD tier this CPU supports)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one tier, in this process
    args = parser.parse_args()
    if args.child:
        tier_table()
        return
    for isa in checked_tiers(args.isas):
        run_as_tier(isa, __file__, ["--child"])


if __name__ == "__main__":
    main()
