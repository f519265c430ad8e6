"""Bad input to the Python API gets a Python exception that names the problem."""

import pytest
import torch
from api_models import make_mlp
from torch import nn

import quanto


def frozen_mlp(weights="qint8", seed=0):
    return quanto.freeze(quanto.quantize(make_mlp(seed=seed), weights=weights))


def test_unknown_qtype_names():
    with pytest.raises(ValueError, match=r"weights: unknown qtype 'qint3'.*qint4"):
        quanto.quantize(make_mlp(), weights="qint3")
    with pytest.raises(ValueError, match="activations: unknown qtype 'int8'"):
        quanto.quantize(make_mlp(), weights="qint8", activations="int8")
    with pytest.raises(TypeError, match="expected a qtype"):
        quanto.quantize(make_mlp(), weights=8)
    src = frozen_mlp()
    with pytest.raises(ValueError, match="'up' weights: unknown qtype 'qint5'"):
        quanto.requantize(make_mlp(), src.state_dict(), {"up": {"weights": "qint5", "activations": "none"}})


def test_unsupported_combinations():
    with pytest.raises(ValueError, match="nothing to do"):
        quanto.quantize(make_mlp())
    with pytest.raises(ValueError, match="8-bit qtypes only.*qint4"):
        quanto.quantize(make_mlp(), weights="qint8", activations="qint4")
    with pytest.raises(ValueError, match="group_size applies to 2/4-bit"):
        quanto.quantize(make_mlp(), weights="qint8", group_size=64)
    with pytest.raises(ValueError, match="embeddings=True needs weights"):
        quanto.quantize(nn.Embedding(10, 8), activations="qint8", embeddings=True)
    with pytest.raises(ValueError, match="max_norm"):
        quanto.quantize(nn.Embedding(10, 8, max_norm=1.0), weights="qint8", embeddings=True)


def test_bad_group_size_leaves_the_model_untouched():
    model = make_mlp(k=256, hidden=96)
    with pytest.raises(ValueError, match="'down': group_size 64 does not divide the weight's 96 input features"):
        quanto.quantize(model, weights="qint4", group_size=64)
    assert type(model.up) is nn.Linear and type(model.down) is nn.Linear


def test_quantizing_twice():
    model = quanto.quantize(make_mlp(), weights="qint8")
    with pytest.raises(ValueError, match="'up' is already quantized"):
        quanto.quantize(model, weights="qint4")


def test_quantization_map_that_does_not_match_the_model():
    src = frozen_mlp("qint8")
    sd, qmap = src.state_dict(), quanto.quantization_map(src)
    with pytest.raises(ValueError, match="names module 'mlp.up', which the model does not have"):
        quanto.requantize(make_mlp(), sd, {"mlp.up": qmap["up"]})
    with pytest.raises(ValueError, match=r"up.weight._data: the state dict holds an 8-bit quantized weight for 'up', but the module "
                       "is quantized to qint4"):
        quanto.requantize(make_mlp(), sd, dict(qmap, up={"weights": "qint4", "activations": "none"}))
    with pytest.raises(ValueError, match=r"up.weight._data: dtype torch.int8 is not torch.float8_e4m3fn"):
        quanto.requantize(make_mlp(), sd, dict(qmap, up={"weights": "qfloat8", "activations": "none"}))
    with pytest.raises(ValueError, match=r"keys the quantized model does not expect.*down.weight._data"):
        quanto.requantize(make_mlp(), sd, {"up": qmap["up"]})
    with pytest.raises(ValueError, match=r"up.weight._data: shape \[128, 256\] does not match \[64, 128\]"):
        quanto.requantize(make_mlp(k=128, hidden=64), sd, qmap)
    del sd["down.weight._scale"]
    with pytest.raises(ValueError, match=r"lacks tensors the model needs.*down.weight._scale"):
        quanto.requantize(make_mlp(), sd, qmap)
    with pytest.raises(ValueError, match="must be a dict with 'weights' and 'activations'"):
        quanto.requantize(make_mlp(), src.state_dict(), {"up": "qint8"})
    with pytest.raises(ValueError, match=r"'up' \(ReLU\) has no quantized counterpart"):
        quanto.requantize(nn.ModuleDict({"up": nn.ReLU()}), {}, {"up": qmap["up"]})


def test_meta_tensors_where_data_is_required():
    with torch.device("meta"):
        model = make_mlp()
    quanto.quantize(model, weights="qint8")  # fine: no data needed yet
    with pytest.raises(ValueError, match="weight of 'up' is on the meta device"):
        quanto.freeze(model)
    sd = frozen_mlp().state_dict()
    sd["up.weight._data"] = sd["up.weight._data"].to("meta")
    with pytest.raises(ValueError, match="up.weight._data is a meta tensor"):
        frozen_mlp().load_state_dict(sd)
    with torch.device("meta"):
        skeleton = nn.Sequential(make_mlp(), nn.Linear(64, 4))
    src = nn.Sequential(frozen_mlp(), nn.Linear(64, 4))
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("1.")}
    with pytest.raises(ValueError, match=r"lacks tensors the model needs.*1.weight"):
        quanto.requantize(skeleton, sd, quanto.quantization_map(src))


def test_non_contiguous_tensors_are_accepted():
    src = frozen_mlp("qint4")
    sd = {k: (v.t().contiguous().t() if v.dim() == 2 else v) for k, v in src.state_dict().items()}
    assert not sd["up.weight._scale"].is_contiguous() or not sd["up.weight._data._data"].is_contiguous()
    model = quanto.requantize(make_mlp(seed=5), sd, quanto.quantization_map(src))
    x = torch.randn(256, 4).t()  # a non-contiguous input
    assert torch.equal(model(x), src(x.contiguous()))


def test_wrong_device_mix():
    model = frozen_mlp("qint4")
    with pytest.raises(ValueError, match="is on cpu but the input is on meta"):
        model(torch.randn(2, 256, device="meta"))


def test_heterogeneous_activations_in_calibration():
    model = quanto.quantize(make_mlp(), weights="qint8", activations="qint8", include="up")
    quanto.quantize(model, weights="qint8", activations="qfloat8", include="down")
    model_seq = nn.Sequential(model.up, model.down)  # down consumes up's quantized output directly
    with pytest.raises(ValueError, match="heterogeneous quantized activations.*expected qfloat8_e4m3fn input, got qint8"):
        with quanto.Calibration():
            model_seq(torch.randn(2, 256))


def test_frozen_weight_is_read_only_and_calibration_arguments_checked():
    model = frozen_mlp()
    with pytest.raises(AttributeError, match="quantized and frozen"):
        model.up.weight = None
    with pytest.raises(ValueError, match="momentum must be a number in"):
        quanto.Calibration(momentum=2)
    with pytest.raises(TypeError, match="unexpected arguments"):
        quanto.Calibration(foo=1)
    with pytest.raises(TypeError, match="include must be a pattern string"):
        quanto.quantize(make_mlp(), weights="qint8", include=3)


def test_requantize_ignores_what_transformers_ignores():
    """Keys naming a non-persistent buffer (a legacy position_ids) or matching the model's
    _keys_to_ignore_on_load_unexpected are tolerated, and not loaded; any other unexpected key
    still raises."""
    src = frozen_mlp()
    qmap = quanto.quantization_map(src)
    sd = dict(src.state_dict())

    def skeleton():
        m = make_mlp()
        m.register_buffer("position_ids", torch.arange(8), persistent=False)
        return m

    m = quanto.requantize(skeleton(), dict(sd, position_ids=torch.arange(8) * 5), qmap)
    assert torch.equal(m.position_ids, torch.arange(8)), "an ignored key is not loaded"
    x = torch.randn(3, make_mlp().up.in_features)
    assert torch.equal(m(x), src(x))
    with pytest.raises(ValueError, match="does not expect.*position_ids"):
        quanto.requantize(make_mlp(), dict(sd, position_ids=torch.arange(8)), qmap)
    with pytest.raises(ValueError, match="does not expect.*stray"):
        quanto.requantize(skeleton(), dict(sd, stray=torch.zeros(2)), qmap)
    m = make_mlp()
    m._keys_to_ignore_on_load_unexpected = [r"(^|\.)stray$"]
    quanto.requantize(m, dict(sd, stray=torch.zeros(2)), qmap)
    assert quanto.requantize(make_mlp(), dict(sd, stray=torch.zeros(2)), qmap, strict=False) is not None
