"""End to end on an encoder: all-MiniLM-L6-v2 embedding a batch of 8 sentences, float against quanto.

Rows: torch fp32 and bf16 (the baseline is the faster of the two on this machine), quanto int8 and
int4 weights (weight-only: activations stay float), and int8 / int4 weights with dynamic per-token
int8 activations (W8A8 / W4A8: integer dot products where the CPU kernels have them). Every row
gives the median time of a forward pass over the batch (tokenized once, padded to the longest
sentence), its ratio to the float baseline (> 1: faster) and the worst cosine of its embeddings
against fp32's.

Run: make bench (this script: `.venv/bin/python bench/bench_minilm.py`)
"""

import copy
import json
import statistics
import time
from pathlib import Path

import torch

import quanto
from quanto.models import load_minilm, sentence_embeddings

SENTENCES = json.loads((Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_sentences.json")
                       .read_text())["models"]
REPS = 30


@torch.no_grad()
def median_ms(model, batch, reps=REPS):
    for _ in range(3):
        model(**batch)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        model(**batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@torch.no_grad()
def worst_cosine(model, batch, reference):
    return float((sentence_embeddings(model, batch) * reference).sum(-1).min())


def main():
    model, tokenizer = load_minilm(torch.float32)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        reference = sentence_embeddings(model, batch)
    floats = {"fp32": model, "bf16": copy.deepcopy(model).to(torch.bfloat16)}
    times = {k: median_ms(m, batch) for k, m in floats.items()}
    base_name = min(times, key=times.get)
    base = floats[base_name]
    print(f"\n### all-MiniLM-L6-v2, batch of {len(SENTENCES)} sentences ({batch['input_ids'].shape[1]} tokens), "
          f"{torch.get_num_threads()} threads; baseline: {base_name} (this machine's faster float path)\n")
    print("| setting | ms per batch | x float | worst cosine vs fp32 |")
    print("| --- | ---: | ---: | ---: |")
    for name, m in floats.items():
        print(f"| torch {name} | {times[name]:.1f} | {times[base_name] / times[name]:.2f} | "
              f"{worst_cosine(m, batch, reference):.4f} |")
    settings = [("int8 weights", "qint8", None), ("int4 weights", "qint4", None),
                ("W8A8 dynamic", "qint8", "qint8"), ("W4A8 dynamic", "qint4", "qint8")]
    for label, weights, activations in settings:
        q = copy.deepcopy(base)
        quanto.quantize(q, weights=weights, activations=activations, dynamic_activations=activations is not None)
        quanto.freeze(q)
        ms = median_ms(q, batch)
        print(f"| quanto {label} | {ms:.1f} | {times[base_name] / ms:.2f} | {worst_cosine(q, batch, reference):.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
