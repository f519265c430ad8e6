"""`quanto quantize` on generated tiny Llama checkpoints: the files are byte-identical to what
Python quanto's QuantizedModelForCausalLM saves with the same settings, and they load in quanto
and in optimum-quanto 0.2.7 with the same outputs. Sharded inputs, tied embeddings, dtypes."""

import json
import os
import sys

import pytest
import torch
from optimum.quanto import QuantizedModelForCausalLM as OQModelForCausalLM
from safetensors import safe_open

from conftest import IDS, logits, run_cli, tiny_llama
from quanto.models import QuantizedModelForCausalLM
from quanto.optimizers import HqqOptimizer

CASES = [("int8", "qint8", None), ("int4", "qint4", None), ("int4", "qint4", "hqq"), ("int2", "qint2", None),
         ("float8", "qfloat8", None), ("float8_e5m2", "qfloat8_e5m2", None)]


def read_all(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as f:
                for k in f.keys():
                    out[k] = f.get_tensor(k)
    return out


def assert_same_tensors(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].reshape(-1).view(torch.uint8), b[k].reshape(-1).view(torch.uint8)), k


@pytest.mark.parametrize("cli_weights,qtype,optimizer", CASES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_bit_identical_to_python_and_loads(cli, tmp_path, cli_weights, qtype, optimizer, dtype):
    if dtype == torch.float32 and cli_weights not in ("int8", "int4"):
        pytest.skip("fp32 covered by int8/int4")
    model = tiny_llama(dtype=dtype)
    model.save_pretrained(tmp_path / "in")
    args = ["quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", cli_weights]
    if optimizer:
        args += ["--optimizer", optimizer]
    p = run_cli(*args, check=0)
    assert "model.layers.0.mlp.up_proj.weight [384, 128]" in p.stdout and "SQNR" in p.stdout

    ref = QuantizedModelForCausalLM.quantize(tiny_llama(dtype=dtype), weights=qtype,
                                             optimizer=HqqOptimizer() if optimizer == "hqq" else None)
    ref.save_pretrained(tmp_path / "ref")
    assert_same_tensors(read_all(tmp_path / "out"), read_all(tmp_path / "ref"))
    assert json.loads((tmp_path / "out/quanto_qmap.json").read_text()) == \
        json.loads((tmp_path / "ref/quanto_qmap.json").read_text())
    assert sorted(os.listdir(tmp_path / "out")) == ["config.json", "generation_config.json", "model.safetensors",
                                                   "quanto_qmap.json"]

    # Same files, so the same reloaded model; close to the in-memory one (bf16 kernels may order sums
    # differently) and to optimum-quanto's reading of the CLI's files.
    expected = logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "ref"))
    got = logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "out"))
    assert torch.equal(got, expected)
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    torch.testing.assert_close(got, logits(ref), rtol=tol, atol=tol)
    o = OQModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    torch.testing.assert_close(logits(o), got, rtol=tol, atol=tol)


def test_tied_embeddings(cli, tmp_path):
    """Without --include-lm-head the tied head stays tied (nothing quantized for it)."""
    model = tiny_llama(tie=True)
    model.save_pretrained(tmp_path / "in")
    with safe_open(str(tmp_path / "in/model.safetensors"), "pt") as f:
        assert "lm_head.weight" not in f.keys()
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", "int4", check=0)
    qmap = json.loads((tmp_path / "out/quanto_qmap.json").read_text())
    assert "lm_head" not in qmap and not any("embed" in k for k in qmap)
    assert json.loads((tmp_path / "out/config.json").read_text())["tie_word_embeddings"] is True
    ref = QuantizedModelForCausalLM.quantize(tiny_llama(tie=True), weights="qint4")
    got = QuantizedModelForCausalLM.from_pretrained(tmp_path / "out")
    assert got.model.lm_head.weight.data_ptr() == got.model.model.embed_tokens.weight.data_ptr()
    assert torch.equal(logits(got), logits(ref))
    torch.testing.assert_close(logits(OQModelForCausalLM.from_pretrained(str(tmp_path / "out"))), logits(ref),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("cli_weights,qtype", [("int4", "qint4"), ("int8", "qint8")])
def test_tied_head_included_is_untied_like_python(cli, tmp_path, cli_weights, qtype):
    """--include-lm-head on a tied model does what QuantizedModelForCausalLM.quantize(exclude=[])
    does: lm_head quantized from the embedding's data, the embedding float, the config untied."""
    tiny_llama(tie=True).save_pretrained(tmp_path / "in")
    p = run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", cli_weights,
                "--include-lm-head", check=0)
    assert "lm_head.weight [256, 128] f32 -> " + qtype in p.stdout
    assert "model.embed_tokens.weight [256, 128] f32 copied" in p.stdout
    assert "tied to the input embeddings" in p.stdout
    ref = QuantizedModelForCausalLM.quantize(tiny_llama(tie=True), weights=qtype, exclude=[])
    ref.save_pretrained(tmp_path / "ref")
    assert_same_tensors(read_all(tmp_path / "out"), read_all(tmp_path / "ref"))
    assert json.loads((tmp_path / "out/quanto_qmap.json").read_text()) == \
        json.loads((tmp_path / "ref/quanto_qmap.json").read_text())
    config = json.loads((tmp_path / "out/config.json").read_text())
    assert config["tie_word_embeddings"] is False
    assert list(config) == list(json.loads((tmp_path / "in/config.json").read_text())), "key order kept"

    got = QuantizedModelForCausalLM.from_pretrained(tmp_path / "out")
    assert got.model.lm_head.weight.data_ptr() != got.model.model.embed_tokens.weight.data_ptr()
    assert type(got.model.lm_head).__name__ == "QLinear"
    assert torch.equal(logits(got), logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "ref")))
    torch.testing.assert_close(logits(got), logits(ref), rtol=1e-4, atol=1e-4)
    o = OQModelForCausalLM.from_pretrained(str(tmp_path / "out"))
    assert type(o._wrapped.lm_head).__name__ == "QLinear"
    torch.testing.assert_close(logits(o), logits(got), rtol=1e-4, atol=1e-4)


def test_tied_head_saved_twice_is_quantized_embedding_float(cli, tmp_path):
    """A head stored with the same bytes as an embedding of another name: the head is quantized
    with the flag, the embedding stays float."""
    from safetensors.torch import save_file
    torch.manual_seed(0)
    emb = torch.randn(64, 32)
    save_file({"tok.weight": emb, "lm_head.weight": emb.clone(), "proj.weight": torch.randn(48, 32)},
              str(tmp_path / "m.safetensors"))
    p = run_cli("quantize", tmp_path / "m.safetensors", "-o", tmp_path / "out", "--include-lm-head", check=0)
    assert "tok.weight [64, 32] f32 copied (embedding (tied to lm_head))" in p.stdout
    assert "lm_head.weight [64, 32] f32 -> qint8" in p.stdout
    assert json.loads((tmp_path / "out/quanto_qmap.json").read_text()) == \
        {"lm_head": {"weights": "qint8", "activations": "none"}, "proj": {"weights": "qint8", "activations": "none"}}
    p = run_cli("quantize", tmp_path / "m.safetensors", "-o", tmp_path / "out2", check=0)
    assert "lm_head.weight [64, 32] f32 copied (lm_head)" in p.stdout


def test_untied_head_with_flag(cli, tmp_path):
    tiny_llama().save_pretrained(tmp_path / "in")
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", "int8", "--include-lm-head", check=0)
    assert "lm_head" in json.loads((tmp_path / "out/quanto_qmap.json").read_text())
    ref = QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint8", exclude=[])
    assert torch.equal(logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "out")), logits(ref))


def test_sharded_input_keeps_shards(cli, tmp_path):
    tiny_llama(dtype=torch.float16).save_pretrained(tmp_path / "in", max_shard_size="150KB")
    in_index = json.loads((tmp_path / "in/model.safetensors.index.json").read_text())
    shards = sorted(set(in_index["weight_map"].values()))
    assert len(shards) > 2
    (tmp_path / "in/tokenizer_config.json").write_text("{}")
    (tmp_path / "in/sub").mkdir()
    (tmp_path / "in/sub/extra.json").write_text("[1]")
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", "int4", check=0)
    out_index = json.loads((tmp_path / "out/model.safetensors.index.json").read_text())
    assert sorted(set(out_index["weight_map"].values())) == shards
    assert not (tmp_path / "out/model.safetensors").exists()
    tensors = {}
    for s in shards:
        with safe_open(str(tmp_path / "out" / s), "pt") as f:
            for k in f.keys():
                assert out_index["weight_map"][k] == s
                tensors[k] = f.get_tensor(k)
    assert set(tensors) == set(out_index["weight_map"])
    assert out_index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in tensors.values())
    # A quantized tensor lives in the shard of the float weight it replaces.
    assert out_index["weight_map"]["model.layers.1.mlp.up_proj.weight._data._data"] == \
        in_index["weight_map"]["model.layers.1.mlp.up_proj.weight"]
    assert (tmp_path / "out/tokenizer_config.json").read_text() == "{}"
    assert (tmp_path / "out/sub/extra.json").read_text() == "[1]"
    ref = QuantizedModelForCausalLM.quantize(tiny_llama(dtype=torch.float16), weights="qint4")
    torch.testing.assert_close(logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "out")), logits(ref),
                               rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(logits(OQModelForCausalLM.from_pretrained(str(tmp_path / "out"))), logits(ref),
                               rtol=1e-2, atol=1e-2)


def test_scale_dtype_include_exclude_and_group_size(cli, tmp_path):
    tiny_llama(dtype=torch.bfloat16).save_pretrained(tmp_path / "in")
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", "int4", "--dtype", "float32",
            "--group-size", "64", "--include", "model.layers.*", "--exclude", "*.self_attn.v_proj", check=0)
    qmap = json.loads((tmp_path / "out/quanto_qmap.json").read_text())
    assert len(qmap) == 12 and not any(k.endswith("v_proj") for k in qmap)
    assert all(v["group_size"] == 64 for v in qmap.values())
    with safe_open(str(tmp_path / "out/model.safetensors"), "pt") as f:
        assert f.get_tensor("model.layers.0.mlp.up_proj.weight._scale").dtype == torch.float32
        assert f.get_tensor("model.layers.0.mlp.up_proj.weight._scale").shape == (384 * 128 // 64, 1)
        assert f.get_tensor("model.layers.0.self_attn.v_proj.weight").dtype == torch.bfloat16
    got = QuantizedModelForCausalLM.from_pretrained(tmp_path / "out")
    ref = QuantizedModelForCausalLM.quantize(tiny_llama(dtype=torch.bfloat16), weights="qint4", group_size=64,
                                             include="model.layers.*", exclude="*.self_attn.v_proj")
    torch.testing.assert_close(logits(got).float(), logits(ref).float(), rtol=0.05, atol=0.05)


def test_odd_shapes_and_conv_match_ops(cli, tmp_path):
    """Odd shapes (33x257, 7x129, a 4-D conv) against torch.ops.quanto directly."""
    from safetensors.torch import save_file
    import quanto  # noqa: F401  (loads the ops)
    ops = torch.ops.quanto
    torch.manual_seed(1)
    ts = {"a.weight": torch.randn(33, 257, dtype=torch.float16), "b.weight": torch.randn(7, 129),
          "c.weight": torch.randn(8, 3, 5, 5, dtype=torch.bfloat16), "a.bias": torch.randn(33, dtype=torch.float16),
          "counts": torch.arange(5)}
    save_file(ts, str(tmp_path / "odd.safetensors"))
    run_cli("quantize", tmp_path / "odd.safetensors", "-o", tmp_path / "out", "--weights", "int4", check=0)
    with safe_open(str(tmp_path / "out/model.safetensors"), "pt") as f:
        got = {k: f.get_tensor(k) for k in f.keys()}
    for name, gs in (("a", None), ("b", 32 if 129 % 32 == 0 else None), ("c", None)):
        w = ts[f"{name}.weight"]
        scale, shift = ops.minmax_scale_shift(w, "qint4", 0, gs)
        packed = ops.pack_codes(ops.affine_quantize(w, scale, shift, "qint4", 0, gs), 4)
        assert torch.equal(got[f"{name}.weight._data._data"], packed), name
        assert torch.equal(got[f"{name}.weight._scale"], scale) and torch.equal(got[f"{name}.weight._shift"], shift)
    assert torch.equal(got["a.bias"], ts["a.bias"]) and torch.equal(got["counts"], ts["counts"])


@pytest.mark.parametrize("optimizer", ["minmax", "symmetric"])
def test_zero_point_int4_bit_identical_to_python(cli, tmp_path, optimizer):
    """--zero-point stores uint8 zero-points (what compressed-tensors and GGUF can take exactly);
    --optimizer symmetric makes every zero-point 8. Same bytes as Python quanto with an optimizer
    that returns the same parameters as a zero-point."""
    import quanto

    ops = torch.ops.quanto
    tiny_llama(dtype=torch.bfloat16).save_pretrained(tmp_path / "in")
    # --optimizer symmetric implies --zero-point.
    zero_point = ["--zero-point"] if optimizer == "minmax" else []
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", "int4", "--optimizer", optimizer,
            *zero_point, check=0)
    params = ops.symmetric_scale_shift if optimizer == "symmetric" else ops.minmax_scale_shift

    def zero_point_optimizer(base, qtype, axis=0, group_size=None):
        scale, shift = params(base, qtype.name, axis, group_size)
        return scale, ops.shift_to_zeropoint(scale, shift, qtype.name)

    ref = QuantizedModelForCausalLM.quantize(tiny_llama(dtype=torch.bfloat16), weights=quanto.qint4,
                                             optimizer=zero_point_optimizer)
    ref.save_pretrained(tmp_path / "ref")
    out = read_all(tmp_path / "out")
    assert_same_tensors(out, read_all(tmp_path / "ref"))
    shift = out["model.layers.0.mlp.up_proj.weight._shift"]
    assert shift.dtype == torch.uint8
    if optimizer == "symmetric":
        assert (shift == 8).all()
    meta = json.loads((tmp_path / "out/quanto_qmap.json").read_text())
    assert meta["model.layers.0.mlp.up_proj"]["weights"] == "qint4"
    got = logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "out"))
    assert torch.equal(got, logits(QuantizedModelForCausalLM.from_pretrained(tmp_path / "ref")))


def test_zero_point_refused_for_8bit(cli, tmp_path):
    tiny_llama().save_pretrained(tmp_path / "in")
    p = run_cli("quantize", tmp_path / "in", "-o", tmp_path / "out", "--weights", "int8", "--zero-point", check=1)
    assert "--zero-point applies to 2/4-bit weights" in p.stderr


def test_quantize_format_compressed_tensors_and_export(cli, tmp_path):
    """`quanto quantize --format compressed-tensors` and `quanto export` (the CLI forwards to the
    Python package's exporter): the same folder either way, loadable by compressed-tensors."""
    tiny_llama(dtype=torch.bfloat16).save_pretrained(tmp_path / "in")
    env = dict(os.environ, QUANTO_PYTHON=sys.executable)
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "ct", "--weights", "int4", "--optimizer", "symmetric",
            "--group-size", "32", "--format", "compressed-tensors", env=env, check=0)
    assert not [p for p in os.listdir(tmp_path) if ".quanto-tmp-" in p]  # the intermediate folder is gone
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "q", "--weights", "int4", "--optimizer", "symmetric",
            "--group-size", "32", check=0)
    run_cli("export", tmp_path / "q", "-o", tmp_path / "ct2", "--format", "compressed-tensors", env=env, check=0)
    assert read_all(tmp_path / "ct").keys() == read_all(tmp_path / "ct2").keys()
    for k, v in read_all(tmp_path / "ct").items():
        assert torch.equal(v, read_all(tmp_path / "ct2")[k]), k
    config = json.loads((tmp_path / "ct/config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "compressed-tensors"
    # A float shift has no compressed-tensors equivalent: refused, naming the way out.
    run_cli("quantize", tmp_path / "in", "-o", tmp_path / "qf", "--weights", "int4", check=0)
    p = run_cli("export", tmp_path / "qf", "-o", tmp_path / "ct3", "--format", "compressed-tensors", env=env)
    assert p.returncode != 0 and "shift" in p.stderr and not (tmp_path / "ct3").exists()
    p = run_cli("quantize", tmp_path / "in", "-o", tmp_path / "x", "--allow-reencode", check=1)
    assert "--allow-reencode applies to --format" in p.stderr
