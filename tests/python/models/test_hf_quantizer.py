"""quanto.QuantoConfig as a transformers quantization method, on tiny random models saved locally:
quantizing while loading equals quantizing after loading, the float model never exists whole,
save/reload without a config gives identical outputs without float weights, the folder loads in
quanto.models and optimum-quanto 0.2.7, device maps, dtypes, generate, torch.compile, options and
errors."""

import json
import os
import subprocess
import sys
import weakref

import pytest
import torch
import transformers as tr
from optimum.quanto import QuantizedModelForCausalLM as OQModelForCausalLM
from safetensors.torch import load_file
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import (AutoModel, AutoModelForCausalLM, AutoModelForImageClassification,
                          AutoModelForSpeechSeq2Seq)

import quanto
from quanto.models import QuantizedModelForCausalLM, QuantizedTransformersModel

WEIGHTS = ["int8", "int4", "int2", "float8"]
IDS = torch.tensor([[5, 17, 200, 3, 99, 42, 7, 128, 64, 1, 250, 33]])


def llama(tie=False):
    cfg = tr.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    return tr.LlamaForCausalLM(cfg), AutoModelForCausalLM, {"input_ids": IDS}, "logits"


def bert():
    cfg = tr.BertConfig(vocab_size=300, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128)
    return tr.BertModel(cfg), AutoModel, {"input_ids": IDS}, "last_hidden_state"


def vit():
    cfg = tr.ViTConfig(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=128, num_labels=5)
    return tr.ViTForImageClassification(cfg), AutoModelForImageClassification, \
        {"pixel_values": torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))}, "logits"


def whisper():
    cfg = tr.WhisperConfig(vocab_size=128, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=32, max_target_positions=32,
                           decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1)
    inputs = {"input_features": torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1)),
              "decoder_input_ids": torch.tensor([[1, 5, 7], [1, 9, 3]])}
    return tr.WhisperForConditionalGeneration(cfg), AutoModelForSpeechSeq2Seq, inputs, "logits"


def gpt2():  # transformers' Conv1D layers, stored [in, out]
    cfg = tr.GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    return tr.GPT2LMHeadModel(cfg), AutoModelForCausalLM, {"input_ids": IDS % 128}, "logits"


MODELS = {"llama": llama, "bert": bert, "vit": vit, "whisper": whisper, "gpt2": gpt2}


def saved(tmp_path, name="llama", dtype=torch.bfloat16, **kw):
    """A float checkpoint folder of a tiny random model (fixed seed), and how to load and run it."""
    torch.manual_seed(0)
    model, auto, inputs, key = MODELS[name](**kw)
    folder = tmp_path / f"{name}-float"
    model.to(dtype).save_pretrained(folder)
    return folder, auto, inputs, key


def run(model, inputs, key):
    inputs = {k: v.to(model.dtype) if v.is_floating_point() else v for k, v in inputs.items()}
    with torch.no_grad():
        return getattr(model(**inputs), key)


@pytest.mark.parametrize("name,weights", [("llama", w) for w in WEIGHTS]
                         + [("bert", "int8"), ("vit", "int4"), ("whisper", "int4"), ("gpt2", "int4")])
def test_quantize_while_loading_equals_after_loading_and_reloads(name, weights, tmp_path):
    folder, auto, inputs, key = saved(tmp_path, name)
    q = auto.from_pretrained(folder, quantization_config=quanto.QuantoConfig(weights=weights))
    qmap = quanto.quantization_map(q)
    assert qmap and all(e["weights"] == quanto.hf_quantizer.config.as_qtype_name(weights, "w") for e in qmap.values())
    assert all(m.frozen for n, m in q.named_modules() if n in qmap)
    if name in ("llama", "gpt2"):
        assert "lm_head" not in qmap  # transformers' default: the output embeddings stay float
    # The same modules quantized after a plain bf16 load: bit-identical outputs.
    ref = auto.from_pretrained(folder).eval()
    quanto.freeze(quanto.quantize(ref, weights=qmap[next(iter(qmap))]["weights"], include=list(qmap)))
    want = run(ref, inputs, key)
    assert torch.equal(run(q, inputs, key), want)

    out = tmp_path / "quantized"
    q.save_pretrained(out)
    assert {"config.json", "model.safetensors", "quanto_qmap.json"} <= set(os.listdir(out))
    assert json.loads((out / "quanto_qmap.json").read_text()) == qmap
    saved_config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert saved_config["quant_method"] == quanto.hf_quantizer.QUANT_METHOD and "calibration" not in saved_config
    r = auto.from_pretrained(out)  # no config argument: config.json says how
    assert quanto.quantization_map(r) == qmap and r.dtype == torch.bfloat16
    assert torch.equal(run(r, inputs, key), want)
    # quanto's own loader reads the folder too
    assert torch.equal(run(QuantizedTransformersModel.from_pretrained(out).model, inputs, key), want)


class _LiveFloatWeights(TorchDispatchMode):
    """At each quanto weight quantization, counts the distinct float32 storages of weight shape,
    created so far, that are still alive (the loader casts each bf16 weight to float32 as it loads it)."""

    SHAPES = {(384, 128), (128, 384), (128, 128), (64, 128)}

    def __init__(self):
        super().__init__()
        self.made, self.max_alive, self.quantize_calls = [], 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "quanto" and func.__name__.split(".")[0] in ("affine_quantize", "symmetric_quantize"):
            self.quantize_calls += 1
            alive = {s.data_ptr() for s in (r() for r in self.made) if s is not None}
            self.max_alive = max(self.max_alive, len(alive))
        out = func(*args, **(kwargs or {}))
        if (isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.dtype == torch.float32
                and tuple(out.shape) in self.SHAPES):
            self.made.append(weakref.ref(out.untyped_storage()))
        return out


def test_the_float_model_never_exists_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DEACTIVATE_ASYNC_LOAD", "1")  # plain loads in this thread, where the mode sees them
    folder, *_ = saved(tmp_path)
    with _LiveFloatWeights() as seen:
        AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                             quantization_config=quanto.QuantoConfig(weights="int4"))
    assert seen.quantize_calls == 14 and seen.max_alive == 1  # one float weight at a time
    # The check can fail: loading whole, then quantizing, holds all 14 float weights at once.
    with _LiveFloatWeights() as seen:
        plain = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        quanto.freeze(quanto.quantize(plain, weights="qint4", exclude="lm_head"))
    assert seen.max_alive == 14


class _FloatFactories(TorchDispatchMode):
    """Float CPU tensors of the quantized layers' weight shapes written by any op (not just allocated)."""

    def __init__(self):
        super().__init__()
        self.written, self.quantize_calls = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.__name__.split(".")[0]
        if func.namespace == "quanto" and "quantize" in name:
            self.quantize_calls += 1
        if (isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.is_floating_point()
                and tuple(out.shape) in _LiveFloatWeights.SHAPES and name not in ("empty", "empty_strided")):
            self.written.append((name, tuple(out.shape)))
        return out


def test_reload_never_materialises_float_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DEACTIVATE_ASYNC_LOAD", "1")
    folder, *_ = saved(tmp_path)
    q = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(weights="int4"))
    q.save_pretrained(tmp_path / "q")
    with _FloatFactories() as seen:
        r = AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    assert not seen.written and seen.quantize_calls == 0, seen.written[:5]
    assert not any(n.endswith("proj.weight") for n, _ in r.named_parameters())
    assert torch.equal(run(r, {"input_ids": IDS}, "logits"), run(q, {"input_ids": IDS}, "logits"))
    # Saved again, the reloaded model writes the same tensors and map.
    r.save_pretrained(tmp_path / "again")
    first, again = load_file(tmp_path / "q" / "model.safetensors"), load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert (tmp_path / "again" / "quanto_qmap.json").read_text() == (tmp_path / "q" / "quanto_qmap.json").read_text()


@pytest.mark.parametrize("weights", WEIGHTS)
def test_optimum_quanto_and_quanto_models_read_sharded_folders(weights, tmp_path):
    folder, *_ = saved(tmp_path, dtype=torch.float32)  # optimum-quanto's float32 kernels: the existing tolerance
    q = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(weights=weights))
    q.save_pretrained(tmp_path / "q", max_shard_size="100KB")
    assert (tmp_path / "q" / "model.safetensors.index.json").is_file()
    want = run(q, {"input_ids": IDS}, "logits")
    assert torch.equal(run(AutoModelForCausalLM.from_pretrained(tmp_path / "q"), {"input_ids": IDS}, "logits"), want)
    assert torch.equal(run(QuantizedModelForCausalLM.from_pretrained(tmp_path / "q"), {"input_ids": IDS}, "logits"),
                       want)
    o = OQModelForCausalLM.from_pretrained(str(tmp_path / "q"))
    torch.testing.assert_close(run(o, {"input_ids": IDS}, "logits"), want, rtol=1e-4, atol=1e-4)


def test_options_group_size_optimizer_embeddings_and_exclusions(tmp_path):
    folder, *_ = saved(tmp_path)
    cfg = quanto.QuantoConfig(weights="qint4", group_size=32, optimizer="hqq", embeddings=True,
                              modules_to_not_convert=["lm_head", "model.layers.1.mlp"])
    q = AutoModelForCausalLM.from_pretrained(folder, quantization_config=cfg)
    qmap = quanto.quantization_map(q)
    assert qmap["model.embed_tokens"] == {"weights": "qint4", "activations": "none", "group_size": 32}
    assert qmap["model.layers.0.mlp.up_proj"]["group_size"] == 32
    assert "lm_head" not in qmap and not any(k.startswith("model.layers.1.mlp") for k in qmap)
    ref = AutoModelForCausalLM.from_pretrained(folder).eval()
    quanto.freeze(quanto.quantize(ref, weights="qint4", group_size=32, optimizer="hqq", embeddings=True,
                                  include=list(qmap)))
    assert torch.equal(run(q, {"input_ids": IDS}, "logits"), run(ref, {"input_ids": IDS}, "logits"))
    q.save_pretrained(tmp_path / "q")
    r = AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    assert quanto.quantization_map(r) == qmap
    assert torch.equal(run(r, {"input_ids": IDS}, "logits"), run(q, {"input_ids": IDS}, "logits"))


def test_tied_weights_stay_float(tmp_path):
    folder, *_ = saved(tmp_path, tie=True)
    q = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(
        weights="int8", modules_to_not_convert=[], embeddings=True))
    assert "lm_head" not in quanto.quantization_map(q) and "model.embed_tokens" not in quanto.quantization_map(q)
    assert q.lm_head.weight is q.model.embed_tokens.weight
    q.save_pretrained(tmp_path / "q")
    r = AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    assert r.lm_head.weight is r.model.embed_tokens.weight
    assert torch.equal(run(r, {"input_ids": IDS}, "logits"), run(q, {"input_ids": IDS}, "logits"))


def test_static_activations_take_a_calibration_callable(tmp_path):
    folder, auto, inputs, key = saved(tmp_path, "bert")
    cfg = quanto.QuantoConfig(weights="int8", activations="int8", modules_to_not_convert=["pooler"],
                              calibration=lambda model: model(**inputs))
    q = auto.from_pretrained(folder, quantization_config=cfg)
    # Equal to: quantize, freeze, calibrate after a plain load.
    ref = auto.from_pretrained(folder).eval()
    quanto.freeze(quanto.quantize(ref, weights="qint8", activations="qint8", exclude="pooler*"))
    with quanto.Calibration():
        ref(**inputs)
    assert quanto.quantization_map(q) == quanto.quantization_map(ref)
    assert any(e.get("quantize_output") is False for e in quanto.quantization_map(q).values())
    assert torch.equal(run(q, inputs, key), run(ref, inputs, key))
    q.save_pretrained(tmp_path / "q")
    r = auto.from_pretrained(tmp_path / "q")  # the scales are saved; no calibration needed
    assert torch.equal(r.encoder.layer[0].attention.self.query.input_scale,
                       q.encoder.layer[0].attention.self.query.input_scale)
    assert torch.equal(run(r, inputs, key), run(q, inputs, key))


def test_dynamic_activations_need_no_calibration(tmp_path):
    folder, auto, inputs, key = saved(tmp_path, "llama", dtype=torch.float32)
    cfg = quanto.QuantoConfig(weights="int8", activations="int8", dynamic_activations=True)
    q = auto.from_pretrained(folder, quantization_config=cfg)
    ref = quanto.quantize(auto.from_pretrained(folder).eval(), weights="qint8", activations="qint8",
                          dynamic_activations=True, exclude="lm_head")
    quanto.freeze(ref)
    qmap = quanto.quantization_map(q)
    assert qmap == quanto.quantization_map(ref)
    assert qmap["model.layers.0.mlp.down_proj"]["dynamic_activations"] == "qint8"
    assert torch.equal(run(q, inputs, key), run(ref, inputs, key))
    q.save_pretrained(tmp_path / "q")
    r = auto.from_pretrained(tmp_path / "q")
    assert r.model.layers[0].mlp.down_proj.dynamic_activations
    assert torch.equal(run(r, inputs, key), run(q, inputs, key))
    with pytest.raises(ValueError, match="needs activations"):
        quanto.QuantoConfig(weights="int8", dynamic_activations=True)
    with pytest.raises(ValueError, match="takes no calibration"):
        quanto.QuantoConfig(weights="int8", activations="int8", dynamic_activations=True, calibration=print)


@pytest.mark.parametrize("device_map", ["cpu", "auto", "dict"])
def test_device_maps(device_map, tmp_path):
    folder, *_ = saved(tmp_path)
    want = run(AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(weights="int4")),
               {"input_ids": IDS}, "logits")
    if device_map == "dict":  # each block its own entry
        device_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "cpu",
                      "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    q = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(weights="int4"),
                                             device_map=device_map)
    assert torch.equal(run(q, {"input_ids": IDS}, "logits"), want)
    q.save_pretrained(tmp_path / "q")
    r = AutoModelForCausalLM.from_pretrained(tmp_path / "q", device_map=device_map)
    assert torch.equal(run(r, {"input_ids": IDS}, "logits"), want)


def test_dtype_generate_and_compile(tmp_path):
    folder, *_ = saved(tmp_path)  # bf16 checkpoint
    q = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                             quantization_config=quanto.QuantoConfig(weights="int4"))
    up = q.model.layers[0].mlp.up_proj
    assert q.dtype == torch.float32 and up.weight_scale.dtype == torch.float32
    q16 = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float16,  # the deprecated spelling
                                               quantization_config=quanto.QuantoConfig(weights="int4"))
    assert q16.model.layers[0].mlp.up_proj.weight_scale.dtype == torch.float16
    q.save_pretrained(tmp_path / "q")
    r = AutoModelForCausalLM.from_pretrained(tmp_path / "q", dtype=torch.bfloat16)  # saved scales cast on load
    assert r.model.layers[0].mlp.up_proj.weight_scale.dtype == torch.bfloat16
    kw = dict(max_new_tokens=5, do_sample=False)
    tokens = q.generate(IDS, **kw)
    assert tokens.shape == (1, IDS.shape[1] + 5)
    assert torch.equal(AutoModelForCausalLM.from_pretrained(tmp_path / "q").generate(IDS, **kw), tokens)
    compiled = torch.compile(q, fullgraph=True)
    torch.testing.assert_close(run(compiled, {"input_ids": IDS}, "logits"), run(q, {"input_ids": IDS}, "logits"),
                               rtol=1e-4, atol=1e-4)


def test_errors(tmp_path):
    for bad in ["int3", "qint16", "bfloat16", ""]:
        with pytest.raises(ValueError, match="valid: int8, int4, int2, float8, "):
            quanto.QuantoConfig(weights=bad)
    with pytest.raises(ValueError, match="8-bit qtypes only, got 'int4'; valid: int8, float8"):
        quanto.QuantoConfig(activations="int4")
    with pytest.raises(TypeError, match="a string such as 'int4'"):
        quanto.QuantoConfig(weights=4)
    with pytest.raises(ValueError, match="group_size applies to 2/4-bit"):
        quanto.QuantoConfig(weights="int8", group_size=64)
    with pytest.raises(ValueError, match="positive int"):
        quanto.QuantoConfig(weights="int4", group_size=0)
    with pytest.raises(ValueError, match="quanto.Calibration"):
        quanto.QuantoConfig(weights="int4", optimizer="gptq")
    with pytest.raises(ValueError, match="valid: absmax, hqq, max, minmax"):
        quanto.QuantoConfig(weights="int4", optimizer="sgd")
    with pytest.raises(ValueError, match="valid for it: absmax"):
        quanto.QuantoConfig(weights="int8", optimizer="hqq")
    with pytest.raises(ValueError, match="nothing to quantize"):
        quanto.QuantoConfig(weights=None)
    with pytest.raises(TypeError, match="unknown arguments"):
        quanto.QuantoConfig(weights="int4", bits=4)
    with pytest.raises(TypeError, match="modules_to_not_convert"):
        quanto.QuantoConfig(modules_to_not_convert="lm_head")
    folder, *_ = saved(tmp_path)
    with pytest.raises(ValueError, match="calibration=fn"):
        AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(activations="int8"))
    with pytest.raises(ValueError, match="offloads to disk"):
        AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(),
                                             device_map={"model": "cpu", "lm_head": "disk"})
    with pytest.raises(ValueError, match="no module of LlamaForCausalLM was quantized"):
        AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(
            modules_to_not_convert=["model", "lm_head"]))
    q = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quanto.QuantoConfig(weights="int4"))
    q.save_pretrained(tmp_path / "q")
    qmap_path = tmp_path / "q" / "quanto_qmap.json"
    qmap = json.loads(qmap_path.read_text())
    qmap["model.layers.0.mlp.up_proj"]["weights"] = "qint8"  # does not match the saved tensors
    qmap_path.write_text(json.dumps(qmap))
    with pytest.raises(RuntimeError, match="conversion"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    qmap_path.unlink()
    with pytest.raises(FileNotFoundError, match="quanto_qmap.json"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "q")


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout


def test_registration_is_lazy():
    """import quanto does not import transformers; the method is registered once transformers loads
    its registry afterwards (the import hook). The other order (registry first, then quanto)
    registers at once: this test session's imports take it."""
    out = _python("import sys, quanto; print('transformers' in sys.modules); "
                  "from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING as m, "
                  "AUTO_QUANTIZATION_CONFIG_MAPPING as c; "
                  "print(m['quanto_native'].__name__, c['quanto_native'].__name__)")
    assert out.split() == ["False", "QuantoHfQuantizer", "QuantoConfig"]
    from transformers.quantizers.auto import AUTO_QUANTIZER_MAPPING

    assert AUTO_QUANTIZER_MAPPING["quanto_native"] is quanto.hf_quantizer.QuantoHfQuantizer


def _rss_file_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssFile:"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")
def test_release_pages_of_a_mapped_checkpoint_tensor(tmp_path):
    """A weight read through safetensors' memory map leaves resident memory once released, and
    still reads the same; allocator memory is left alone."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from quanto.hf_quantizer.pages import release_pages

    w = torch.randn(4096, 4096, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)  # 32 MiB
    save_file({"w": w}, tmp_path / "w.safetensors")
    with safe_open(tmp_path / "w.safetensors", "pt") as f:
        t = f.get_slice("w")[...]
        assert torch.equal(t, w)  # reads every page
        before = _rss_file_kib()
        assert release_pages(t)
        assert before - _rss_file_kib() > 24 * 1024  # most of the 32 MiB went back
        assert torch.equal(t, w)
    assert not release_pages(w)  # torch's own allocation: freed with the tensor, not advised


def test_config_deepcopy_shares_the_calibration_callable():
    import copy

    class Calibrator:
        def __init__(self):
            self.batches = [torch.zeros(2)]

        def __call__(self, model):
            pass

    calib = Calibrator()
    cfg = quanto.QuantoConfig(weights="int8", activations="int8", calibration=calib)
    clone = copy.deepcopy(cfg)
    assert clone.calibration is calib and clone.to_dict() == cfg.to_dict() and "calibration" not in cfg.to_dict()
    assert quanto.QuantoConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_smollm2_quantize_while_loading(smollm2, tmp_path):
    """The packaged SmolLM2-135M (tied embeddings), saved as bf16: int4 while loading equals int4
    after loading (save/reload is the tiny models' business)."""
    model, tokenizer = smollm2
    folder = tmp_path / "smollm2-bf16"
    # bf16 copies of the shared session fixture's tensors (the fixture itself stays float32)
    model.save_pretrained(folder, state_dict={k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt").input_ids
    q = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16,
                                             quantization_config=quanto.QuantoConfig(weights="int4"))
    qmap = quanto.quantization_map(q)
    assert len(qmap) == 30 * 7 and "lm_head" not in qmap
    ref = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    quanto.freeze(quanto.quantize(ref, weights="qint4", include=list(qmap)))
    want = run(ref, {"input_ids": ids}, "logits")
    assert torch.equal(run(q, {"input_ids": ids}, "logits"), want)
