"""The native weights layer as the Python package sees it (torch.ops.quanto.weight_*): the keys,
shapes and layouts the modules use come from it, and agree with what the modules store."""

import pytest
import torch

import quanto
from quanto.nn.qmodule import dequantize_weight, quantize_weight

ops = torch.ops.quanto
QTYPES = ["qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fnuz", "qfloat8_e5m2"]


@pytest.fixture
def cpu_kernels():
    """The CPU kernels' layouts, even when the run forces the generic path (QUANTO_FORCE_GENERIC)."""
    previous = ops.force_generic_path(False)
    yield
    ops.force_generic_path(previous)


def test_state_keys_per_format():
    for name in ("qint8", "qfloat8", "qfloat8_e5m2"):
        assert ops.weight_state_keys(name) == ["weight._data", "weight._scale"]
    for name in ("qint2", "qint4"):
        assert ops.weight_state_keys(name) == ["weight._data._data", "weight._scale", "weight._shift"]
    with pytest.raises((ValueError, RuntimeError), match="qint3"):
        ops.weight_state_keys("qint3")


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("shape,group_size", [((70, 33), None), ((64, 256), 128), ((64, 256), 64), ((9, 128), 32)])
def test_module_state_dict_matches_the_stored_shapes(qtype, shape, group_size):
    torch.manual_seed(0)
    if qtype.startswith("qfloat8") or qtype == "qint8":
        group_size = None
    layer = torch.nn.Linear(shape[1], shape[0])
    model = torch.nn.Sequential(layer)
    quanto.quantize(model, weights=qtype, group_size=group_size)
    quanto.freeze(model)
    gs = model[0].weight_group_size
    data, scale = ops.weight_stored_shapes(qtype, list(shape), gs)
    sd = model.state_dict()
    keys = ops.weight_state_keys(qtype)
    assert tuple(sd["0." + keys[0]].shape) == tuple(data)
    for k in keys[1:]:
        assert tuple(sd["0." + k].shape) == tuple(scale)
    # The in-memory layout is the one the weights layer picks for the CPU.
    assert model[0]._quanto_layout == ops.weight_layout(qtype, list(shape), gs, torch.device("cpu"), "none", True)


def test_layout_policy_by_device(cpu_kernels):
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert ops.weight_layout("qint4", [64, 256], 128, cpu, "none", True) == "tiled"
    assert ops.weight_layout("qint4", [64, 256], 128, cuda, "none", True) == "canonical"
    assert ops.weight_layout("qint4", [64, 256], 128, mps, "none", True) == "canonical"
    assert ops.weight_layout("qint4", [64, 256], 128, cpu, "none", False) == "canonical"
    assert ops.weight_layout("qint8", [64, 256], None, cuda, "qint8", True) == "canonical"
    vnni = ops.cpu_isa() in ("avx512vnni", "avx512bf16")
    assert ops.weight_layout("qint8", [64, 256], None, cpu, "qint8", True) == ("packed_w8a8" if vnni else "canonical")
    # The forced generic path stands for a device without kernels of its own.
    ops.force_generic_path(True)
    assert ops.weight_layout("qint4", [64, 256], 128, cpu, "none", True) == "canonical"


@pytest.mark.parametrize("qtype", QTYPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_weight_quantize_is_the_documented_composition(qtype, dtype):
    torch.manual_seed(1)
    w = torch.randn(24, 128, dtype=dtype)
    gs = 64 if qtype in ("qint2", "qint4") else None
    parts = ops.weight_quantize(w, qtype, gs)
    if gs is None:
        scale = ops.absmax_scale(w, qtype, 0)
        assert torch.equal(parts[1], scale)
        assert torch.equal(parts[0].view(torch.uint8), ops.symmetric_quantize(w, scale, qtype, 0).view(torch.uint8))
    else:
        scale, shift = ops.minmax_scale_shift(w, qtype, 0, gs)
        nbits = 2 if qtype == "qint2" else 4
        codes = ops.affine_quantize(w, scale, shift, qtype, 0, gs)
        assert torch.equal(parts[0], ops.pack_codes(codes, nbits))
        assert torch.equal(parts[1], scale) and torch.equal(parts[2], shift)
    back = ops.weight_dequantize(parts, qtype, [24, 128], gs)
    assert back.dtype == dtype and back.shape == w.shape
    err = (back.float() - w.float()).abs().max()
    if gs:  # half a step of the coarsest group, plus bf16 rounding of the result
        assert err <= parts[1].float().max() * 0.51 + 2e-2
    else:  # float8 e5m2 has two mantissa bits: half a step is 1/8 of the value
        assert err <= 0.13 * w.float().abs().max()


def test_python_helpers_route_through_the_weights_layer():
    torch.manual_seed(2)
    w = torch.randn(16, 64)
    from quanto.optimizers import as_optimizer
    from quanto.qtypes import qtype_from_name

    wtype = qtype_from_name("qint4")
    t = quantize_weight(w, wtype, 32, as_optimizer(None, wtype, "test"))
    assert list(t) == ["data", "scale", "shift"]
    assert torch.equal(dequantize_weight(t, wtype, 32, w.shape),
                       ops.weight_dequantize([t["data"], t["scale"], t["shift"]], "qint4", [16, 64], 32))


def test_weight_ops_errors_name_the_problem():
    w = torch.randn(8, 64)
    parts = ops.weight_quantize(w, "qint4", 32)
    with pytest.raises((ValueError, RuntimeError), match="3 tensors"):
        ops.weight_dequantize(parts[:2], "qint4", [8, 64], 32)
    with pytest.raises((ValueError, RuntimeError), match="must have shape"):
        ops.weight_dequantize(parts, "qint4", [8, 64], 64)
    with pytest.raises((ValueError, RuntimeError), match="group_size"):
        ops.weight_quantize(w, "qint4", 48)


def test_weight_ops_on_meta_and_opcheck():
    w = torch.randn(8, 64)
    meta = ops.weight_quantize(w.to("meta"), "qint4", 32)
    real = ops.weight_quantize(w, "qint4", 32)
    assert [tuple(m.shape) for m in meta] == [tuple(r.shape) for r in real]
    assert [m.dtype for m in meta] == [r.dtype for r in real]
    # Compositions of other quanto ops (each opchecked on its own, dynamic shapes included); weights
    # have static shapes, so these two are checked for schema and fake tensors.
    checks = ("test_schema", "test_faketensor")
    torch.library.opcheck(ops.weight_dequantize.default, (real, "qint4", [8, 64], 32), test_utils=checks)
    torch.library.opcheck(ops.weight_quantize.default, (w, "qint8", None, None, None), test_utils=checks)


def test_module_to_converts_layouts_both_ways(cpu_kernels):
    # With the generic path forced the CPU stands for a device without kernels of its own: moving
    # there gives the canonical layout, moving back the CPU kernels' layout, exactly.
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(128, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32))
    quanto.quantize(model, weights="qint4")
    quanto.freeze(model)
    layer = model[0]
    assert layer._quanto_layout == "tiled"
    tiled, canonical = layer.weight_data.clone(), layer.canonical_weight_tensors()["data"].clone()
    x = torch.randn(5, 128)
    want = model(x)
    previous = ops.force_generic_path(True)
    try:
        model.to("cpu")
        assert layer._quanto_layout == "canonical" and torch.equal(layer.weight_data, canonical)
        torch.testing.assert_close(model(x), want)
    finally:
        ops.force_generic_path(previous)
    model.to("cpu")
    assert layer._quanto_layout == "tiled" and torch.equal(layer.weight_data, tiled)
    assert torch.equal(model(x), want)
    # A dtype change keeps the layout (no conversion when the device's layout is the same).
    model.to(torch.bfloat16)
    assert layer._quanto_layout == "tiled" and torch.equal(layer.weight_data, tiled)
