"""Dynamic activations: quantize(..., activations=qint8 | qfloat8*, dynamic_activations=True).

Each input token of a linear layer is quantized with its own absmax scale computed at run time
(no calibration) and the output stays float; int8 x int8 runs the integer W8A8 kernels (int4 x int8
the W4A8 one: test_api_w4a8.py). Checked against a reference written from docs/format.md (section 7.2) with plain torch ops, and through
freeze / quantization map / requantize / Module.to / torch.compile; optimum-quanto 0.2.7 reads the
files as weight-only."""

import json

import pytest
import torch
import torch.nn.functional as F
from api_models import make_convnet, make_mlp
from safetensors.torch import load_file, save_file
from torch import nn

import quanto

ops = torch.ops.quanto
QMAX = {"qint8": 127.0, "qfloat8": 448.0, "qfloat8_e4m3fn": 448.0, "qfloat8_e5m2": 57344.0}
F8 = {"qfloat8": torch.float8_e4m3fn, "qfloat8_e4m3fn": torch.float8_e4m3fn, "qfloat8_e5m2": torch.float8_e5m2}


def per_token_reference(x, qtype):
    """(codes, scales) by docs/format.md 7.2: amax(|row|) / qmax per token, then section 3."""
    scale = x.abs().amax(-1, keepdim=True) / QMAX[qtype]
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)
    if qtype == "qint8":
        return torch.clamp(torch.round(x / scale), -128, 127).to(torch.int8), scale
    return torch.clamp(x / scale, -QMAX[qtype], QMAX[qtype]).to(F8[qtype]), scale


def tokens(dtype=torch.float32, seed=3):
    """[2, 6, 256] inputs whose tokens span four orders of magnitude (what per-tensor scales cannot serve)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 6, 256, generator=g) * torch.logspace(-2, 2, 6).reshape(1, 6, 1)
    return x.to(dtype)


def dynamic_mlp(weights="qint8", activations="qint8", dtype=torch.float32):
    model = make_mlp(dtype)
    quanto.quantize(model, weights=weights, activations=activations, dynamic_activations=True)
    return quanto.freeze(model)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_w8a8_is_the_integer_kernel_on_per_token_codes(dtype):
    model = dynamic_mlp(dtype=dtype)
    x = tokens(dtype)
    codes, scale = per_token_reference(x, "qint8")
    got_codes, got_scale = ops.quantize_per_token(x, "qint8")
    assert torch.equal(got_codes, codes) and torch.equal(got_scale, scale)
    w = model.up.canonical_weight_tensors()
    # The exact integer product and its float32 epilogue (docs/format.md 7.2), written out.
    acc = (codes.double() @ w["data"].double().T).float()
    want = (acc * (scale.float() * w["scale"].float().T) + model.up.bias.float()).to(dtype)
    with torch.no_grad():
        y = model.up(x)
    assert y.dtype == dtype and torch.equal(y, want)
    assert torch.equal(y, ops.linear_w8a8(codes, scale, w["data"], w["scale"], model.up.bias, dtype))
    # Per token: a token's output does not depend on the other tokens of the batch.
    with torch.no_grad():
        assert torch.equal(model.up(x[1:2, 4:5]), y[1:2, 4:5])


# qint4 weights with qint8 activations run the integer W4A8 kernel instead (test_api_w4a8.py).
@pytest.mark.parametrize("weights,activations", [("qint2", "qint8"), ("qfloat8", "qint8"),
                                                 ("qint8", "qfloat8"), ("qint4", "qfloat8_e5m2")])
def test_other_weights_and_float8_run_the_float_path_on_per_token_values(weights, activations):
    model = dynamic_mlp(weights, activations)
    x = tokens()
    codes, scale = per_token_reference(x, activations)
    xq = codes.float() * scale
    with torch.no_grad():
        got = model.up(x)
        ref = ops.weight_linear(xq, model.up._held_weight(), model.up.weight_qtype.name, [128, 256],
                                model.up.weight_group_size, model.up._quanto_layout, model.up.bias)
    assert torch.equal(got, ref)
    # And close to the float layer on the dequantized weight: the activation error per token is small.
    exact = F.linear(x, model.up.weight, model.up.bias)
    for t in range(6):  # every token, small or large
        err = (got[:, t] - exact[:, t]).abs().max() / exact[:, t].abs().max()
        assert err < (0.02 if activations == "qint8" else 0.1), (t, err)


def test_per_token_beats_per_tensor_static_on_uneven_tokens():
    x = tokens()
    static = make_mlp()
    quanto.quantize(static, weights="qint8", activations="qint8")
    with torch.no_grad(), quanto.Calibration():
        static(x)
    quanto.freeze(static)
    dynamic = dynamic_mlp()
    ref = make_mlp()
    with torch.no_grad():
        want = ref(x)
        err = {k: ((m(x) - want).abs().amax(-1) / want.abs().amax(-1)).max().item()
               for k, m in (("static", static), ("dynamic", dynamic))}
    assert err["dynamic"] < 0.05 < err["static"], err


def test_calibration_is_a_no_op_and_scales_stay_one():
    model = make_mlp()
    quanto.quantize(model, weights="qint8", activations="qint8", dynamic_activations=True)
    x = tokens()
    with torch.no_grad():
        before = model(x)
        with quanto.Calibration():
            model(x * 5)
        assert torch.equal(model(x), before)
    for m in (model.up, model.down):
        assert m.input_scale.item() == 1 and m.output_scale.item() == 1
        assert m.dynamic_activations and not m.quantizes_output
        assert "activations=qint8 (dynamic)" in repr(m)
    # Outputs stay float (not rounded to any grid), inputs are not tagged for the next layer.
    with torch.no_grad():
        y = model.up(x)
    assert type(y) is torch.Tensor


def test_norms_and_convolutions_keep_float_activations():
    model = make_convnet()
    quanto.quantize(model, weights="qint8", activations="qint8", dynamic_activations=True)
    assert not isinstance(model.norm, quanto.QModuleMixin)  # nothing left to quantize in a norm
    assert model.conv1.weight_qtype is quanto.qint8 and model.conv1.activation_qtype is None
    assert model.fc1.dynamic_activations and model.fc3.dynamic_activations
    qmap = quanto.quantization_map(model)
    assert qmap["conv1"] == {"weights": "qint8", "activations": "none"}
    assert qmap["fc1"] == {"weights": "qint8", "activations": "none", "dynamic_activations": "qint8"}


def test_transformers_conv1d_takes_dynamic_activations():
    from transformers.pytorch_utils import Conv1D

    m = Conv1D(96, 64)
    quanto.quantize(m, weights="qint8", activations="qint8", dynamic_activations=True)
    quanto.freeze(m)
    x = torch.randn(2, 3, 64)
    codes, scale = per_token_reference(x, "qint8")
    w = m.canonical_weight_tensors()
    with torch.no_grad():
        assert torch.equal(m(x), ops.linear_w8a8(codes, scale, w["data"], w["scale"], m.bias, torch.float32))


@pytest.mark.parametrize("weights", ["qint8", "qint4"])
def test_save_requantize_and_module_to_round_trips(tmp_path, weights):
    model = dynamic_mlp(weights)
    qmap = quanto.quantization_map(model)
    assert qmap == {n: {"weights": weights, "activations": "none", "dynamic_activations": "qint8"}
                    for n in ("up", "down")}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    (tmp_path / "qmap.json").write_text(json.dumps(qmap))
    with torch.device("meta"):
        skeleton = make_mlp()
    loaded = quanto.requantize(skeleton, load_file(str(tmp_path / "m.safetensors")),
                               json.loads((tmp_path / "qmap.json").read_text()))
    x = tokens()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
        assert loaded.up.dynamic_activations and quanto.quantization_map(loaded) == qmap
        # dtype moves (scales and biases convert, codes stay) keep the setting.
        for m in (loaded, model):
            m.to(torch.bfloat16)
        y16 = loaded(x.bfloat16())
        assert y16.dtype == torch.bfloat16 and torch.equal(y16, model(x.bfloat16()))
        for m in (loaded, model):
            m.to(torch.float32)
        assert loaded.up.dynamic_activations and torch.equal(loaded(x), model(x))
    # A re-quantized (LoRA-merge style) weight keeps the setting.
    model.up.weight.data = model.up.weight * 1.0  # re-quantizes the frozen weight from new values
    assert model.up.dynamic_activations


def test_qat_gradients_flow_straight_through():
    model = make_mlp()
    quanto.quantize(model, weights="qint8", activations="qint8", dynamic_activations=True)
    x = tokens().requires_grad_(True)
    model(x).sum().backward()
    assert model.up.weight.grad is not None and x.grad is not None and x.grad.abs().sum() > 0
    # Frozen: dL/dx through the W8A8 kernel's straight-through backward.
    quanto.freeze(model)
    x.grad = None
    model(x).sum().backward()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("weights", ["qint8", "qint4"])
def test_torch_compile_fullgraph(weights):
    model = dynamic_mlp(weights)
    x = tokens()
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert torch.equal(compiled(x), model(x))


def test_optimum_quanto_reads_dynamic_files_weight_only(tmp_path):
    oq = pytest.importorskip("optimum.quanto")
    model = dynamic_mlp("qint8")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    theirs = make_mlp(seed=7)
    oq.requantize(theirs, dict(sd), quanto.quantization_map(model))
    assert theirs.up.activation_qtype is None and theirs.up.weight_qtype is not None
    weight_only = make_mlp()
    quanto.quantize(weight_only, weights="qint8")
    quanto.freeze(weight_only)
    x = tokens()
    with torch.no_grad():
        got, wo, dyn = theirs(x), weight_only(x), model(x)
    # optimum-quanto runs the same weights with float activations: quanto's weight-only model...
    torch.testing.assert_close(got, wo, rtol=1e-5, atol=1e-5 * wo.abs().max().item())
    # ...which the dynamic model follows within its activation quantization error, token by token.
    err = ((dyn - got).abs().amax(-1) / got.abs().amax(-1)).max().item()
    assert err < 0.03, err


def test_errors():
    with pytest.raises(ValueError, match="dynamic_activations=True needs activations="):
        quanto.quantize(make_mlp(), weights="qint8", dynamic_activations=True)
    with pytest.raises(TypeError, match="dynamic_activations must be a bool"):
        quanto.quantize(make_mlp(), weights="qint8", activations="qint8", dynamic_activations="yes")
    sd = dynamic_mlp().state_dict()
    bad = [({"weights": "qint8", "activations": "none", "dynamic_activations": "qint4"}, "must be qint8 or a float8"),
           ({"weights": "qint8", "activations": "none", "dynamic_activations": 1}, "must be qint8 or a float8"),
           ({"weights": "qint8", "activations": "qint8", "dynamic_activations": "qint8"}, "one or the other")]
    for entry, message in bad:
        with pytest.raises(ValueError, match=message):
            quanto.requantize(make_mlp(), sd, {"up": entry, "down": entry})
    conv = nn.Sequential(nn.Conv1d(4, 4, 3))
    with pytest.raises(ValueError, match="apply to linear layers, not Conv1d"):
        quanto.requantize(conv, {}, {"0": {"weights": "qint8", "activations": "none", "dynamic_activations": "qint8"}})
    with pytest.raises(ValueError, match="at least one token"):
        ops.quantize_per_token(torch.empty(0, 8), "qint8")
    with pytest.raises(ValueError, match="NaN or inf"):
        ops.quantize_per_token(torch.tensor([[1.0, float("inf")]]), "qint8")


def test_generic_path_gives_the_cpu_kernels_results():
    # The device-generic W8A8 (what GPUs run) against the CPU kernels: the same int32 sums and
    # epilogue, so bit for bit; the float path within float rounding.
    x = tokens()
    for weights in ("qint8", "qint4"):
        cpu = dynamic_mlp(weights)
        previous = ops.force_generic_path(True)
        try:
            generic = dynamic_mlp(weights)
            assert generic.up._quanto_layout == "canonical"
            with torch.no_grad():
                got = generic(x)
        finally:
            ops.force_generic_path(previous)
        with torch.no_grad():
            want = cpu(x)
        if weights == "qint8":
            assert torch.equal(got, want)
        else:
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


def test_gptq_still_calibrates_its_statistics():
    # Calibration leaves the activation scales alone but GPTQ still gathers its X^T X.
    model = make_mlp()
    quanto.quantize(model, weights="qint4", activations="qint8", dynamic_activations=True, optimizer="gptq")
    with torch.no_grad(), quanto.Calibration():
        model(tokens())
    quanto.freeze(model)
    assert model.up.frozen and model.up.dynamic_activations and model.up.input_scale.item() == 1
    with torch.no_grad():
        assert torch.isfinite(model(tokens())).all()
