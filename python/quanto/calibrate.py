"""Calibration of static activation scales (FORMAT.md, "Activations").

Inside ``with Calibration(momentum=0.9):`` every forward of a quantized module with quantized
activations updates its 0-dim ``input_scale`` and ``output_scale`` from the batch:
``new = amax(|x|) / qmax`` (computed by the native op); a scale that is still exactly 1 becomes
``new``, otherwise ``momentum * scale + (1 - momentum) * new``. As in optimum-quanto, a module fed
directly by another quantized module adopts that module's output scale as its input scale,
also through the shape and sign-preserving ops optimum-quanto keeps quantized (views, relu,
transposes, slices, scalar mul/div, …): the scale is carried on the tensors during calibration.
"""

import numbers
from typing import List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["Calibration", "calibration_momentum"]

_active: List["Calibration"] = []


def calibration_momentum() -> Optional[float]:
    """The momentum of the innermost active Calibration, or None outside calibration."""
    return _active[-1].momentum if _active else None


_TAG = "_quanto_activation"  # (qtype name, 0-dim scale) on a tensor produced by a quantized module
_aten = torch.ops.aten
# Ops after which a per-tensor quantized activation stays quantized with the same scale.
_SAME_SCALE = {_aten.view, _aten._unsafe_view, _aten.reshape, _aten.transpose, _aten.t, _aten.permute,
               _aten.expand, _aten.select, _aten.slice, _aten.unsqueeze, _aten.squeeze, _aten.clone,
               _aten.detach, _aten._to_copy, _aten.split, _aten.alias, _aten.contiguous}
_INT_ONLY = {_aten.relu, _aten.neg}  # exact on integer codes only


def _is_scalar(x):
    return isinstance(x, numbers.Number) or (type(x) is torch.Tensor and x.dim() == 0)


class _CarryScales(TorchDispatchMode):
    """Carries activation tags through the ops that keep an activation quantized."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        src = args[0] if args else None
        if isinstance(src, (list, tuple)):  # cat / stack of two tensors quantized alike
            tags = [getattr(t, _TAG, None) for t in src]
            if (func.overloadpacket in (_aten.cat, _aten.stack) and len(tags) == 2 and None not in tags
                    and tags[0][0] == tags[1][0] and torch.equal(tags[0][1], tags[1][1])):
                _tag(out, tags[0])
            return out
        tag = getattr(src, _TAG, None) if isinstance(src, torch.Tensor) else None
        if tag is None:
            return out
        op = func.overloadpacket
        if op in _SAME_SCALE or (op in _INT_ONLY and tag[0].startswith("qint")):
            _tag(out, tag)
        elif op in (_aten.mul, _aten.div) and len(args) == 2 and _is_scalar(args[1]):
            factor = args[1] if op is _aten.mul else 1.0 / args[1]
            _tag(out, (tag[0], tag[1] * factor))
        return out


def _tag(out, tag):
    for t in out if isinstance(out, (list, tuple)) else (out,):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            setattr(t, _TAG, tag)


class Calibration:
    """Context manager that calibrates the activation scales of quantized modules."""

    def __init__(self, momentum: float = 0.9, **kwargs):
        if not isinstance(momentum, (int, float)) or not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"Calibration: momentum must be a number in [0, 1], got {momentum!r}")
        # optimum-quanto's streamline/debug options are accepted for source compatibility; quanto
        # never disables output quantization behind the user's back, so they have no effect.
        unknown = set(kwargs) - {"streamline", "debug"}
        if unknown:
            raise TypeError(f"Calibration: unexpected arguments {sorted(unknown)}")
        self.momentum = float(momentum)

    def __enter__(self):
        self._mode = _CarryScales()
        self._mode.__enter__()
        _active.append(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        _active.remove(self)
        self._mode.__exit__(exc_type, exc, tb)
        return False
