"""torch.library.opcheck on every op: schema, fake-tensor (Meta) and aot_dispatch checks."""

import pytest
import torch

ops = torch.ops.quanto


def samples():
    x = torch.randn(16, 64)
    xb = x.to(torch.bfloat16)
    s0 = ops.absmax_scale(x, "qint8", 0)
    q8 = ops.symmetric_quantize(x, s0, "qint8", 0)
    sf = ops.absmax_scale(x, "qfloat8", -1)
    f8 = ops.symmetric_quantize(x, sf, "qfloat8", -1)
    scale, shift = ops.minmax_scale_shift(x, "qint4", 0, 32)
    zp = ops.shift_to_zeropoint(scale, shift, "qint4")
    codes = ops.affine_quantize(x, scale, shift, "qint4", 0, 32)
    packed = ops.pack_codes(codes, 4)
    s_m1, sh_m1 = ops.minmax_scale_shift(x, "qint2", -1, 16)
    codes_m1 = ops.affine_quantize(x, s_m1, sh_m1, "qint2", -1, 16)
    xs = ops.absmax_scale(x, "qint8")
    xq = ops.symmetric_quantize(x, xs, "qint8")
    w = torch.randn(8, 64)
    ws = ops.absmax_scale(w, "qint8", 0)
    wq = ops.symmetric_quantize(w, ws, "qint8", 0)
    tiled = ops.tile_qbits(packed, 4, 16, 64, 32)
    return [
        (ops.tile_qbits, (packed, 4, 16, 64, 32)),
        (ops.untile_qbits, (tiled, 4, 16, 64, 32)),
        (ops.linear_qbits_tiled, (torch.randn(3, 64), tiled, scale, shift, 4, 32, torch.randn(16))),
        (ops.linear_qbits_tiled, (torch.randn(5, 64).to(torch.bfloat16), tiled, scale, zp, 4, 32, None)),
        (ops.absmax_scale, (xb, "qint8", 0)),
        (ops.absmax_scale, (x, "qfloat8_e5m2", None)),
        (ops.minmax_scale_shift, (x, "qint4", 0, 32)),
        (ops.minmax_scale_shift, (xb, "qint2", -1, None)),
        (ops.shift_to_zeropoint, (scale, shift, "qint4")),
        (ops.symmetric_quantize, (x, s0, "qint8", 0)),
        (ops.symmetric_quantize, (xb, sf.to(torch.bfloat16), "qfloat8", -1)),
        (ops.symmetric_dequantize, (q8, s0)),
        (ops.symmetric_dequantize, (f8, sf)),
        (ops.affine_quantize, (x, scale, shift, "qint4", 0, 32)),
        (ops.affine_quantize, (x, scale, zp, "qint4", 0, 32)),
        (ops.affine_quantize, (x, s_m1, sh_m1, "qint2", -1, 16)),
        (ops.affine_dequantize, (codes, scale, shift, [16, 64], 0, 32)),
        (ops.affine_dequantize, (codes_m1, s_m1, sh_m1, [16, 64], -1, 16)),
        (ops.pack_codes, (codes, 4)),
        (ops.unpack_codes, (packed, 4, codes.shape[0])),
        (ops.linear_qbytes, (torch.randn(3, 64), wq, ws, torch.randn(8))),
        (ops.linear_qbits, (torch.randn(3, 64), packed, scale, shift, 4, 32, None)),
        (ops.linear_w8a8, (xq, xs, wq, ws, None, torch.float32)),
        (ops.linear_w4a8_tiled, (xq, xs, tiled, scale, shift, 32, torch.randn(16), torch.float32)),
        (ops.linear_w4a8_tiled, (*ops.quantize_per_token(torch.randn(2, 3, 64), "qint8"), tiled, scale, zp, 32, None,
                                 torch.bfloat16)),
        (ops.quantize_per_token, (torch.randn(2, 3, 64), "qint8")),
        (ops.quantize_per_token, (xb, "qint8")),
        (ops.decode_attention, (torch.randn(2, 6, 1, 16), torch.randn(2, 3, 9, 16), torch.randn(2, 3, 9, 16),
                                torch.rand(2, 1, 1, 9) > 0.3, 0.25)),
        (ops.decode_attention, (torch.randn(1, 4, 1, 32).bfloat16(), torch.randn(1, 1, 5, 32).bfloat16(),
                                torch.randn(1, 1, 5, 32).bfloat16(), None, 0.2)),
    ]


@pytest.mark.parametrize("op,args", samples(), ids=lambda v: getattr(v, "__name__", ""))
def test_opcheck(op, args):
    tests = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
    if any(isinstance(a, torch.Tensor) and a.dtype.is_floating_point and a.element_size() == 1 for a in args):
        # torch's schema check compares inputs before/after with float arithmetic, which float8
        # tensors do not support ("mul_cpu_reduced_float" not implemented): a torch limitation.
        tests = tests[1:]
    torch.library.opcheck(op, args, test_utils=tests)


def test_meta_device_gives_shapes_without_data():
    x = torch.empty(16, 64, device="meta")
    scale, shift = ops.minmax_scale_shift(x, "qint4", 0, 32)
    assert scale.shape == (32, 1) and scale.device.type == "meta"
    codes = ops.affine_quantize(x, scale, shift, "qint4", 0, 32)
    assert codes.shape == (32, 32) and codes.dtype == torch.uint8
    assert ops.pack_codes(codes, 4).shape == (16, 32)
