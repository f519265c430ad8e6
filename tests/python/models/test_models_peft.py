"""LoRA adapters (the real peft package) trained on a frozen quanto base: the loss goes down, only
the adapter weights change, the adapter saves and reloads, and merging it re-quantizes the base
(or, for a GPTQ base, refuses with a clear error). A tiny random Llama, and SmolLM2-135M for a
short run."""

import copy

import peft
import pytest
import torch
import transformers

import quanto

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_llama(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return transformers.LlamaForCausalLM(cfg)


def quantized_base(weights, optimizer=None):
    model = tiny_llama()
    quanto.quantize(model, weights=weights, exclude=["lm_head"], optimizer=optimizer)
    quanto.freeze(model)
    return model


def lora(model):
    return peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))


def train(model, ids, steps, lr=1e-2):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def batch(seed=1):
    # A short repeated pattern: learnable in a few dozen steps.
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 128, (2, 8), generator=g).repeat(1, 4)


@pytest.mark.parametrize("weights", ["qint4", "qint8"])
def test_lora_trains_on_a_frozen_quantized_base(weights, tmp_path):
    base = quantized_base(weights)
    frozen = {k: v.clone() for k, v in base.state_dict().items()}
    model = lora(base)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    ids = batch()
    losses = train(model, ids, 40)
    # Measured (qint4 and qint8): 4.88 -> 3.60 over 40 steps; a conservative guard.
    assert losses[-1] < 0.85 * losses[0], losses
    # Only the adapters changed: every tensor of the quantized base is as frozen.
    for k, v in model.base_model.model.state_dict().items():
        if "lora_" in k:
            continue
        key = k.replace(".base_layer", "")
        assert torch.equal(v, frozen[key]), k
    # The adapter saves and reloads onto a fresh quantized base with identical outputs.
    model.save_pretrained(tmp_path)
    with torch.no_grad():
        want = model(input_ids=ids).logits
        reloaded = peft.PeftModel.from_pretrained(quantized_base(weights), tmp_path)
        assert torch.equal(reloaded(input_ids=ids).logits, want)


def test_merging_an_adapter_requantizes_the_base():
    model = lora(quantized_base("qint8"))
    ids = batch()
    train(model, ids, 20)
    layer = model.base_model.model.model.layers[0].self_attn.q_proj
    base_before = layer.base_layer.weight.clone()
    delta = layer.get_delta_weight("default")
    with torch.no_grad():
        unmerged = model(input_ids=ids).logits
        merged_model = model.merge_and_unload()
        merged = merged_model(input_ids=ids).logits
    q = merged_model.model.layers[0].self_attn.q_proj
    assert isinstance(q, quanto.nn.QModuleMixin) and q.frozen
    # The merged base holds base + delta, re-quantized (within half an int8 step per channel).
    assert (q.weight - (base_before + delta)).abs().max() <= q.weight_scale.max() * 0.51
    # Merged outputs equal the adapter's up to that re-quantization (measured max 0.004 on logits of
    # magnitude ~0.8).
    assert (merged - unmerged).abs().max() < 0.05 * unmerged.abs().max()


def test_merging_into_a_gptq_base_is_refused():
    base = tiny_llama()
    quanto.quantize(base, weights="qint4", exclude=["lm_head"], optimizer="gptq")
    with quanto.Calibration():
        base(input_ids=batch(2))
    quanto.freeze(base)
    model = lora(base)
    with pytest.raises(ValueError, match="needs calibration"):
        model.merge_and_unload()


def test_lora_on_smollm2_int4_short_run(smollm2, smollm2_text_ids):
    model = copy.deepcopy(smollm2[0])
    quanto.quantize(model, weights="qint4", exclude=["lm_head"])
    quanto.freeze(model)
    pm = peft.get_peft_model(model, peft.LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                                    lora_dropout=0.0))
    ids = smollm2_text_ids[:64].unsqueeze(0)
    losses = train(pm, ids, 4, lr=2e-3)
    # Measured: 3.5, 2.9, 2.5, 2.1 (fitting one 64-token window).
    assert losses[-1] < losses[0] - 0.3, losses
