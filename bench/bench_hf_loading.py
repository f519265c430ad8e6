"""Peak memory of transformers' from_pretrained: bf16 vs quantizing while loading with quanto.QuantoConfig.

A randomly initialised Llama of about 1.1B parameters (TinyLlama-1.1B's shape: hidden 2048, 22
layers, 32 heads / 4 KV heads, MLP 5632, vocab 32000) is saved as bf16 safetensors in a temporary
folder. Each setting then loads it in a fresh Python process (one model in memory at a time):

- ``bf16``: ``AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)``;
- ``int8`` / ``int4``: the same with ``quantization_config=quanto.QuantoConfig(weights=...)``
  (lm_head stays bf16, as transformers' default ``modules_to_not_convert`` says).

Per process: RSS after the imports (torch, transformers, quanto: the runtime's own), peak RSS while
loading (VmHWM, the kernel's high-water mark; it counts the checkpoint's memory-mapped pages
that are resident too), the peak of anonymous memory sampled every 5 ms (RssAnon: what the
process allocated itself), RSS after loading and after one forward of 4 tokens (a plain bf16 load
maps the file without reading it: its weights become resident when first used), the load time and
the bytes of the loaded model's tensors (parameters and buffers). A last row reloads the int4 model
saved by ``save_pretrained`` (no config argument: quanto's saved format, never float).

Run: python bench/bench_hf_loading.py [--keep DIR] [--checkpoint DIR]
(not part of make test; needs ~3 GB of disk and, for the bf16 row, ~3 GB of memory)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Runs in a fresh interpreter: imports, then one from_pretrained, reporting memory as JSON.
CHILD = r"""
import json, os, sys, threading, time
def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) * 1024
    return out
import torch, transformers, quanto
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging
hf_logging.set_verbosity_error(); hf_logging.disable_progress_bar()
folder, setting, save_to = sys.argv[1], sys.argv[2], sys.argv[3]
base = status()
peak_anon = [base["RssAnon"]]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak_anon[0] = max(peak_anon[0], status()["RssAnon"])
        time.sleep(0.005)
t = threading.Thread(target=sample, daemon=True); t.start()
kw = {} if setting in ("bf16", "reload") else {"quantization_config": quanto.QuantoConfig(weights=setting)}
t0 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, **kw)
load_s = time.perf_counter() - t0
stop.set(); t.join()
after = status()
# What the model holds (parameters and buffers, in the kernels' layouts); model.state_dict() would
# convert every weight back to the file's layout first, a transient copy that would inflate RSS.
size = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
ids = torch.tensor([[1, 100, 200, 300]])
with torch.no_grad():
    finite = bool(torch.isfinite(model(ids).logits).all())
final = status()
if save_to != "-":
    model.save_pretrained(save_to)
print(json.dumps({"base_rss": base["VmRSS"], "peak_rss": after["VmHWM"], "peak_anon": peak_anon[0],
                  "after_rss": after["VmRSS"], "forward_rss": final["VmRSS"], "load_s": load_s,
                  "model_bytes": size, "finite": finite}))
"""


def build_checkpoint(folder: str):
    """The random ~1.1B Llama, created directly in bf16 (2.2 GB) and saved in 2 GB shards."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                      num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM._from_config(cfg, dtype=torch.bfloat16)
    model.save_pretrained(folder, max_shard_size="2GB")


def run(folder: str, setting: str, save_to: str = "-") -> dict:
    package = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [package, os.environ.get("PYTHONPATH", "")] if p))
    out = subprocess.run([sys.executable, "-c", CHILD, folder, setting, save_to], env=env, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the {setting} run failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep", help="parent folder of the temporary folder (default: the system's)")
    ap.add_argument("--checkpoint", help="reuse this bf16 checkpoint folder (built there first if it does not exist)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        ckpt = args.checkpoint or os.path.join(tmp, "llama-1.1b-bf16")
        saved = os.path.join(tmp, "llama-1.1b-int4-quanto")
        t0 = time.perf_counter()
        if not os.path.isdir(ckpt):
            # Built in a child too, so this process never holds a model.
            build = ("import sys; sys.path.insert(0, sys.argv[2]); import bench_hf_loading as b; "
                     "b.build_checkpoint(sys.argv[1])")
            subprocess.run([sys.executable, "-c", build, ckpt, os.path.dirname(os.path.abspath(__file__))],
                           check=True, capture_output=True, text=True)
        with open(os.path.join(ckpt, "config.json")) as f:
            c = json.load(f)
        files = sum(os.path.getsize(os.path.join(ckpt, f)) for f in os.listdir(ckpt) if f.endswith(".safetensors"))
        print(f"random Llama (hidden {c['hidden_size']}, {c['num_hidden_layers']} layers), bf16 checkpoint "
              f"{files / 2**30:.2f} GiB ({time.perf_counter() - t0:.0f} s to build or find)")
        print(f"{'setting':<22}{'after imports':>14}{'peak RSS':>10}{'peak anon':>11}{'RSS after':>11}"
              f"{'+1 forward':>12}{'model tensors':>15}{'load s':>8}")
        rows = [("bf16", "bf16 from_pretrained", "-"), ("int8", "QuantoConfig int8", "-"),
                ("int4", "QuantoConfig int4", saved), ("reload", "int4 saved, reloaded", "-")]
        for setting, label, save_to in rows:
            r = run(saved if setting == "reload" else ckpt, setting, save_to)
            gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
            print(f"{label:<22}{gib(r['base_rss']):>14}{gib(r['peak_rss']):>10}{gib(r['peak_anon']):>11}"
                  f"{gib(r['after_rss']):>11}{gib(r['forward_rss']):>12}{gib(r['model_bytes']):>15}{r['load_s']:>8.1f}"
                  + ("" if r["finite"] else "  (non-finite logits!)"))


if __name__ == "__main__":
    main()
