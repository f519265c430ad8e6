"""Files move both ways between quanto and optimum-quanto 0.2.7 (installed in the test env):
a model quantized, calibrated, frozen and saved (safetensors + quantization map JSON) by one
library loads with the other's requantize and gives the same outputs, and both libraries write
the same keys, dtypes, shapes and bytes for the same float model."""

import json

import pytest
import torch
from api_models import convnet_inputs, make_convnet
from safetensors.torch import load_file, save_file

import quanto

oq = pytest.importorskip("optimum.quanto")

WEIGHTS = ["qint8", "qint4", "qint2", "qfloat8"]
DTYPES = [torch.float32, torch.bfloat16]
# Relative tolerance on outputs (max |diff| / max |reference|) through the 6-layer ConvNet.
# float32: accumulation order only (measured <= 1.5e-6). bfloat16: quanto accumulates in float32
# and rounds once where optimum-quanto rounds bf16 intermediates (measured <= 1.6e-2 weight-only);
# with int8 activations such a last-bit difference can move an activation code by one step, and
# that propagates (measured <= 4.2e-2; the quantization error itself is 5e-2 … 1.1 here).
TOL = {(torch.float32, None): 1e-5, (torch.bfloat16, None): 3e-2,
       (torch.float32, "qint8"): 1e-5, (torch.bfloat16, "qint8"): 6e-2}
# Calibrated activation scales are amax(|y|) of layer outputs, so they carry the same differences.
SCALE_RTOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def rel_diff(got, want):
    return ((got.float() - want.float()).abs().max() / want.float().abs().max()).item()


def quantize_with(lib, model, weights, activations, inputs):
    lib.quantize(model, weights=weights, activations=activations)
    if activations is not None:
        # Both libraries streamline by default, by different rules (optimum-quanto from the first
        # batch on, by the ops that consume each output; quanto at the end of the scope, by whether
        # a quantized layer reads it): off, both quantize every output, so their scales must agree.
        # test_api_streamline.py covers quanto's streamlined files.
        with torch.no_grad(), lib.Calibration(streamline=False):
            for x in inputs:
                model(x)
    lib.freeze(model)
    return model


def save(model, lib, path):
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(path / "model.safetensors"))
    (path / "quanto_qmap.json").write_text(json.dumps(lib.quantization_map(model)))


def load(path):
    return load_file(str(path / "model.safetensors")), json.loads((path / "quanto_qmap.json").read_text())


def run(model, inputs):
    with torch.no_grad():
        return torch.cat([model(x) for x in inputs])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activations", [None, "qint8"])
@pytest.mark.parametrize("weights", WEIGHTS)
def test_optimum_file_loads_in_quanto(tmp_path, weights, activations, dtype):
    inputs = convnet_inputs(dtype)
    theirs = quantize_with(oq, make_convnet(dtype), weights, activations, inputs)
    save(theirs, oq, tmp_path)
    sd, qmap = load(tmp_path)
    ours = quanto.requantize(make_convnet(dtype, seed=7), sd, qmap)
    assert quanto.quantization_map(ours) == oq.quantization_map(theirs)
    d = rel_diff(run(ours, inputs), run(theirs, inputs))
    assert d <= TOL[(dtype, activations)], d


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activations", [None, "qint8"])
@pytest.mark.parametrize("weights", WEIGHTS)
def test_quanto_file_loads_in_optimum(tmp_path, weights, activations, dtype):
    inputs = convnet_inputs(dtype)
    ours = quantize_with(quanto, make_convnet(dtype), weights, activations, inputs)
    save(ours, quanto, tmp_path)
    sd, qmap = load(tmp_path)
    theirs = make_convnet(dtype, seed=7)
    oq.requantize(theirs, sd, qmap)
    assert oq.quantization_map(theirs) == quanto.quantization_map(ours)
    d = rel_diff(run(theirs, inputs), run(ours, inputs))
    assert d <= TOL[(dtype, activations)], d


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("activations", [None, "qint8"])
@pytest.mark.parametrize("weights", WEIGHTS)
def test_same_keys_shapes_and_bytes(weights, activations, dtype):
    inputs = convnet_inputs(dtype)
    ours = quantize_with(quanto, make_convnet(dtype), weights, activations, inputs).state_dict()
    theirs = quantize_with(oq, make_convnet(dtype), weights, activations, inputs).state_dict()
    assert list(ours) == list(theirs)
    for k in ours:
        a, b = ours[k], theirs[k].contiguous()
        assert (a.dtype, a.shape) == (b.dtype, b.shape), k
        if k.endswith(("input_scale", "output_scale")) and activations is not None:
            torch.testing.assert_close(a, b, rtol=SCALE_RTOL[dtype], atol=0, msg=k)
        else:  # weights, biases, norms, and scales still 1 (uncalibrated): identical bytes
            assert torch.equal(a.view(torch.uint8) if a.element_size() == 1 else a,
                               b.view(torch.uint8) if b.element_size() == 1 else b), k


def test_saved_files_are_byte_identical(tmp_path):
    # Same float model, same settings: the two libraries write the same safetensors file.
    for lib, sub in ((quanto, "a"), (oq, "b")):
        (tmp_path / sub).mkdir()
        save(quantize_with(lib, make_convnet(torch.bfloat16), "qint4", None, []), lib, tmp_path / sub)
    for name in ("model.safetensors", "quanto_qmap.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
