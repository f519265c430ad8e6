"""Quantized activations in the forward pass: static outputs that keep their grid, dynamic inputs.

**Static outputs (optimum-quanto's semantics).** optimum-quanto 0.2.7 returns the output of a
module with static activations as a quantized tensor (int8/float8 codes and the module's
``output_scale``). The ops that keep values on that grid (views, reshapes, transposes, slices,
splits, copies, dtype/device moves, the concatenation or stacking of two tensors quantized alike,
integer relu/neg, multiplication or division by a scalar) return quantized tensors again, every
other op dequantizes; and a quantized Linear that reads a quantized tensor uses it as it is: its
own ``input_scale`` is then ignored. That scale can differ from the producer's output scale in
optimum-quanto's files (its streamlining stops quantizing outputs after the first calibration
batch, while the reader keeps calibrating on the float values, e.g. after a relu), so re-quantizing
at the reader would move values by up to half a step.

quanto keeps the dequantized values in :class:`QuantizedActivation`, a ``torch.Tensor`` subclass
remembering ``(qtype name, scale)``, carried by the same ops (``__torch_function__``: no copy, the
values are those of a plain tensor). A quantized module reading one quantizes it with that scale,
which gives back the producer's codes, instead of its own ``input_scale``. Outside this, the
values are ordinary float tensors.

**Dynamic inputs.** :func:`quantize_per_token` quantizes each token (each row of the last
dimension) with its own absmax scale, computed now (``torch.ops.quanto.quantize_per_token``).
"""

import numbers
from typing import Optional, Tuple

import torch

__all__ = ["QuantizedActivation", "activation_grid", "quantize_per_token"]

ops = torch.ops.quanto
_T = torch.Tensor
F = torch.nn.functional


def quantize_per_token(x: torch.Tensor, qtype_name: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(codes, per-token scales [..., 1], dequantized values in x's dtype) of x."""
    data, scale = ops.quantize_per_token(x, qtype_name)
    k = x.shape[-1]
    xq = ops.symmetric_dequantize(data.reshape(-1, k), scale.reshape(-1, 1)).reshape(x.shape)
    return data, scale, xq.to(x.dtype)


def activation_grid(x) -> Optional[Tuple[str, torch.Tensor]]:
    """(qtype name, scale) of a quantized module's static output still on its grid, else None."""
    return x._quanto_grid if isinstance(x, QuantizedActivation) else None


# Ops after which the values are unchanged (shape, layout, copies): the grid is kept as it is.
_SAME_GRID = {
    _T.view, _T.view_as, _T.reshape, torch.reshape, _T.reshape_as, _T.flatten, torch.flatten, _T.unflatten,
    torch.unflatten, _T.squeeze, torch.squeeze, _T.unsqueeze, torch.unsqueeze, _T.permute, torch.permute,
    _T.transpose, torch.transpose, _T.swapaxes, torch.swapaxes, _T.movedim, torch.movedim, _T.t, torch.t,
    _T.T.__get__, _T.mT.__get__, _T.expand, _T.expand_as, _T.contiguous, _T.clone, torch.clone, _T.detach,
    torch.detach, _T.narrow, torch.narrow, _T.select, torch.select, _T.__getitem__, _T.split, torch.split,
    _T.chunk, torch.chunk, _T.unbind, torch.unbind,
}
# dtype / device moves: optimum-quanto keeps the codes and converts the scale.
_MOVES = {_T.to, _T.float, _T.half, _T.bfloat16, _T.double, _T.cpu, _T.cuda, _T.type_as}
# Exact on integer codes only.
_INT_ONLY = {_T.relu, torch.relu, F.relu, _T.relu_, torch.relu_, _T.neg, torch.neg, _T.__neg__}
_MUL = {_T.mul, torch.mul, _T.__mul__, _T.__rmul__, _T.mul_}
_DIV = {_T.div, torch.div, _T.__truediv__, _T.div_}
_JOIN = {torch.cat, torch.concat, torch.concatenate, torch.stack}


def _scalar(v) -> bool:
    return (isinstance(v, numbers.Number) and not isinstance(v, bool)) or (
        type(v) is torch.Tensor and v.dim() == 0 and v.is_floating_point())


def _basic_index(idx) -> bool:
    """Whether ``t[idx]`` is a view (ints, slices, None, Ellipsis): select / slice / unsqueeze."""
    parts = idx if isinstance(idx, tuple) else (idx,)
    return all(p is None or p is Ellipsis or isinstance(p, (int, slice)) and not isinstance(p, bool) for p in parts)


def _grid_after(func, args, kwargs, out) -> Optional[Tuple[str, torch.Tensor]]:
    """The grid of ``out = func(*args, **kwargs)``, or None when the op leaves it."""
    if func in _JOIN:
        ts = args[0] if args else kwargs.get("tensors")
        if not isinstance(ts, (list, tuple)) or len(ts) != 2:
            return None
        grids = [activation_grid(t) for t in ts]
        if None in grids or grids[0][0] != grids[1][0] or not torch.equal(grids[0][1], grids[1][1]):
            return None
        if func is not torch.stack and grids[0][0] != "qint8":
            return None  # optimum-quanto concatenates int8 codes only
        return grids[0]
    if func in _MUL:
        a, b = (args + (None, None))[:2]
        x, c = (a, b) if activation_grid(a) is not None else (b, a)
        grid = activation_grid(x)
        return None if grid is None or not _scalar(c) else (grid[0], grid[1] * c)
    src = args[0] if args else None
    grid = activation_grid(src)
    if grid is None:
        return None
    if func is _T.__getitem__ and not _basic_index(args[1] if len(args) > 1 else None):
        return None  # advanced indexing: optimum-quanto dequantizes (its aten.index has no quantized form)
    if func in _SAME_GRID:
        return grid
    if func in _DIV:
        c = args[1] if len(args) > 1 else kwargs.get("other")
        if not _scalar(c) or kwargs.get("rounding_mode") is not None:
            return None
        return grid[0], grid[1] / c
    if func in _INT_ONLY:
        return grid if grid[0] == "qint8" else None
    if func in _MOVES:
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            return None
        return grid[0], grid[1].to(device=out.device, dtype=out.dtype)
    if out is src and not getattr(func, "__name__", "").endswith("_"):
        return grid  # an op that returned its input unchanged (dropout in eval, ...)
    return None


def _retag(out, grid):
    if isinstance(out, (list, tuple)):
        return type(out)(_retag(t, grid) for t in out)
    if not isinstance(out, torch.Tensor) or not out.is_floating_point():
        return out
    if isinstance(out, QuantizedActivation):
        out._quanto_grid = grid  # an input returned (in-place op): its values may have changed
        return out
    return out if grid is None else QuantizedActivation.wrap(out, grid)


class QuantizedActivation(torch.Tensor):
    """The dequantized output of a module with static activations, on its ``(qtype, scale)`` grid."""

    @staticmethod
    def wrap(t: torch.Tensor, grid: Tuple[str, torch.Tensor]) -> "QuantizedActivation":
        out = t.as_subclass(QuantizedActivation)
        out._quanto_grid = grid
        return out

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        with torch._C.DisableTorchFunctionSubclass():
            out = func(*args, **kwargs)
        if not isinstance(out, (torch.Tensor, list, tuple)):
            return out  # shapes, dtypes, strings, numbers
        return _retag(out, _grid_after(func, args, kwargs, out))
