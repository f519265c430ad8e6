"""`quanto quantize --dynamic-activations [--activations float8]`: the same files as Python
quanto's QuantizedModelForCausalLM.quantize(..., dynamic_activations=True) saves (tensors and
quantization map), loaded by Python quanto with per-token activations, by optimum-quanto 0.2.7 as
weight-only, and shown by `quanto inspect`; --activations alone is refused."""

import json

import pytest
import torch
from optimum.quanto import QuantizedModelForCausalLM as OQModelForCausalLM
from safetensors import safe_open

from conftest import logits, run_cli, tiny_llama
from quanto.models import QuantizedModelForCausalLM
from test_quantize_llama import assert_same_tensors, read_all


@pytest.mark.parametrize("cli_weights,weights,cli_act,act", [("int8", "qint8", None, "qint8"),
                                                             ("int4", "qint4", "float8", "qfloat8_e4m3fn")])
def test_dynamic_activations_match_python_and_load(cli, tmp_path, cli_weights, weights, cli_act, act):
    tiny_llama().save_pretrained(tmp_path / "in")
    args = ["quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", cli_weights, "--dynamic-activations"]
    if cli_act:
        args += ["--activations", cli_act]
    p = run_cli(*args, "--json", check=0)
    assert json.loads(p.stdout)["activations"] == f"{act} (dynamic)"

    ref = QuantizedModelForCausalLM.quantize(tiny_llama(), weights=weights, activations=act, dynamic_activations=True)
    ref.save_pretrained(tmp_path / "ref")
    assert_same_tensors(read_all(tmp_path / "out"), read_all(tmp_path / "ref"))
    qmap = json.loads((tmp_path / "out/quanto_qmap.json").read_text())
    assert qmap == json.loads((tmp_path / "ref/quanto_qmap.json").read_text())
    assert qmap["model.layers.0.mlp.up_proj"] == {"weights": weights, "activations": "none",
                                                  "dynamic_activations": act}
    with safe_open(str(tmp_path / "out/model.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["quanto.modules"])
    assert meta["model.layers.1.self_attn.q_proj"]["dynamic_activations"] == act

    got = QuantizedModelForCausalLM.from_pretrained(tmp_path / "out")
    assert got.model.model.layers[0].mlp.up_proj.dynamic_activations
    assert torch.equal(logits(got), logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "ref")))
    # optimum-quanto skips the entry: the same weights with float activations.
    weight_only = QuantizedModelForCausalLM.quantize(tiny_llama(), weights=weights)
    o = OQModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    torch.testing.assert_close(logits(o), logits(weight_only), rtol=1e-4, atol=1e-4)

    shown = json.loads(run_cli("inspect", tmp_path / "out", "--json", check=0).stdout)
    up = next(m for m in shown["modules"] if m["name"] == "model.layers.0.mlp.up_proj")
    assert up["activations"] == f"{act} (dynamic)" and up["dynamic_activations"] == act
    assert f"{weights}/{act} (dynamic)" in run_cli("inspect", tmp_path / "out", check=0).stdout


def test_static_activations_are_refused(cli, tmp_path):
    tiny_llama().save_pretrained(tmp_path / "in")
    p = run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--activations", "int8", check=1)
    assert "needs --dynamic-activations" in p.stderr and "calibration" in p.stderr
    assert not (tmp_path / "out").exists()
    p = run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--dynamic-activations", "--activations", "int4")
    assert p.returncode != 0 and "int4" in p.stderr
