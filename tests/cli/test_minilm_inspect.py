"""The packaged all-MiniLM-L6-v2 through the CLI (int8, int4-HQQ): reloaded in quanto and
optimum-quanto, embeddings close to float; and `quanto inspect` (text, --json schema, errors)."""

import json
import struct
from pathlib import Path

import pytest
import torch
from optimum.quanto import QuantizedTransformersModel as OQTransformersModel
from safetensors import safe_open
from transformers import AutoModel, AutoTokenizer

from conftest import run_cli
from quanto.models import QuantizedTransformersModel, minilm_path, sentence_embeddings

SENTENCES = json.loads((Path(__file__).resolve().parents[1] / "data/minilm_sentences.json").read_text())["models"]


class OQBert(OQTransformersModel):
    auto_class = AutoModel


@pytest.fixture(scope="module")
def minilm():
    src = minilm_path()
    tok = AutoTokenizer.from_pretrained(src)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = sentence_embeddings(AutoModel.from_pretrained(src).eval(), batch)
    return src, batch, ref


@pytest.mark.parametrize("args,qtype,min_cos", [(["--weights", "int8"], "qint8", 0.999),
                                                 (["--weights", "int4", "--optimizer", "hqq"], "qint4", 0.9)])
def test_minilm_quantize_and_reload(cli, minilm, tmp_path, args, qtype, min_cos):
    src, batch, ref = minilm
    out = tmp_path / "q"
    p = run_cli("quantize", src, "-o", out, *args, "--json", check=0)
    summary = json.loads(p.stdout)
    assert summary["tensors_quantized"] == 37 and summary["bytes_out"] < summary["bytes_in"]
    assert "tokenizer.json" in summary["copied_files"] and (out / "1_Pooling/config.json").is_file()
    assert all(v == {"weights": qtype, "activations": "none"}
               for v in json.loads((out / "quanto_qmap.json").read_text()).values())
    with torch.no_grad():
        q = sentence_embeddings(QuantizedTransformersModel.from_pretrained(out), batch)
        o = sentence_embeddings(OQBert.from_pretrained(str(out)), batch)
    cos = (q * ref).sum(-1)
    assert cos.min() > min_cos, cos
    torch.testing.assert_close(o, q, rtol=1e-3, atol=1e-3)

    # Every tensor that is not a quantized weight is copied unchanged, MiniLM's legacy integer
    # embeddings.position_ids included (the loaders ignore it as transformers does).
    with safe_open(str(Path(src) / "model.safetensors"), "pt") as fin, \
            safe_open(str(out / "model.safetensors"), "pt") as fout:
        copied = [k for k in fin.keys() if k in set(fout.keys())]
        assert "embeddings.position_ids" in copied
        assert len(copied) == len(list(fin.keys())) - summary["tensors_quantized"]
        for k in copied:
            assert torch.equal(fin.get_tensor(k), fout.get_tensor(k)), k


def test_inspect_text_and_json(cli, tmp_path, minilm):
    src = minilm[0]
    out = tmp_path / "q"
    run_cli("quantize", src, "-o", out, "--weights", "int4", "--include", "encoder.layer.0.*", check=0)
    p = run_cli("inspect", out, check=0)
    assert "quantized modules: 6" in p.stdout
    assert "encoder.layer.0.attention.self.query  qint4/none  per channel  [384, 384]" in p.stdout \
        or "encoder.layer.0.attention.self.query  qint4/none  group 128  [384, 384]" in p.stdout
    j = json.loads(run_cli("inspect", out, "--json", check=0).stdout)
    assert set(j) == {"path", "files", "sharded", "quantized", "total_bytes", "tensors", "modules"}
    assert j["quantized"] and j["files"] == ["model.safetensors"]
    assert all(set(t) >= {"name", "dtype", "shape", "bytes", "file"} for t in j["tensors"])
    assert j["total_bytes"] == sum(t["bytes"] for t in j["tensors"])
    m = {x["name"]: x for x in j["modules"]}
    assert m["encoder.layer.0.intermediate.dense"] == {
        "name": "encoder.layer.0.intermediate.dense", "weights": "qint4", "activations": "none", "group_size": 128,
        "shape": [1536, 384], "bytes": m["encoder.layer.0.intermediate.dense"]["bytes"]}
    f = json.loads(run_cli("inspect", src, "--json", check=0).stdout)
    assert not f["quantized"] and len(f["tensors"]) == 104


def test_inspect_errors(cli, tmp_path):
    run_cli("quantize", minilm_path(), "-o", tmp_path / "q", "--weights", "int8", check=0)
    (tmp_path / "q/quanto_qmap.json").write_text('{"encoder.layer.0.output.dense": {"weights": "qint3", '
                                                 '"activations": "none"}}')
    p = run_cli("inspect", tmp_path / "q")
    assert p.returncode == 1 and "unknown qtype 'qint3'" in p.stderr
    (tmp_path / "q/quanto_qmap.json").write_text('{"nope": {"weights": "qint8", "activations": "none"}}')
    p = run_cli("inspect", tmp_path / "q")
    assert p.returncode == 1 and "'nope'" in p.stderr
    raw = (tmp_path / "q/model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    (tmp_path / "q/model.safetensors").write_bytes(raw[:8] + raw[8:8 + n].replace(b'"I8"', b'"I9"', 1) + raw[8 + n:])
    p = run_cli("inspect", tmp_path / "q")
    assert p.returncode == 1 and "model.safetensors" in p.stderr and "dtype" in p.stderr.lower(), p.stderr
    p = run_cli("inspect", tmp_path / "missing")
    assert p.returncode == 1 and "does not exist" in p.stderr
