"""quanto's own API: every quantized module against the float op on its dequantized weight,
QAT gradients, copies, patterns, device/dtype moves, state dicts, requantize and torch.compile."""

import pytest
import torch
import torch.nn.functional as F
from api_models import make_convnet, make_mlp
from torch import nn

import quanto

ops = torch.ops.quanto
WEIGHTS = ["qint8", "qint4", "qint2", "qfloat8", "qfloat8_e5m2"]


def close(got, want, rtol=1e-5):
    assert got.shape == want.shape and got.dtype == want.dtype
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * want.abs().max().item())


@pytest.mark.parametrize("weights", WEIGHTS)
@pytest.mark.parametrize("shape", [(256, 64), (96, 40), (48, 7), (40, 5)])  # grouped, tiled, untiled
def test_qlinear_matches_float_linear_on_dequantized_weight(weights, shape):
    k, n = shape
    m = nn.Linear(k, n)
    quanto.quantize(m, weights=weights)
    x = torch.randn(3, 5, k)
    y_fake = m(x)  # before freeze: fake-quantized weight
    quanto.freeze(m)
    y = m(x)
    want = F.linear(x, m.weight, m.bias)  # m.weight reads the frozen weight back, dequantized
    close(y, want)
    close(y_fake, want)


@pytest.mark.parametrize("weights", WEIGHTS)
def test_convolutions(weights):
    for conv, x in ((nn.Conv1d(8, 16, 3), torch.randn(2, 8, 20)), (nn.Conv2d(32, 8, 3), torch.randn(2, 32, 6, 6))):
        quanto.quantize(conv, weights=weights)
        quanto.freeze(conv)
        assert conv.frozen
        close(conv(x), conv._conv_forward(x, conv.weight, conv.bias))


@pytest.mark.parametrize("weights", ["qint8", "qint4"])
def test_transformers_conv1d_gpt2_layout(weights):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    m = Conv1D(96, 64)  # nf=96 outputs, nx=64 inputs, weight [64, 96]
    x = torch.randn(2, 3, 64)
    quanto.quantize(m, weights=weights)
    quanto.freeze(m)
    assert m.weight.shape == (64, 96)
    close(m(x), x @ m.weight + m.bias)
    sd = m.state_dict()
    # Kept out-first like a Linear: [nf, nx] codes (4-bit: packed two rows per byte, no groups).
    key, shape = ("weight._data", (96, 64)) if weights == "qint8" else ("weight._data._data", (48, 64))
    assert sd[key].shape == shape
    m2 = quanto.requantize(Conv1D(96, 64), sd, quanto.quantization_map(m))
    assert torch.equal(m2(x), m(x))


def test_rmsnorm_and_layernorm_quantize_outputs_only():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    model = nn.Sequential(nn.Linear(32, 32), LlamaRMSNorm(32, eps=1e-6), nn.LayerNorm(32))
    ref = [type(m) for m in model]
    quanto.quantize(model, weights="qint8")
    assert type(model[1]) is ref[1] and type(model[2]) is ref[2]  # norms: activations only
    quanto.quantize(model, activations="qint8", include=["1", "2"])
    assert isinstance(model[1], ref[1]) and isinstance(model[1], quanto.QModuleMixin)
    assert quanto.quantization_map(model)["1"] == {"weights": "none", "activations": "qint8"}
    x = torch.randn(4, 32)
    with quanto.Calibration():
        model(x)
    n = model[1]
    h = model[0](x)
    want = ops.symmetric_dequantize(ops.symmetric_quantize(ref[1].forward(n, h), n.output_scale, "qint8"),
                                    n.output_scale)
    close(n(h), want)
    assert n.output_scale != 1


@pytest.mark.parametrize("weights", ["qint8", "qint4"])
def test_embedding(weights):
    emb = nn.Embedding(100, 64)
    ids = torch.tensor([[1, 5, 99], [0, 0, 7]])
    assert quanto.quantize(emb, weights=weights) is emb and not isinstance(emb, quanto.QModuleMixin)
    quanto.quantize(emb, weights=weights, embeddings=True)
    quanto.freeze(emb)
    close(emb(ids), F.embedding(ids, emb.weight))


def test_quantize_copy_leaves_the_model_untouched():
    model = make_mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quanto.quantize(model, weights="qint4", inplace=False)
    assert q is not model and type(model.up) is nn.Linear and isinstance(q.up, quanto.QLinear)
    quanto.freeze(q)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_include_exclude_patterns():
    model = make_convnet()
    quanto.quantize(model, weights="qint8", include="fc*", exclude=["fc2"])
    assert sorted(quanto.quantization_map(model)) == ["fc1", "fc3"]


def test_qat_straight_through_gradients():
    torch.manual_seed(0)
    m = nn.Linear(64, 16)
    quanto.quantize(m, weights="qint4", activations="qint8")
    x = torch.randn(8, 64, requires_grad=True)
    with quanto.Calibration():
        m(x)
    y = m(x)
    g = torch.randn_like(y)
    y.backward(g)
    # Straight-through: the output gradient goes back through quantize/dequantize unchanged.
    xq = ops.symmetric_dequantize(ops.symmetric_quantize(x.detach(), m.input_scale, "qint8"), m.input_scale)
    close(m.weight.grad, g.T @ xq)
    wq = m._fake_quantized_weight().detach()
    close(x.grad, g @ wq)
    # and training moves the quantized model
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    opt.step()
    assert not torch.equal(m(x), y)


def test_calibration_momentum_rule():
    m = nn.Linear(16, 8)
    quanto.quantize(m, weights="qint8", activations="qint8")
    x1, x2 = torch.randn(4, 16), 3 * torch.randn(4, 16)
    with torch.no_grad(), quanto.Calibration(momentum=0.75):
        m(x1)
        s1 = m.input_scale.clone()
        m(x2)
    torch.testing.assert_close(s1, x1.abs().max() / 127)
    torch.testing.assert_close(m.input_scale, 0.75 * s1 + 0.25 * x2.abs().max() / 127)


def test_float8_activations():
    model = make_mlp()
    x = torch.randn(4, 256)
    quanto.quantize(model, weights="qint8", activations="qfloat8")
    with quanto.Calibration():
        model(x)
    quanto.freeze(model)
    assert quanto.quantization_map(model)["up"]["activations"] == "qfloat8_e4m3fn"
    assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("weights", ["qfloat8", "qint4", "qint8"])
def test_to_dtype_and_device_keeps_codes(weights):
    model = make_mlp()
    quanto.quantize(model, weights=weights)
    quanto.freeze(model)
    data = model.up.weight_data.clone()
    x = torch.randn(2, 256)
    y = model(x)
    model.to(torch.bfloat16)
    assert torch.equal(model.up.weight_data.view(torch.uint8), data.view(torch.uint8))
    assert model.up.weight_scale.dtype == torch.bfloat16 and model.up.input_scale.dtype == torch.bfloat16
    close(model(x.bfloat16()).float(), y, rtol=5e-2)
    model.to("meta")
    assert model.up.weight_data.is_meta and model.up.weight_data.dtype == data.dtype
    model.to_empty(device="cpu")
    assert model.up.weight_data.device.type == "cpu"


@pytest.mark.parametrize("weights", ["qint8", "qint4", "qint2", "qfloat8"])
def test_state_dict_round_trip_and_assign(weights):
    a = quanto.freeze(quanto.quantize(make_mlp(seed=1), weights=weights))
    b = quanto.freeze(quanto.quantize(make_mlp(seed=2), weights=weights))
    x = torch.randn(3, 256)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a(x), b(x))
    c = quanto.freeze(quanto.quantize(make_mlp(seed=3), weights=weights))
    c.load_state_dict(a.state_dict(), assign=True)
    assert torch.equal(a(x), c(x))
    # A frozen state dict loads into an unfrozen quantized model, which becomes frozen.
    d = quanto.quantize(make_mlp(seed=4), weights=weights)
    d.load_state_dict(a.state_dict())
    assert d.up.frozen and torch.equal(a(x), d(x))


def test_group_size_option_round_trips_through_the_map():
    a = quanto.freeze(quanto.quantize(make_mlp(), weights="qint4", group_size=64))
    qmap = quanto.quantization_map(a)
    assert qmap["up"] == {"weights": "qint4", "activations": "none", "group_size": 64}
    assert a.state_dict()["up.weight._scale"].shape == (128 * 256 // 64, 1)
    b = quanto.requantize(make_mlp(seed=9), a.state_dict(), qmap)
    x = torch.randn(2, 256)
    assert torch.equal(a(x), b(x))


def test_requantize_on_meta_model_never_materialises_float_weights():
    src = quanto.freeze(quanto.quantize(make_mlp(), weights="qint4"))
    with torch.device("meta"):
        skeleton = make_mlp()
    model = quanto.requantize(skeleton, src.state_dict(), quanto.quantization_map(src))
    # The CPU kernels' tiled layout (canonical when the generic path is forced: QUANTO_FORCE_GENERIC).
    tiled = not torch.ops.quanto.force_generic_path(False)
    torch.ops.quanto.force_generic_path(not tiled)
    assert model.up.weight_data.device.type == "cpu" and model.up._quanto_tiled == tiled
    x = torch.randn(2, 256)
    assert torch.equal(model(x), src(x))


def test_torch_compile_weight_only():
    model = make_convnet()
    quanto.quantize(model, weights="qint4", include=["fc1", "fc3"])  # tiled and canonical 4-bit
    quanto.quantize(model, weights="qint8", include=["fc2", "conv*"])
    quanto.freeze(model)
    generic = torch.ops.quanto.force_generic_path(False)
    torch.ops.quanto.force_generic_path(generic)
    assert model.fc1._quanto_tiled == (not generic) and not model.fc3._quanto_tiled
    x = torch.randn(2, 4, 8, 8)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():  # the native ops have no backward: inference only once frozen
        close(compiled(x), model(x))


@pytest.mark.parametrize("cpp_wrapper", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_torch_compile_with_inductor_freezing(dtype, cpp_wrapper):
    """Inductor's freezing (weights become constants of the graph: no per-call gathering of the
    model's tensors), alone and with its C++ wrapper (the graph's calls, quanto's ops included,
    made from C++), keeps the quantized weights as they are and gives eager's results."""
    model = make_mlp(dtype)
    quanto.quantize(model, weights="qint4", group_size=32, include="up")  # tiled 4-bit, a decode row
    quanto.quantize(model, weights="qint8", include="down")
    quanto.freeze(model)
    x = torch.randn(1, 256, dtype=dtype)
    torch._dynamo.reset()
    try:
        with torch.no_grad(), torch._inductor.config.patch(freezing=True, cpp_wrapper=cpp_wrapper):
            got = torch.compile(model, fullgraph=True)(x)
    finally:
        torch._dynamo.reset()
    with torch.no_grad():
        close(got, model(x), rtol=1e-5 if dtype == torch.float32 else 1e-2)
