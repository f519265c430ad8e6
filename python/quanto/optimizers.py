"""Weight optimizers: how the scale (and shift) of a weight are chosen before quantization.

An optimizer is called like optimum-quanto's: ``optimizer(weight, qtype=, axis=0, group_size=)``
and returns a scale (8-bit qtypes) or a ``(scale, shift)`` pair (2/4-bit qtypes). Any callable with
that signature is accepted by :func:`quanto.quantize`, including optimum-quanto's own optimizers.
The defaults below run the native ops, so their results match optimum-quanto's bit for bit.
"""

from typing import Optional, Tuple

import torch

from .qtypes import qtype

ops = torch.ops.quanto


class Optimizer:
    """Base class of quanto's weight optimizers."""

    def __call__(self, base: torch.Tensor, qtype: qtype, axis: int, group_size: Optional[int] = None):
        raise NotImplementedError


class AbsmaxOptimizer(Optimizer):
    """Symmetric scale amax(|w|) / qmax per output channel (the default for 8-bit qtypes)."""

    def __call__(self, base, qtype, axis=0, group_size=None) -> torch.Tensor:
        if group_size is not None:
            raise ValueError(f"AbsmaxOptimizer: group_size must be None for 8-bit qtypes, got {group_size}")
        return ops.absmax_scale(base, qtype.name, axis)


class MaxOptimizer(Optimizer):
    """Affine min/max scale and shift per group (the default for 2/4-bit qtypes)."""

    def __call__(self, base, qtype, axis=0, group_size=None) -> Tuple[torch.Tensor, torch.Tensor]:
        return ops.minmax_scale_shift(base, qtype.name, axis, group_size)


def default_optimizer(wtype: qtype) -> Optimizer:
    return AbsmaxOptimizer() if wtype.bits == 8 else MaxOptimizer()
