"""Peak memory of quanto's exports on a ~2 GB checkpoint: they stream tensor by tensor, so the peak
should stay near the libraries' own footprint plus a few copies of the largest tensor, whatever the
checkpoint's size.

The checkpoint is synthesized tensor by tensor (no model in memory): a Llama with TinyLlama's layer
shapes and 32 layers, every Linear weight qint8 (random codes, per-channel float32 scales), float32
embeddings and head, sharded like `quanto quantize` writes, with a small BPE tokenizer. Each export
(compressed-tensors, GGUF) runs in its own process, which reports its peak RSS (VmHWM). A third
process measures the baseline: importing quanto + transformers and reading the checkpoint's
description (meta model), without converting anything.

Run: PYTHONPATH=python .venv/bin/python bench/bench_export_memory.py [--layers 32] [--keep DIR]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]

# Each child prints its own peak RSS last: VmHWM of /proc/self/status, in KiB. (Not ru_maxrss: Linux
# carries the parent's resident size at fork into a child's ru_maxrss across exec.)
PEAK = "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))"
CHILD = f"""
import sys, time
from quanto.export import export
t = time.time()
report = export(sys.argv[1], sys.argv[2], format=sys.argv[3])
print(f"{{time.time() - t:.1f}}", len(report.layers), report.exact, {PEAK})
"""
BASELINE = f"""
import sys
from quanto.export._checkpoint import QuantoCheckpoint
ckpt = QuantoCheckpoint(sys.argv[1])
print(len(ckpt.modules), {PEAK})
"""


def synthesize(folder: Path, layers: int, shard_bytes: int = 500 * 2**20):
    import transformers as tr
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    hidden, inter, heads, kv, vocab = 2048, 5632, 32, 4, 32000
    config = tr.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                            num_attention_heads=heads, num_key_value_heads=kv, tie_word_embeddings=False)
    config.architectures = ["LlamaForCausalLM"]
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(config.to_json_string())
    g = torch.Generator().manual_seed(0)
    linears = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (kv * hidden // heads, hidden),
               "self_attn.v_proj": (kv * hidden // heads, hidden), "self_attn.o_proj": (hidden, hidden),
               "mlp.gate_proj": (inter, hidden), "mlp.up_proj": (inter, hidden), "mlp.down_proj": (hidden, inter)}

    def tensors():
        yield "model.embed_tokens.weight", torch.randn(vocab, hidden, generator=g) * 0.02
        for i in range(layers):
            for norm in ("input_layernorm", "post_attention_layernorm"):
                yield f"model.layers.{i}.{norm}.weight", torch.ones(hidden)
            for name, (out, cols) in linears.items():
                prefix = f"model.layers.{i}.{name}"
                yield f"{prefix}.weight._data", torch.randint(-127, 128, (out, cols), dtype=torch.int8, generator=g)
                yield f"{prefix}.weight._scale", torch.rand(out, 1, generator=g) * 1e-3 + 1e-4
                yield f"{prefix}.input_scale", torch.ones(())
                yield f"{prefix}.output_scale", torch.ones(())
        yield "model.norm.weight", torch.ones(hidden)
        yield "lm_head.weight", torch.randn(vocab, hidden, generator=g) * 0.02

    shards, current, size = [], {}, 0
    for name, t in tensors():
        if current and size + t.numel() * t.element_size() > shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = t
        size += t.numel() * t.element_size()
        if size > shard_bytes:
            shards.append(current)
            current, size = {}, 0
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / file, metadata={"format": "pt"})
        for name, t in shard.items():
            weight_map[name] = file
            total += t.numel() * t.element_size()
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    qmap = {f"model.layers.{i}.{name}": {"weights": "qint8", "activations": "none"}
            for i in range(layers) for name in linears}
    (folder / "quanto_qmap.json").write_text(json.dumps(qmap, indent=4) + "\n")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train([str(ROOT / "tests" / "data" / "declaration_of_independence.txt")],
              trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tr.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(folder)
    return total


def run_child(code: str, *args) -> list:
    p = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                       env={"PYTHONPATH": str(ROOT / "python"), "PATH": "/usr/bin:/bin",
                            "TRANSFORMERS_VERBOSITY": "error"})
    if p.returncode != 0:
        raise RuntimeError(p.stderr[-3000:])
    return p.stdout.strip().splitlines()[-1].split()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=32)
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one, removed)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="quanto-export-mem-"))
    try:
        src = work / "quanto-int8"
        if not src.exists():
            t = time.time()
            total = synthesize(src, args.layers)
            print(f"checkpoint: {total / 2**30:.2f} GiB of tensors in {len(list(src.glob('*.safetensors')))} shards, "
                  f"largest tensor {32000 * 2048 * 4 / 2**20:.0f} MiB (synthesized in {time.time() - t:.0f}s)")
        _, base = run_child(BASELINE, src)
        print(f"baseline (import quanto + transformers, read the checkpoint's description): peak RSS "
              f"{int(base) / 1024:.0f} MiB")
        for fmt, dst in (("compressed-tensors", work / "ct"), ("gguf", work / "model.gguf")):
            seconds, layers, exact, peak = run_child(CHILD, src, dst, fmt)
            size = sum(p.stat().st_size for p in ([dst] if dst.is_file() else dst.rglob("*")) if p.is_file())
            print(f"{fmt}: {layers} quantized weights (exact={exact}), {size / 2**30:.2f} GiB written in "
                  f"{float(seconds):.0f}s; peak RSS {int(peak) / 1024:.0f} MiB")
            shutil.rmtree(dst, ignore_errors=True) if dst.is_dir() else dst.unlink()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
