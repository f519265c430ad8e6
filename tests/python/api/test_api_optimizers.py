"""quantize(optimizer=...): names, instances, third-party callables, and HQQ through the model API."""

import pytest
import torch
from api_models import make_mlp
from torch import nn

import quanto

ops = torch.ops.quanto


def frozen_weight_error(m: nn.Linear, w: torch.Tensor) -> float:
    """Mean absolute reconstruction error of a frozen layer's weight."""
    return (m.weight.float() - w.float()).abs().mean().item()


@pytest.mark.parametrize("weights", ["qint4", "qint2"])
def test_hqq_by_name_matches_the_op_and_beats_minmax(weights):
    torch.manual_seed(0)
    w = torch.randn(64, 256) * torch.rand(64, 1)  # rows of different ranges
    errors = {}
    for opt in ("minmax", "hqq"):
        m = nn.Linear(256, 64)
        with torch.no_grad():
            m.weight.copy_(w)
        quanto.quantize(m, weights=weights, optimizer=opt)
        quanto.freeze(m)
        errors[opt] = frozen_weight_error(m, w)
    assert errors["hqq"] < errors["minmax"], errors
    # The layer's weight is exactly the op's scale/shift applied by the affine ops.
    q = quanto.qtype_from_name(weights)
    scale, shift = ops.hqq_scale_shift(w, weights, 0, 128)
    codes = ops.affine_quantize(w, scale, shift, weights, 0, 128)
    want = ops.affine_dequantize(codes, scale, shift, list(w.shape), 0, 128)
    assert q.bits < 8
    m = nn.Linear(256, 64)
    with torch.no_grad():
        m.weight.copy_(w)
    quanto.quantize(m, weights=weights, optimizer=quanto.HqqOptimizer())
    quanto.freeze(m)
    torch.testing.assert_close(m.weight, want, rtol=0, atol=0)


def test_hqq_options_change_the_result():
    torch.manual_seed(1)
    w = torch.randn(32, 128)
    plain = quanto.HqqOptimizer()(w, quanto.qint4, 0, 64)
    scaled = quanto.HqqOptimizer(optimize_scale=True)(w, quanto.qint4, 0, 64)
    none = quanto.HqqOptimizer(iters=0)(w, quanto.qint4, 0, 64)
    minmax = quanto.MaxOptimizer()(w, quanto.qint4, 0, 64)
    assert not torch.equal(plain[1], none[1])
    assert not torch.equal(plain[0], scaled[0])
    # Zero iterations is min/max.
    torch.testing.assert_close(none[0], minmax[0])
    torch.testing.assert_close(none[1], minmax[1])


def test_names_resolve_and_saved_model_reloads(tmp_path):
    torch.manual_seed(2)
    model = make_mlp()
    x = torch.randn(4, model.up.in_features)
    q = quanto.quantize(model, weights="qint4", optimizer="HQQ", inplace=False)  # names are case-insensitive
    quanto.freeze(q)
    y = q(x)
    state, qmap = q.state_dict(), quanto.quantization_map(q)
    fresh = make_mlp()
    quanto.requantize(fresh, state, qmap)
    torch.testing.assert_close(fresh(x), y, rtol=0, atol=0)
    q8 = quanto.quantize(make_mlp(), weights="qint8", optimizer="absmax", inplace=False)
    assert isinstance(q8.up.optimizer, quanto.AbsmaxOptimizer)


def test_third_party_callable_is_used():
    calls = []

    def optimizer(base, qtype, axis=0, group_size=None):
        calls.append((qtype.name, axis, group_size))
        return ops.minmax_scale_shift(base, qtype.name, axis, group_size)

    m = nn.Linear(256, 8)
    quanto.quantize(m, weights="qint4", optimizer=optimizer)
    quanto.freeze(m)
    assert calls == [("qint4", 0, 128)]


@pytest.mark.parametrize(
    "weights, optimizer, error, match",
    [
        ("qint4", "gptqq", ValueError, "unknown optimizer 'gptqq'"),
        ("qint8", "hqq", ValueError, "for 2/4-bit weights"),
        ("qint8", "minmax", ValueError, "for 2/4-bit weights"),
        ("qint4", "absmax", ValueError, "AbsmaxOptimizer is for 8-bit weights"),
        ("qint4", 3, TypeError, "optimizer must be a name"),
    ],
)
def test_bad_optimizers_are_named(weights, optimizer, error, match):
    m = make_mlp()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    with pytest.raises(error, match=match):
        quanto.quantize(m, weights=weights, optimizer=optimizer)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # model left intact
    assert not any(isinstance(c, quanto.QModuleMixin) for c in m.modules())


def test_optimizer_without_weights_is_refused():
    with pytest.raises(ValueError, match="applies to weights"):
        quanto.quantize(make_mlp(), activations="qint8", optimizer="hqq")


@pytest.mark.parametrize("kwargs, match", [({"p": 0}, "p must be"), ({"iters": -1}, "iters"),
                                           ({"kappa": 1.0}, "kappa")])
def test_bad_hqq_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        quanto.HqqOptimizer(**kwargs)
