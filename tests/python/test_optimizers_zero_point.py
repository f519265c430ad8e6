"""The integer zero-point optimizers: ZeroPointOptimizer (min/max or HQQ, shift rounded to a uint8
zero-point) and SymmetricOptimizer (every zero-point the middle code), checked against the
reference written from docs/format.md, and through save/load of a quantized model."""

import pytest
import reference as ref
import torch
from conftest import assert_bitwise_equal, random_tensor

import quanto
from quanto.nn.qmodule import dequantize_weight, quantize_weight

ops = torch.ops.quanto


@pytest.mark.parametrize("qtype", [quanto.qint4, quanto.qint2])
@pytest.mark.parametrize("group_size", [None, 32])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_zero_point_optimizer_matches_reference(qtype, group_size, dtype):
    w = random_tensor((48, 128), dtype)
    t = quantize_weight(w, qtype, group_size, quanto.ZeroPointOptimizer())
    scale, shift = ops.minmax_scale_shift(w, qtype.name, 0, group_size)
    zp = ref.shift_to_zeropoint(scale, shift, qtype.bits)  # round(round_T(shift / scale)), docs 4.3
    assert t["shift"].dtype == torch.uint8 and torch.equal(t["shift"], zp)
    assert_bitwise_equal(t["scale"], scale)
    codes = ref.affine_quantize(w, scale, zp, qtype.bits, 0, group_size)
    assert torch.equal(t["data"], ref.pack(codes, qtype.bits))
    hqq = quantize_weight(w, qtype, group_size, quanto.ZeroPointOptimizer(quanto.HqqOptimizer()))
    assert hqq["shift"].dtype == torch.uint8


@pytest.mark.parametrize("qtype", [quanto.qint4, quanto.qint2])
@pytest.mark.parametrize("group_size", [None, 64])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_symmetric_optimizer(qtype, group_size, dtype):
    w = random_tensor((32, 256), dtype)
    w[3] = 0  # an all-zero row: scale 1, codes of zero
    t = quantize_weight(w, qtype, group_size, quanto.SymmetricOptimizer())
    half = 2 ** (qtype.bits - 1)
    assert t["shift"].dtype == torch.uint8 and bool((t["shift"] == half).all())
    grouped = w.reshape(-1, group_size) if group_size else w
    amax = grouped.abs().amax(dim=1, keepdim=True)
    expected = torch.where(amax == 0, torch.ones_like(amax), (amax / (half - 0.5)).to(dtype))
    assert_bitwise_equal(t["scale"], expected)
    deq = dequantize_weight(t, qtype, group_size, w.shape)
    assert torch.equal(deq[3], torch.zeros_like(deq[3]))
    # Symmetric: values are (q - half) * scale with q - half in [-half, half - 1], at most half a step off.
    err = (deq.float() - w.float()).abs().reshape(grouped.shape)
    assert bool((err <= t["scale"].float() * 0.5 * (1 + 2 ** -6)).all())


def test_zero_point_models_save_and_load(tmp_path):
    from quanto.models import QuantizedModelForCausalLM
    import transformers as tr

    torch.manual_seed(0)
    cfg = tr.LlamaConfig(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    ids = torch.tensor([[1, 5, 9, 33]])
    for optimizer in ("zeropoint", "symmetric"):
        q = QuantizedModelForCausalLM.quantize(tr.LlamaForCausalLM(cfg).eval(), weights="qint4", optimizer=optimizer)
        q.save_pretrained(tmp_path / optimizer)
        loaded = QuantizedModelForCausalLM.from_pretrained(tmp_path / optimizer)
        assert loaded.model.model.layers[0].mlp.up_proj.weight_shift.dtype == torch.uint8
        with torch.no_grad():
            assert torch.equal(loaded(ids).logits, q(ids).logits)


def test_refusals():
    with pytest.raises(ValueError, match="for 2/4-bit weights"):
        quanto.quantize(torch.nn.Sequential(torch.nn.Linear(8, 8)), weights="qint8", optimizer="symmetric")
    with pytest.raises(ValueError, match="without calibration"):
        quanto.ZeroPointOptimizer(quanto.GptqOptimizer())
