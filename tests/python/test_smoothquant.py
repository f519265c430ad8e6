"""SmoothQuant: lower W8A8 (static per-tensor int8 activations) error than plain W8A8 on models
with outlier activation channels; the smoothed model saves as a standard file that quanto and
optimum-quanto 0.2.7 reload; argument errors."""

import copy
import json

import pytest
import torch
from optimum.quanto import QuantizedModelForCausalLM as OQModelForCausalLM
from outlier_models import llama_groups, mlp_batches, outlier_mlp, relative_error, tiny_llama, token_batches
from safetensors.torch import load_file

import quanto
from quanto.models import QuantizedModelForCausalLM


def w8a8(model, batches):
    quanto.quantize(model, weights="qint8", activations="qint8", exclude="lm_head")
    with torch.no_grad(), quanto.Calibration():
        for b in batches:
            model(b)
    return quanto.freeze(model)


def smoothed(model, batches, alpha):
    with torch.no_grad(), quanto.SmoothQuant(model, alpha=alpha):
        for b in batches:
            model(b)
    return model


def test_smoothquant_lowers_w8a8_error_on_outlier_mlp():
    model, batches = outlier_mlp(), mlp_batches()
    test = torch.randn(256, 128, generator=torch.Generator().manual_seed(5))
    plain = relative_error(w8a8(copy.deepcopy(model), batches), model, test)
    smooth = relative_error(w8a8(smoothed(copy.deepcopy(model), batches, 0.5), batches), model, test)
    print(f"outlier MLP W8A8 relative error: plain {plain:.5f}, SmoothQuant {smooth:.5f}")
    assert smooth < 0.7 * plain  # measured 0.00139 vs 0.00247


def test_smoothquant_lowers_w8a8_error_on_tiny_llama_and_files_load_everywhere(tmp_path):
    model, batches = tiny_llama(tie=False), token_batches()
    test = torch.tensor([[9, 31, 4, 77, 120, 5, 18, 240, 66, 3, 12, 150]])
    plain = w8a8(copy.deepcopy(model), batches)
    q = w8a8(smoothed(copy.deepcopy(model), batches, 0.5), batches)
    errors = {"plain": relative_error(plain, model, test), "smooth": relative_error(q, model, test)}
    # A smoothed model is a float model with other weights: the file is standard.
    for name, m in (("plain", plain), ("smooth", q)):
        QuantizedModelForCausalLM(m).save_pretrained(tmp_path / name)
        theirs = OQModelForCausalLM.from_pretrained(str(tmp_path / name))
        errors["oq " + name] = relative_error(theirs, model, test)
    print("tiny Llama W8A8 relative errors:", {k: round(v, 5) for k, v in errors.items()})
    assert errors["smooth"] < 0.75 * errors["plain"]  # measured 0.0185 vs 0.0288
    # optimum-quanto rounds every module's output to its scale (quanto streamlines): other figures,
    # the same gain.
    assert errors["oq smooth"] < 0.9 * errors["oq plain"]
    # (Loaded into a float model: QuantizedModelForCausalLM.from_pretrained builds the model on the
    # meta device, where quanto cannot yet lay out a W8A8 weight for the VNNI kernels.)
    qmap = json.loads((tmp_path / "smooth" / "quanto_qmap.json").read_text())
    reloaded = quanto.requantize(tiny_llama(tie=False), load_file(tmp_path / "smooth" / "model.safetensors"), qmap)
    with torch.no_grad():
        assert torch.equal(reloaded(test).logits, q(test).logits)


def test_interrupted_scope_changes_nothing():
    model = outlier_mlp()
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(RuntimeError, match="boom"):
        with torch.no_grad(), quanto.SmoothQuant(model):
            model(mlp_batches()[0])
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model._forward_hooks and not model.fc1._forward_pre_hooks  # hooks removed


def test_smoothquant_errors():
    model = outlier_mlp()
    for alpha in (-0.1, 1.5, "0.5", True, float("nan")):
        with pytest.raises(ValueError, match=r"alpha .*\[0, 1\]"):
            quanto.SmoothQuant(model, alpha=alpha)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        quanto.SmoothQuant("model")
    with pytest.raises(TypeError, match="include"):
        quanto.SmoothQuant(model, include=3)
    with pytest.raises(ValueError, match="no linear layer ran"):
        with quanto.SmoothQuant(model):
            pass
    outer = torch.nn.Sequential(outlier_mlp())
    with pytest.raises(ValueError, match="only submodules"):
        with quanto.SmoothQuant(outer):
            outer[0](mlp_batches()[0])
    q = quanto.quantize(outlier_mlp(), weights="qint8")
    with pytest.raises(ValueError, match="already quantized.*smooth the float model first"):
        quanto.SmoothQuant(q)


def _on_int4_grid(model, group_size=32):
    """Rounds every linear weight but lm_head to int4 min/max groups (SmolLM2's float weights are
    its GGUF's Q4_1 groups of 32 in the same way); returns the model."""
    ops = torch.ops.quanto
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Linear) and name != "lm_head":
                w = m.weight.detach()
                scale, shift = ops.minmax_scale_shift(w, "qint4", 0, group_size)
                codes = ops.affine_quantize(w, scale, shift, "qint4", 0, group_size)
                m.weight.copy_(ops.affine_dequantize(codes, scale, shift, list(w.shape), 0, group_size))
    return model


def _int4_grid_error(model, group_size=32):
    """Largest relative change of a linear weight rounded again to int4 min/max groups."""
    ops = torch.ops.quanto
    worst = 0.0
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and name != "lm_head":
            w = m.weight.detach()
            scale, shift = ops.minmax_scale_shift(w, "qint4", 0, group_size)
            codes = ops.affine_quantize(w, scale, shift, "qint4", 0, group_size)
            back = ops.affine_dequantize(codes, scale, shift, list(w.shape), 0, group_size)
            worst = max(worst, float((back - w).abs().max() / w.abs().max()))
    return worst


@pytest.mark.parametrize("group_size", [None, 32])
def test_group_size_factors_keep_an_int4_grid(group_size):
    """Factors constant per block of 32 input channels scale each int4 group of 32 as a whole (and
    the predecessors' rows as a whole), so weights already on that grid stay on it; per-channel
    factors move them off it. The smoothed float model computes the same function either way."""
    model, batches = _on_int4_grid(tiny_llama(tie=False)), token_batches()
    reference = copy.deepcopy(model)
    assert _int4_grid_error(model) < 1e-6
    with torch.no_grad(), quanto.SmoothQuant(model, alpha=0.6, exclude="lm_head", group_size=group_size) as sq:
        for b in batches:
            model(b)
    assert sq.smoothed == llama_groups()  # every group folds, v_proj -> o_proj with grouped-query heads too
    test = torch.tensor([[9, 31, 4, 77, 120, 5, 18, 240, 66, 3, 12, 150]])
    with torch.no_grad():
        torch.testing.assert_close(model(test).logits, reference(test).logits, rtol=1e-4, atol=1e-4)
    error = _int4_grid_error(model)
    print(f"group_size={group_size}: largest relative int4 g32 re-rounding change {error:.2e}")
    if group_size is None:
        assert error > 1e-2
    else:
        assert error < 1e-5


def test_group_size_errors_leave_the_model_unchanged():
    model = tiny_llama(tie=False)
    for bad in (0, -32, True, "32", 32.0):
        with pytest.raises(ValueError, match="group_size must be a positive int or None"):
            quanto.SmoothQuant(model, group_size=bad)
    before = copy.deepcopy(model.state_dict())
    # 48 does not divide the 128 hidden channels; 64 spans two heads of 32 under grouped-query attention.
    for bad, match in ((48, "group_size 48 does not divide the 128 channels that model.layers.0.input_layernorm "
                            "passes to model.layers.0.self_attn.q_proj"),
                       (64, r"group_size 64 does not divide the 64 channels \(head_dim 32\) that "
                            r"model.layers.0.self_attn.v_proj passes to model.layers.0.self_attn.o_proj")):
        with pytest.raises(ValueError, match=match):
            with torch.no_grad(), quanto.SmoothQuant(model, group_size=bad, exclude="lm_head"):
                model(token_batches()[0])
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
