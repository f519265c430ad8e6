"""The kernels' own weight layouts, converted once at freeze/load: the packed W8A8 layout
(pack_w8a8 / unpack_w8a8 / linear_w8a8_packed). Exact round trips to the canonical layout, the
same results as the canonical-layout ops, Meta shapes (opcheck) and clear errors."""

import pytest
import torch
from conftest import FLOAT_DTYPES, random_tensor

ops = torch.ops.quanto


def random_int8(shape):
    return torch.randint(-128, 128, shape, dtype=torch.int8)


@pytest.mark.parametrize("N,K", [(1, 1), (7, 33), (40, 257), (64, 4), (130, 64)])
def test_pack_w8a8_round_trips_exactly(N, K):
    w = random_int8((N, K))
    w[0, 0], w[-1, -1] = -128, 127
    packed = ops.pack_w8a8(w)
    assert packed.dtype == torch.uint8
    assert packed.shape == ((N + 63) // 64, ((K + 3) // 4 + 1) * 256)
    assert torch.equal(ops.unpack_w8a8(packed, N, K), w)
    # A transposed (non-contiguous) weight packs the same as its contiguous copy.
    wt = random_int8((K, N)).t()
    assert torch.equal(ops.pack_w8a8(wt), ops.pack_w8a8(wt.contiguous()))


@pytest.mark.parametrize("out_dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M,K,N", [(1, 1, 1), (3, 33, 7), (17, 257, 40), (130, 64, 130), (2, 3, 5)])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("per_token", [False, True])
def test_linear_w8a8_packed_matches_linear_w8a8(out_dtype, M, K, N, bias, per_token):
    x, w = random_int8((M, K)), random_int8((N, K))
    x_scale = torch.rand(M, 1) * 0.01 if per_token else torch.tensor(0.02)
    w_scale = torch.rand(N, 1) * 0.01
    b = random_tensor((N,), out_dtype) if bias else None
    want = ops.linear_w8a8(x, x_scale, w, w_scale, b, out_dtype)
    got = ops.linear_w8a8_packed(x, x_scale, ops.pack_w8a8(w), w_scale, N, b, out_dtype)
    assert got.dtype == out_dtype and torch.equal(got, want)
    # ... which is the int32 matmul, rescaled.
    acc = (x.to(torch.int64) @ w.to(torch.int64).t()).float()
    ref = acc * (x_scale.float() * w_scale.view(1, -1))
    if b is not None:
        ref = ref + b.float()
    torch.testing.assert_close(got.float(), ref, rtol=1e-2, atol=1e-2 * ref.abs().max().item())


def test_linear_w8a8_packed_batched_input():
    x, w = random_int8((2, 3, 33)), random_int8((9, 33))
    xs, ws = torch.tensor(0.1), torch.rand(9, 1)
    got = ops.linear_w8a8_packed(x, xs, ops.pack_w8a8(w), ws, 9, None, torch.float32)
    assert got.shape == (2, 3, 9)
    assert torch.equal(got, ops.linear_w8a8(x, xs, w, ws, None, torch.float32))


def test_w8a8_packed_opcheck():
    x, w = random_int8((5, 33)), random_int8((70, 33))
    packed = ops.pack_w8a8(w)
    torch.library.opcheck(ops.pack_w8a8, (w,))
    torch.library.opcheck(ops.unpack_w8a8, (packed, 70, 33))
    torch.library.opcheck(ops.linear_w8a8_packed, (x, torch.rand(5, 1), packed, torch.rand(70, 1), 70, torch.randn(70),
                                                   torch.bfloat16))


def test_w8a8_packed_errors():
    w = random_int8((7, 33))
    packed = ops.pack_w8a8(w)
    x = random_int8((2, 33))
    with pytest.raises(TypeError, match="w_data"):
        ops.pack_w8a8(w.float())
    with pytest.raises(ValueError, match="2-d"):
        ops.pack_w8a8(random_int8((7,)))
    with pytest.raises(ValueError, match="w_packed"):
        ops.unpack_w8a8(packed, 7, 64)
    with pytest.raises(ValueError, match="w_packed"):
        ops.linear_w8a8_packed(random_int8((2, 40)), torch.tensor(1.0), packed, torch.rand(7, 1), 7, None,
                               torch.float32)
    with pytest.raises(ValueError, match="w_packed"):  # 65 channels need two blocks
        ops.linear_w8a8_packed(x, torch.tensor(1.0), packed, torch.rand(65, 1), 65, None, torch.float32)
    with pytest.raises(ValueError, match="x_scale"):
        ops.linear_w8a8_packed(x, torch.rand(3), packed, torch.rand(7, 1), 7, None, torch.float32)
    with pytest.raises(TypeError, match="out_dtype"):
        ops.linear_w8a8_packed(x, torch.tensor(1.0), packed, torch.rand(7, 1), 7, None, torch.int32)
    with pytest.raises(TypeError, match="x_data"):
        ops.linear_w8a8_packed(x.float(), torch.tensor(1.0), packed, torch.rand(7, 1), 7, None, torch.float32)


def test_frozen_w8a8_linear_uses_the_packed_layout_and_saves_canonical():
    # The weights layer picks the packed layout where the kernel set has VNNI and keeps the
    # canonical one elsewhere (AVX2, generic); the packed ops themselves are tested on every ISA.
    from quanto import Calibration, freeze, qint8, quantization_map, quantize, requantize

    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(33, 70), torch.nn.ReLU(), torch.nn.Linear(70, 7))
    x = torch.randn(5, 33)
    quantize(model, weights=qint8, activations=qint8)
    with Calibration():
        model(x)
    freeze(model)
    layer = model[0]
    expected = ops.weight_layout("qint8", [70, 33], None, torch.device("cpu"), "qint8", True)
    assert layer._quanto_layout == expected
    if expected != "packed_w8a8":
        pytest.skip(f"the {ops.cpu_isa()} kernel set keeps W8A8 weights canonical")
    assert layer._quanto_w8a8_packed and layer.weight_data.dtype == torch.uint8
    canonical = layer.canonical_weight_tensors()["data"]
    assert canonical.dtype == torch.int8 and canonical.shape == (70, 33)
    assert torch.equal(ops.pack_w8a8(canonical), layer.weight_data)
    # The state dict holds the canonical int8 weight (optimum-quanto's key), not the packed bytes.
    sd = model.state_dict()
    assert torch.equal(sd["0.weight._data"], canonical)
    y = model(x)
    # Same output as the canonical-layout op on the same quantized input.
    xq = ops.symmetric_quantize(x, layer.input_scale, "qint8")
    want0 = ops.linear_w8a8(xq, layer.input_scale, canonical, layer.weight_scale, layer.bias, x.dtype)
    got0 = ops.linear_w8a8_packed(xq, layer.input_scale, layer.weight_data, layer.weight_scale, 70, layer.bias, x.dtype)
    assert torch.equal(got0, want0)
    # Reload: packed again at load, identical outputs.
    fresh = torch.nn.Sequential(torch.nn.Linear(33, 70), torch.nn.ReLU(), torch.nn.Linear(70, 7))
    requantize(fresh, sd, quantization_map(model))
    assert fresh[0]._quanto_w8a8_packed
    assert torch.equal(fresh(x), y)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("M,K,N,group_size", [(1, 64, 1, 64), (3, 128, 7, 64), (17, 256, 33, 128), (4, 192, 5, 64)])
@pytest.mark.parametrize("zeropoint", [False, True])
def test_w2_tiled_round_trips_and_matches_linear_qbits(dtype, M, K, N, group_size, zeropoint):
    w = random_tensor((N, K), torch.float32)
    scale, shift = ops.minmax_scale_shift(w, "qint2", 0, group_size)
    if zeropoint:
        shift = ops.shift_to_zeropoint(scale, shift, "qint2")
    packed = ops.pack_codes(ops.affine_quantize(w, scale, shift, "qint2", 0, group_size), 2)
    tiled = ops.tile_qbits(packed, 2, N, K, group_size)
    assert tiled.shape == (N, K // 4)
    assert torch.equal(ops.untile_qbits(tiled, 2, N, K, group_size), packed)
    x = random_tensor((M, K), dtype)
    b = random_tensor((N,), dtype)
    want = ops.linear_qbits(x, packed, scale, shift, 2, group_size, b)
    got = ops.linear_qbits_tiled(x, tiled, scale, shift, 2, group_size, b)
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    torch.testing.assert_close(got.float(), want.float(), rtol=tol, atol=tol * want.float().abs().max().item())
    torch.library.opcheck(ops.linear_qbits_tiled, (x, tiled, scale, shift, 2, group_size, b))


def test_w2_tiled_errors():
    packed = torch.zeros(2, 32, dtype=torch.uint8)  # 8 groups of 32 codes
    with pytest.raises(ValueError, match="multiple of 64"):
        ops.tile_qbits(packed, 2, 4, 64, 32)
