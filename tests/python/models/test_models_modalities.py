"""Random-initialised transformers models of other modalities (fixed seeds, tiny configs): image
(ViT, ResNet: Conv2d), speech encoder-decoder (Whisper: Conv1d + generate) and GPT-2 (Conv1D)
quantize, run close to the float model, and save/reload with identical outputs."""

import pytest
import torch
import transformers as tr

from quanto.models import QuantizedTransformersModel


def vit():
    cfg = tr.ViTConfig(image_size=32, patch_size=8, num_channels=3, hidden_size=64, num_hidden_layers=2,
                       num_attention_heads=4, intermediate_size=128, num_labels=5)
    return tr.ViTForImageClassification(cfg), {"pixel_values": torch.randn(2, 3, 32, 32)}, "logits"


def resnet():
    cfg = tr.ResNetConfig(num_channels=3, embedding_size=32, hidden_sizes=[32, 64], depths=[1, 1],
                          layer_type="basic", num_labels=5)
    return tr.ResNetForImageClassification(cfg), {"pixel_values": torch.randn(2, 3, 32, 32)}, "logits"


def whisper():
    cfg = tr.WhisperConfig(vocab_size=128, num_mel_bins=16, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=32, max_target_positions=32,
                           decoder_start_token_id=1, pad_token_id=0, eos_token_id=2, bos_token_id=1)
    inputs = {"input_features": torch.randn(2, 16, 64), "decoder_input_ids": torch.tensor([[1, 5, 7], [1, 9, 3]])}
    return tr.WhisperForConditionalGeneration(cfg), inputs, "logits"


def gpt2():
    cfg = tr.GPT2Config(vocab_size=128, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    return tr.GPT2LMHeadModel(cfg), {"input_ids": torch.randint(0, 128, (2, 10))}, "logits"


MODELS = {"vit": vit, "resnet": resnet, "whisper": whisper, "gpt2": gpt2}


def build(name):
    torch.manual_seed(0)
    model, inputs, key = MODELS[name]()
    return model.eval(), inputs, key


@pytest.mark.parametrize("weights", ["qint8", "qint4"])
@pytest.mark.parametrize("name", list(MODELS))
def test_quantize_run_save_reload(name, weights, tmp_path):
    model, inputs, key = build(name)
    with torch.no_grad():
        want = getattr(model(**inputs), key)
    q = QuantizedTransformersModel.quantize(model, weights=weights)
    kinds = {type(m).__name__ for n, m in q.model.named_modules() if n in q.quantization_map()}
    assert kinds, "nothing was quantized"
    with torch.no_grad():
        got = getattr(q(**inputs), key)
    assert got.shape == want.shape and torch.isfinite(got).all()
    rel = ((got - want).norm() / want.norm()).item()
    assert rel < (0.05 if weights == "qint8" else 0.35), rel
    q.save_pretrained(tmp_path)
    r = QuantizedTransformersModel.from_pretrained(tmp_path)
    assert type(r.model) is type(model) and r.quantization_map() == q.quantization_map()
    with torch.no_grad():
        assert torch.equal(getattr(r(**inputs), key), got)


def test_quantized_kinds():
    """The image and speech models exercise the convolution and GPT-2 Conv1D quantized layers."""
    seen = {}
    for name in MODELS:
        model, _, _ = build(name)
        q = QuantizedTransformersModel.quantize(model, weights="qint8")
        seen[name] = {type(m).__name__ for n, m in q.model.named_modules() if n in q.quantization_map()}
    assert "QConv2d" in seen["resnet"] and "QConv2d" in seen["vit"]
    assert "QConv1d" in seen["whisper"]
    assert "QConv1D" in seen["gpt2"]


def test_whisper_generate_after_reload(tmp_path):
    model, inputs, _ = build("whisper")
    q = QuantizedTransformersModel.quantize(model, weights="qint4")
    q.save_pretrained(tmp_path)
    r = QuantizedTransformersModel.from_pretrained(tmp_path)
    kw = dict(max_new_tokens=4, do_sample=False)
    a = q.generate(inputs["input_features"], **kw)
    b = r.generate(inputs["input_features"], **kw)
    assert a.shape[0] == 2 and torch.equal(a, b)
