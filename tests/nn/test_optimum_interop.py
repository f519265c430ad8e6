"""A model saved by the C++ API (quanto::save) loads in optimum-quanto 0.2.7 (requantize) and
gives the same outputs as in C++."""
import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

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
