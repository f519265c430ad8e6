"""Pure-PyTorch statement of the math in docs/format.md, the oracle for bit-exact tests.

Written from the specification, evaluated with ordinary torch ops in the input dtype; where
quanto defines a policy the specification leaves open (zero scales), it is spelled out here.
"""

import torch


def reduce_dims(ndim, axis):
    return list(range(1, ndim)) if axis == 0 else list(range(0, ndim - 1))


def absmax_scale(x, qtype, axis=None):
    a = x.abs()
    rmax = a.max() if axis is None else a.amax(dim=reduce_dims(x.ndim, axis), keepdim=True)
    scale = rmax / qtype.qmax
    # quanto policy: a zero scale (all-zero data or underflow) becomes 1.
    return torch.where(scale == 0, torch.ones_like(scale), scale)


def symmetric_quantize(x, scale, qtype):
    data = x / scale
    if not qtype.is_floating_point:
        data = torch.round(data)
    return torch.clamp(data, min=qtype.qmin, max=qtype.qmax).to(qtype.dtype)


def symmetric_dequantize(data, scale):
    return scale * data.to(scale.dtype)


def group(x, axis, group_size):
    if axis == 0:
        return x.reshape(-1, group_size)
    d = x.shape[-1]
    return x.reshape(-1, group_size, d).permute(1, 2, 0).reshape(group_size, -1)


def ungroup(g, axis, shape):
    if axis == 0:
        return g.reshape(shape)
    gs, d = g.shape[0], shape[-1]
    return g.reshape(gs, d, -1).permute(2, 0, 1).reshape(shape)


def minmax_scale_shift(x, bits, axis, group_size=None):
    if group_size is not None:
        x = group(x, axis, group_size)
    dims = reduce_dims(x.ndim, axis)
    rmin, rmax = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
    scale = (rmax - rmin) / (2**bits - 1)
    return scale, -rmin


def shift_to_zeropoint(scale, shift, bits):
    return torch.clamp(torch.round(shift / scale), 0, 2**bits - 1).to(torch.uint8)


def affine_quantize(x, scale, shift, bits, axis, group_size=None):
    if group_size is not None:
        x = group(x, axis, group_size)
    if shift.dtype.is_floating_point:
        data = torch.round((x + shift) / scale)
    else:
        data = torch.round(x / scale) + shift
    return torch.clamp(data, 0, 2**bits - 1).to(torch.uint8)


def affine_dequantize(codes, scale, shift, shape, axis, group_size=None):
    if shift.dtype.is_floating_point:
        y = scale * codes - shift
    else:
        y = scale * (codes.to(torch.int8) - shift.to(torch.int8))
    return ungroup(y, axis, shape) if group_size is not None else y


def pack(codes, bits):
    k = 8 // bits
    rows = codes.shape[0]
    r = (rows + k - 1) // k
    packed = torch.zeros((r, *codes.shape[1:]), dtype=torch.uint8)
    for i in range(k):
        lo, hi = i * r, min((i + 1) * r, rows)
        if lo < hi:
            packed[: hi - lo] |= codes[lo:hi] << (bits * i)
    return packed


def unpack(packed, bits, rows):
    mask = 2**bits - 1
    slices = [(packed >> (bits * i)) & mask for i in range(8 // bits)]
    return torch.cat(slices)[:rows]


def default_group_size(in_features):
    """docs/format.md's default group-size rule for 2/4-bit weights."""
    if in_features <= 128:
        return None
    gs = 128
    while in_features % gs != 0 and gs > 32:
        gs -= 32
    return gs if in_features % gs == 0 else None
