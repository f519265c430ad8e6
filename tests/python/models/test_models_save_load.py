"""QuantizedModelForCausalLM on a tiny random Llama: file layout, sharding, optimum-quanto 0.2.7
interop both ways, loading without float weights, dtype, torch.compile and clear errors."""

import json
import os

import pytest
import torch
import transformers as tr
from optimum.quanto import QuantizedModelForCausalLM as OQModelForCausalLM
from torch.utils._python_dispatch import TorchDispatchMode

from quanto.models import QuantizedModelForCausalLM, QuantizedTransformersModel
from quanto.models.transformers_models import parse_size

WEIGHTS = ["qint8", "qint4", "qint2", "qfloat8"]


def tiny_llama(tie=True, seed=0):
    torch.manual_seed(seed)
    cfg = tr.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    return tr.LlamaForCausalLM(cfg).eval()


IDS = torch.tensor([[5, 17, 200, 3, 99, 42, 7, 128, 64, 1, 250, 33]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("weights", WEIGHTS)
def test_save_layout_and_reload(weights, tmp_path):
    q = QuantizedModelForCausalLM.quantize(tiny_llama(), weights=weights)
    q.save_pretrained(tmp_path)
    names = sorted(os.listdir(tmp_path))
    assert names == ["config.json", "generation_config.json", "model.safetensors", "quanto_qmap.json"]
    qmap = json.loads((tmp_path / "quanto_qmap.json").read_text())
    assert set(qmap) == {f"model.layers.{i}.{p}" for i in range(2) for p in
                         ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                          "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")}
    assert all(v == {"weights": q.quantization_map()[k]["weights"], "activations": "none"} for k, v in qmap.items())
    r = QuantizedModelForCausalLM.from_pretrained(tmp_path)
    assert torch.equal(logits(r), logits(q))
    assert torch.equal(r.generate(IDS, max_new_tokens=4, do_sample=False),
                       q.generate(IDS, max_new_tokens=4, do_sample=False))


def test_sharding_index_and_stale_files(tmp_path):
    q = QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint4")
    q.save_pretrained(tmp_path, max_shard_size="100KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2 and not (tmp_path / "model.safetensors").exists()
    assert shards == sorted(p for p in os.listdir(tmp_path) if p.startswith("model-"))
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for k, t in
                                                  q.model.state_dict().items() if k != "lm_head.weight")
    assert torch.equal(logits(QuantizedModelForCausalLM.from_pretrained(tmp_path)), logits(q))
    # Saving again unsharded replaces the shards and the index.
    q.save_pretrained(tmp_path)
    assert sorted(p for p in os.listdir(tmp_path) if "safetensors" in p) == ["model.safetensors"]
    assert torch.equal(logits(QuantizedModelForCausalLM.from_pretrained(tmp_path)), logits(q))


@pytest.mark.parametrize("weights", WEIGHTS)
def test_optimum_quanto_reads_quanto_files(weights, tmp_path):
    q = QuantizedModelForCausalLM.quantize(tiny_llama(), weights=weights)
    q.save_pretrained(tmp_path, max_shard_size="200KB")
    o = OQModelForCausalLM.from_pretrained(str(tmp_path))
    torch.testing.assert_close(logits(o), logits(q), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_quanto_reads_optimum_quanto_files(weights, tmp_path):
    o = OQModelForCausalLM.quantize(tiny_llama(), weights=weights, exclude="lm_head")
    o.save_pretrained(str(tmp_path))
    q = QuantizedModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(q), logits(o), rtol=1e-4, atol=1e-4)


def test_quantized_lm_head_unties(tmp_path):
    model = tiny_llama()
    q = QuantizedModelForCausalLM.quantize(model, weights="qint8", exclude=[])
    assert "lm_head" in q.quantization_map()
    q.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["tie_word_embeddings"] is False
    assert model.config.tie_word_embeddings is True  # the in-memory model's config is left alone
    assert torch.equal(logits(QuantizedModelForCausalLM.from_pretrained(tmp_path)), logits(q))


class _Factories(TorchDispatchMode):
    """Records which ops produce float CPU tensors (by shape) and the quantize ops called."""

    def __init__(self):
        super().__init__()
        self.made, self.quantize_calls = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func.namespace == "quanto" and "quantize" in func.__name__:
            self.quantize_calls += 1
        if isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.is_floating_point():
            self.made.append((func.overloadpacket.__name__, tuple(out.shape)))
        return out


def test_from_pretrained_never_materialises_float_weights(tmp_path):
    """Layers are built with empty weights (accelerate's init_empty_weights: each parameter is an
    uninitialised allocation moved at once to the meta device), so no float weight of a quantized
    layer is ever initialised, written or quantized: the quantized tensors are loaded as they are."""
    q = QuantizedModelForCausalLM.quantize(tiny_llama(tie=False), weights="qint4")
    q.save_pretrained(tmp_path)
    with _Factories() as seen:
        r = QuantizedModelForCausalLM.from_pretrained(tmp_path)
    linear_shapes = {(384, 128), (128, 384), (128, 128), (64, 128)}
    written = [(op, shape) for op, shape in seen.made if shape in linear_shapes and op not in ("empty", "empty_strided")]
    assert not written, f"float weights of quantized layers were materialised: {written[:5]}"
    assert seen.quantize_calls == 0
    assert all(not p.is_meta for p in r.model.parameters())
    assert not any(n.endswith("proj.weight") for n, _ in r.model.named_parameters())
    assert torch.equal(logits(r), logits(q))


def test_from_pretrained_dtype_and_device(tmp_path):
    q = QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint4")
    q.save_pretrained(tmp_path)
    r = QuantizedModelForCausalLM.from_pretrained(tmp_path, device="cpu", dtype=torch.bfloat16)
    out = logits(r)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), logits(q), rtol=0.1, atol=0.15)


def test_torch_compile_weight_only(tmp_path):
    q = QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint4")
    q.save_pretrained(tmp_path)
    r = QuantizedModelForCausalLM.from_pretrained(tmp_path)
    compiled = torch.compile(r.model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(IDS).logits, logits(q), rtol=1e-4, atol=1e-4)


def test_errors(tmp_path):
    with pytest.raises(TypeError, match="PreTrainedModel"):
        QuantizedModelForCausalLM.quantize(torch.nn.Linear(4, 4), weights="qint8")
    with pytest.raises(ValueError, match="qint3"):
        QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint3")
    with pytest.raises(ValueError, match="no quantized module"):
        QuantizedModelForCausalLM(tiny_llama())
    with pytest.raises(ValueError, match="no module"):
        QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint8", include="nothing.matches")
    for bad in ["5 parsecs", "", -3, 0]:
        with pytest.raises(ValueError, match="max_shard_size"):
            parse_size(bad)
    assert parse_size("2GiB") == 2 * 2**30 and parse_size("1.5MB") == 1_500_000 and parse_size(10) == 10

    with pytest.raises(FileNotFoundError, match="not a folder"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="quanto_qmap.json"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path)
    q = QuantizedModelForCausalLM.quantize(tiny_llama(), weights="qint4")
    q.save_pretrained(tmp_path, max_shard_size="200KB")
    with pytest.raises(ValueError, match="meta"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path, device="meta")
    # A quantization map that does not match the weights.
    qmap = json.loads((tmp_path / "quanto_qmap.json").read_text())
    (tmp_path / "quanto_qmap.json").write_text(json.dumps({k: {"weights": "qint8", "activations": "none"}
                                                           for k in qmap}))
    with pytest.raises(ValueError, match="quantization map"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path)
    (tmp_path / "quanto_qmap.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path)
    (tmp_path / "quanto_qmap.json").write_text(json.dumps(qmap))
    # A shard the index names is missing.
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    os.unlink(tmp_path / sorted(set(index["weight_map"].values()))[-1])
    with pytest.raises(FileNotFoundError, match="missing"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("[]")
    with pytest.raises(ValueError, match="weight_map"):
        QuantizedModelForCausalLM.from_pretrained(tmp_path)
    # The generic class needs config.architectures to name a transformers class.
    q.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["architectures"] = ["NoSuchModel"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="architectures"):
        QuantizedTransformersModel.from_pretrained(tmp_path)
