"""optimum-quanto 0.2.7's output semantics on its own files (docs/format.md 7.1), both directions.

A model with a float op between two quantized Linear layers is calibrated and saved by one
library and loaded by both; the two then give the same outputs, counted value by value: every
quantized module's output on its output scale's grid, and a Linear reading another's output
through grid-keeping ops (relu, views, scalar products) taking that grid rather than its own
input_scale. optimum-quanto's default (streamlining) calibration leaves those two scales
different, which is what makes the second rule observable."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import quanto

oq = pytest.importorskip("optimum.quanto")

ACTS = {
    "gelu": torch.nn.functional.gelu,  # a float op: the reader re-quantizes with its input_scale
    "relu": torch.relu,  # keeps int8 codes: the reader takes the producer's grid
    "view": lambda t: t.reshape(t.shape[0], 4, -1).transpose(1, 2).transpose(1, 2).reshape(t.shape[0], -1),
    "half": lambda t: t * 0.5,  # a scalar product rescales the grid
}


class Chain(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.act = act
        self.a = nn.Linear(64, 128)
        self.b = nn.Linear(128, 32)

    def forward(self, x):
        return self.b(ACTS[self.act](self.a(x)))


def make(act, seed=0):
    torch.manual_seed(seed)
    return Chain(act).eval()


def batches(n=3, rows=8, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(rows, 64, generator=g) for _ in range(n)]


def values(y):
    return y.dequantize() if isinstance(y, oq.QTensor) else torch.Tensor(y)


def build(lib, act, weights, activations, **calibration):
    model = make(act)
    lib.quantize(model, weights=weights, activations=activations)
    with torch.no_grad(), lib.Calibration(**calibration):
        for x in batches():
            model(x)
    lib.freeze(model)
    return model


def save(model, lib, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path / "model.safetensors"))
    (path / "quanto_qmap.json").write_text(json.dumps(lib.quantization_map(model)))


def load_both(path, act):
    sd = load_file(str(path / "model.safetensors"))
    qmap = json.loads((path / "quanto_qmap.json").read_text())
    ours = quanto.requantize(make(act, seed=7), dict(sd), qmap)
    theirs = make(act, seed=7)
    oq.requantize(theirs, dict(sd), qmap)
    return ours, theirs


def compare(ours, theirs):
    """(number of differing output values, total, largest difference in output steps)."""
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        got, want = values(ours(x)), values(theirs(x))
    step = theirs.b.output_scale.item()
    return int((got != want).sum()), got.numel(), ((got - want).abs().max() / step).item()


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("weights,activations", [("qint8", "qint8"), ("qint4", "qint8"), ("qint8", "qfloat8")])
def test_optimum_quanto_file_same_outputs_in_quanto(tmp_path, act, weights, activations):
    theirs_calibrated = build(oq, act, weights, activations)  # optimum-quanto's default: streamline=True
    save(theirs_calibrated, oq, tmp_path)
    ours, theirs = load_both(tmp_path, act)
    assert "quantize_output" not in (tmp_path / "quanto_qmap.json").read_text()
    if act == "relu" and activations == "qint8":
        # The case the reader's rule decides: the reader's own scale differs from the grid it reads
        # (for views and scalar products the two calibrations agree anyway).
        assert not torch.equal(theirs.b.input_scale, theirs.a.output_scale)
    differ, total, steps = compare(ours, theirs)
    print(f"{act} {weights}/{activations}: {differ} of {total} values differ, at most {steps:.3f} steps")
    # Float rounding of the matmuls only: at most a rare one-step flip.
    assert differ <= total // 100 and steps <= 1.01, (differ, steps)


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("weights,activations", [("qint8", "qint8"), ("qint4", "qint8")])
def test_quanto_file_same_outputs_in_optimum_quanto(tmp_path, act, weights, activations):
    # streamline=False: every output stays quantized, the only semantics optimum-quanto's map can
    # carry (quanto's streamlined maps say "quantize_output": false, which optimum-quanto ignores).
    ours_calibrated = build(quanto, act, weights, activations, streamline=False)
    save(ours_calibrated, quanto, tmp_path)
    ours, theirs = load_both(tmp_path, act)
    for m in (ours, ours_calibrated):
        differ, total, steps = compare(m, theirs)
        print(f"{act} {weights}/{activations}: {differ} of {total} values differ, at most {steps:.3f} steps")
        assert differ <= total // 100 and steps <= 1.01, (differ, steps)


def test_outputs_carry_their_grid_through_grid_keeping_ops_only():
    model = build(quanto, "relu", "qint8", "qint8", streamline=False)
    x = batches(1)[0]
    with torch.no_grad():
        y = model.a(x)
    grid = quanto.nn.qactivation.activation_grid
    assert grid(y)[1] is model.a.output_scale
    assert grid(torch.relu(y)) is not None and grid(y.reshape(2, -1).t()) is not None
    assert torch.equal(grid(y * 0.5)[1], model.a.output_scale * 0.5) and grid(y / 4) is not None
    assert grid(torch.cat([y, y])) is not None and grid(torch.cat([y, y * 2])) is None
    assert grid(y[1:3, None]) is not None and grid(y[[0, 2]]) is None  # advanced indexing: optimum-quanto dequantizes
    assert grid(y.to(torch.bfloat16))[1].dtype == torch.bfloat16
    for float_op in (torch.nn.functional.gelu, lambda t: t + 1, lambda t: t * t, torch.exp, lambda t: t.sum(-1)):
        assert grid(float_op(y)) is None
    z = y.clone()
    z.add_(1.0)  # in place: its values left the grid
    assert grid(z) is None
    assert type(y + 1) is torch.Tensor  # float results are plain tensors


def test_torch_compile_fullgraph_keeps_the_rule(tmp_path):
    save(build(oq, "relu", "qint8", "qint8"), oq, tmp_path)
    ours, theirs = load_both(tmp_path, "relu")
    x = batches(1, rows=16, seed=5)[0]
    compiled = torch.compile(ours, fullgraph=True)
    with torch.no_grad():
        got, eager, want = values(compiled(x)), values(ours(x)), values(theirs(x))
    assert torch.equal(got, eager) and torch.equal(got, want)
