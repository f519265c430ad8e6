"""Quantized types, read from the native core (the single source of truth).

Same fields as optimum-quanto's ``qtype`` dataclass, so code written against it reads these too.
"""

from dataclasses import dataclass

import torch

from . import _library

_library.load()


@dataclass(frozen=True)
class qtype:
    """A quantized type: what a weight or activation is stored as."""

    name: str
    is_floating_point: bool
    bits: int
    dtype: torch.dtype  # storage dtype of unpacked values
    qmin: float
    qmax: float

    def __str__(self):
        return f"quanto.{self.name}"


def _build():
    table = {}
    for name in torch.ops.quanto.qtype_names():
        bits, is_float, dtype_name, qmin, qmax = torch.ops.quanto.qtype_info(name)
        table[name] = qtype(name, is_float, bits, getattr(torch, dtype_name), qmin, qmax)
    return table


qtypes = _build()
qint2 = qtypes["qint2"]
qint4 = qtypes["qint4"]
qint8 = qtypes["qint8"]
qfloat8_e4m3fn = qtypes["qfloat8_e4m3fn"]
qfloat8_e4m3fnuz = qtypes["qfloat8_e4m3fnuz"]
qfloat8_e5m2 = qtypes["qfloat8_e5m2"]
qfloat8 = qfloat8_e4m3fn
qtypes["qfloat8"] = qfloat8


def qtype_from_name(name: str) -> qtype:
    """The qtype called ``name``; raises ValueError listing the valid names."""
    try:
        return qtypes[name]
    except KeyError:
        raise ValueError(f"unknown qtype {name!r}; valid qtypes: {', '.join(sorted(qtypes))}") from None
