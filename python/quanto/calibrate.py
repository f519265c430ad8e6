"""Calibration of static activation scales (docs/format.md, "Activations").

Inside ``with Calibration(momentum=0.9):`` every forward of a quantized module with quantized
activations updates its 0-dim ``input_scale`` and ``output_scale`` from the batch:
``new = amax(|x|) / qmax`` (computed by the native op); a scale that is still exactly 1 becomes
``new``, otherwise ``momentum * scale + (1 - momentum) * new``.

A quantized module whose input is the output of another quantized module (the same tensor, or a
view, transpose, slice, copy of it, or a cat/stack of two such outputs on the same grid) adopts
that module's output scale as its input scale: those values are already on that grid. That
producer is then "read by a quantized layer".

Streamlining (``streamline=True``, the default, like optimum-quanto's argument): during the scope
every quantized module still quantizes its output; when the scope closes without error, each
module that produced an output keeps quantizing its output only if a quantized module read it and
no float operation outside a quantized module did (``module._quanto_quantize_output``). An output
read by float operations (an activation function, a residual add, attention matmuls, pooling)
would lose precision there: a LayerNorm feeding both a Linear and a residual add stays float, and
the Linear quantizes its input itself (with the same scale). The C++ ``quanto::Calibration``
applies the first half of the rule only (read by a quantized module). ``streamline=False`` keeps every output quantized and, as
optimum-quanto does, also carries the scale through the ops that keep integer codes on a
(rescaled) grid: relu / neg (qint8 only) and multiplication / division by a scalar. With
streamlining those ops do not carry it: the output before them is not quantized any more, so the
next module calibrates its own input scale.
"""

import numbers
from typing import List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["Calibration", "calibration_momentum", "calibration_note_output", "calibration_note_read"]

_active: List["Calibration"] = []


def calibration_momentum() -> Optional[float]:
    """The momentum of the innermost active Calibration, or None outside calibration."""
    return _active[-1].momentum if _active else None


def calibration_note_output(module) -> None:
    """A quantized module produced a (quantized) output inside the active Calibration scopes."""
    for c in _active:
        c._produced.setdefault(id(module), [module, False])


# How many quantized modules are between reading their input and producing their output: ops on
# a quantized activation there are the module's own read, not a float consumer's.
_reading = [0]


def calibration_begin_read(module) -> None:
    """A quantized module starts processing its input (inside an active Calibration)."""
    if _active and not module.__dict__.get("_quanto_reading", False):
        module.__dict__["_quanto_reading"] = True
        _reading[0] += 1


def calibration_end_read(module) -> None:
    """The module is done with its input (it is about to produce its output)."""
    # Outside calibration no module is reading: return before touching the module's __dict__,
    # which torch.compile (dynamo, torch 2.11) cannot trace with fullgraph=True.
    if not _reading[0]:
        return
    if module.__dict__.pop("_quanto_reading", False):
        _reading[0] = max(0, _reading[0] - 1)


def calibration_note_read(producers) -> None:
    """A quantized module read (and adopted the scale of) the outputs of ``producers``."""
    for c in _active:
        for m in producers:
            entry = c._produced.get(id(m))
            if entry is not None and entry[0] is m:
                entry[1] = True


# On a tensor produced by a quantized module during calibration: (qtype name, 0-dim scale,
# tuple of the quantized modules whose outputs hold exactly these values; empty when an op changed them).
_TAG = "_quanto_activation"
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

    def __init__(self, streamline: bool):
        super().__init__()
        self.streamline = streamline

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self._carry(func, args, out)
        op = func.overloadpacket
        carried = op in _SAME_SCALE or (op in (_aten.cat, _aten.stack) and getattr(out, _TAG, None) is not None)
        if _reading[0] == 0 and not carried:
            _note_float_consumers(args)
        return out

    def _carry(self, func, args, out):
        src = args[0] if args else None
        if isinstance(src, (list, tuple)):  # cat / stack of two tensors quantized alike
            tags = [getattr(t, _TAG, None) for t in src]
            if (func.overloadpacket in (_aten.cat, _aten.stack) and len(tags) == 2 and None not in tags
                    and tags[0][0] == tags[1][0] and torch.equal(tags[0][1], tags[1][1])):
                _tag(out, (tags[0][0], tags[0][1], tags[0][2] + tags[1][2]))
            return
        tag = getattr(src, _TAG, None) if isinstance(src, torch.Tensor) else None
        if tag is None:
            return
        op = func.overloadpacket
        if op in _SAME_SCALE:
            _tag(out, tag)
        elif self.streamline:
            return
        elif op in _INT_ONLY and tag[0].startswith("qint"):
            _tag(out, (tag[0], tag[1], ()))
        elif op in (_aten.mul, _aten.div) and len(args) == 2 and _is_scalar(args[1]):
            factor = args[1] if op is _aten.mul else 1.0 / args[1]
            _tag(out, (tag[0], tag[1] * factor, ()))


def _note_float_consumers(args):
    """A float op outside any quantized module consumed these tensors: their producers' outputs
    must stay float."""
    for a in args:
        for t in a if isinstance(a, (list, tuple)) else (a,):
            tag = getattr(t, _TAG, None) if isinstance(t, torch.Tensor) else None
            if tag is not None:
                for c in _active:
                    for m in tag[2]:
                        c._floated.add(id(m))


def _tag(out, tag):
    for t in out if isinstance(out, (list, tuple)) else (out,):
        if isinstance(t, torch.Tensor) and t.is_floating_point():
            setattr(t, _TAG, tag)


class Calibration:
    """Context manager that calibrates the activation scales of quantized modules."""

    def __init__(self, momentum: float = 0.9, streamline: bool = True, **kwargs):
        if not isinstance(momentum, (int, float)) or not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"Calibration: momentum must be a number in [0, 1], got {momentum!r}")
        if not isinstance(streamline, bool):
            raise TypeError(f"Calibration: streamline must be a bool, got {streamline!r}")
        # optimum-quanto's debug option is accepted for source compatibility and has no effect.
        unknown = set(kwargs) - {"debug"}
        if unknown:
            raise TypeError(f"Calibration: unexpected arguments {sorted(unknown)}")
        self.momentum = float(momentum)
        self.streamline = streamline
        self._produced = {}  # id(module) -> [module, read by a quantized module]
        self._floated = set()  # id(module) whose output a float op consumed

    def __enter__(self):
        self._produced = {}
        self._floated = set()
        if not _active:
            _reading[0] = 0
        self._mode = _CarryScales(self.streamline)
        self._mode.__enter__()
        _active.append(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        _active.remove(self)
        self._mode.__exit__(exc_type, exc, tb)
        if exc_type is None:  # an interrupted calibration leaves the output flags as they were
            for module, read in self._produced.values():
                kept = read and id(module) not in self._floated
                module._quanto_quantize_output = kept or not self.streamline
        if not _active:
            _reading[0] = 0
        self._produced, self._floated = {}, set()
        return False
