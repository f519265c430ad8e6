"""Models move both ways between the C++ API and optimum-quanto 0.2.7: a model saved by
quanto::save loads in optimum-quanto (requantize) with the same outputs, and a model saved by
optimum-quanto loads with quanto::requantize (no quanto metadata in the file) with the same outputs."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

optimum_quanto = pytest.importorskip("optimum.quanto")

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(os.environ.get("QUANTO_NN_SAVE_FIXTURE", ROOT / "build" / "quanto_nn_save_fixture"))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(256, 160)
        self.fc2 = torch.nn.Linear(160, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


@pytest.mark.parametrize(
    "weights,activations",
    [("qint8", "none"), ("qint4", "none"), ("qint2", "none"), ("qfloat8", "none"), ("qint8", "qint8")],
)
def test_cpp_saved_model_loads_in_optimum_quanto(tmp_path, weights, activations):
    if not FIXTURE.exists():
        pytest.fail(f"{FIXTURE} is missing: build it first (make build)")
    subprocess.run([str(FIXTURE), str(tmp_path), weights, activations], check=True)
    state = load_file(tmp_path / "model.safetensors")
    qmap = json.loads((tmp_path / "quanto_qmap.json").read_text())
    canonical = {"qfloat8": "qfloat8_e4m3fn"}  # the alias is written under its full name
    assert qmap["fc1"] == {"weights": canonical.get(weights, weights), "activations": activations}
    io = load_file(tmp_path / "io.safetensors")

    model = MLP()
    optimum_quanto.requantize(model, state, qmap, device=torch.device("cpu"))
    with torch.no_grad():
        y = model(io["x"])
    if hasattr(y, "dequantize"):
        y = y.dequantize()
    expected = io["y"]
    if activations == "none":
        torch.testing.assert_close(y, expected, rtol=1e-4, atol=1e-4)
    else:
        # int8 outputs: values on the output grid; a rounding tie may differ by one step
        step = float(model.fc2.output_scale)
        assert (y - expected).abs().max().item() <= step * 1.01


@pytest.mark.parametrize(
    "weights,activations",
    [("qint8", "none"), ("qint4", "none"), ("qint2", "none"), ("qfloat8", "none"), ("qint8", "qint8")],
)
def test_optimum_quanto_saved_model_loads_in_cpp(tmp_path, weights, activations):
    if not FIXTURE.exists():
        pytest.fail(f"{FIXTURE} is missing: build it first (make build)")
    torch.manual_seed(0)
    model = MLP()
    oq = optimum_quanto
    qtypes = {"qint8": oq.qint8, "qint4": oq.qint4, "qint2": oq.qint2, "qfloat8": oq.qfloat8}
    oq.quantize(model, weights=qtypes[weights], activations=qtypes.get(activations))
    with torch.no_grad():
        if activations != "none":
            # streamline=False: keep output quantization on every layer, as quanto does
            with oq.Calibration(streamline=False):
                for _ in range(4):
                    model(torch.randn(16, 256))
        oq.freeze(model)
        x = torch.randn(5, 256)
        y = model(x)
        if hasattr(y, "dequantize"):
            y = y.dequantize()
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "quanto_qmap.json").write_text(json.dumps(oq.quantization_map(model)))
    save_file({"x": x}, tmp_path / "io.safetensors")
    subprocess.run([str(FIXTURE), "--load", str(tmp_path)], check=True)
    y_cpp = load_file(tmp_path / "cpp_out.safetensors")["y"]
    if activations == "none":
        torch.testing.assert_close(y_cpp, y, rtol=1e-4, atol=1e-4)
    else:
        step = float(model.fc2.output_scale)
        assert (y_cpp - y).abs().max().item() <= step * 1.01
