"""The command-line entry (``python -m quanto.export``, which the native ``quanto export`` calls) and
folders written by the native ``quanto quantize`` CLI (sharded, with quanto's safetensors metadata)."""

import json
import os
import subprocess
import sys

import gguf
import pytest
import torch
import transformers as tr
from export_helpers import (CLI, ROOT, assert_bitwise_equal, bpe_tokenizer, ct_decompressed_weights, logits,
                            quanto_dequantized_weights, save_quantized, tiny_llama)

from quanto.export import __main__ as entry
from quanto.export import export

IDS = torch.tensor([[5, 17, 200, 3, 99, 42, 7, 128, 64, 1, 250, 33]])


def _run(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "quanto.export", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_module_entry_exports_and_refuses(tmp_path, capsys):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights="qint4", optimizer="symmetric")
    # One real `python -m quanto.export` run; the other cases call the same main() in this process.
    p = _run(src, "-o", tmp_path / "ct", "--format", "compressed-tensors", "--json")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["exact"] and len(report["layers"]) == 14 and "every weight exact" in p.stderr

    def main(*args):
        code = entry.main([str(a) for a in args])
        return code, capsys.readouterr()

    code, out = main(src, "-o", tmp_path / "ct", "--format", "compressed-tensors")
    assert code == 2 and "exists; choose another output or pass force=True (--force)" in out.err
    float_shift = save_quantized(tiny_llama(), tmp_path / "f", weights="qint4")
    code, out = main(float_shift, "-o", tmp_path / "ct2", "--format", "compressed-tensors")
    assert code == 2 and "float shift" in out.err and "--allow-reencode" in out.err
    code, out = main(float_shift, "-o", tmp_path / "ct2", "--format", "compressed-tensors", "--allow-reencode")
    assert code == 0 and "not exact" in out.err
    with pytest.raises(SystemExit) as e:
        main(src, "-o", tmp_path / "x", "--format", "onnx")
    assert e.value.code == 2 and "invalid choice: 'onnx'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cli():
    if not os.path.isfile(CLI):
        pytest.fail(f"the quanto CLI is not built at {CLI} (make build, or set QUANTO_CLI)")
    return CLI


def test_cli_quantized_sharded_folder(tmp_path, cli):
    """`quanto quantize` keeps the input's shards and adds its safetensors metadata: both exports read it,
    compressed-tensors keeps the sharding, and the results load in transformers."""
    tokenizer = bpe_tokenizer()
    model = tiny_llama(vocab_size=len(tokenizer))
    model.save_pretrained(tmp_path / "float", max_shard_size="300KB")
    tokenizer.save_pretrained(tmp_path / "float")
    p = subprocess.run([cli, "quantize", tmp_path / "float", "-o", tmp_path / "q", "--weights", "int8"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "q").glob("model-*.safetensors"))) > 1

    export(tmp_path / "q", tmp_path / "ct")
    shards = sorted((tmp_path / "ct").glob("model-*.safetensors"))
    index = json.loads((tmp_path / "ct" / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and set(index["weight_map"].values()) == {s.name for s in shards}
    assert (tmp_path / "ct" / "tokenizer.json").is_file() and not (tmp_path / "ct" / "quanto_qmap.json").exists()
    expected = quanto_dequantized_weights(tmp_path / "q")
    got = ct_decompressed_weights(tmp_path / "ct")
    for name, w in expected.items():
        assert_bitwise_equal(got[name], w, name)
    ct_model = tr.AutoModelForCausalLM.from_pretrained(tmp_path / "ct").eval()
    from quanto.models import QuantizedModelForCausalLM

    quanto_logits = logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "q").model, IDS)
    torch.testing.assert_close(logits(ct_model, IDS), quanto_logits, atol=1e-4, rtol=1e-4)

    report = export(tmp_path / "q", tmp_path / "m.gguf", format="gguf")
    assert {r.target for r in report.layers} == {"Q8_0"}
    assert len(gguf.GGUFReader(tmp_path / "m.gguf").tensors) == 2 * 9 + 3
