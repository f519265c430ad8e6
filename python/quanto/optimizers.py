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


class SymmetricOptimizer(Optimizer):
    """Symmetric 2/4-bit grid: scale = amax(|w|) / (2^(bits-1) - 1/2) per group and the uint8
    zero-point 2^(bits-1), i.e. signed codes -2^(bits-1) .. 2^(bits-1) - 1 times a scale: the grid
    compressed-tensors' symmetric int4 and GGUF's Q4_0 store, so the weights export to them exactly.
    Less accurate than min/max on skewed groups."""

    def __call__(self, base, qtype, axis=0, group_size=None) -> Tuple[torch.Tensor, torch.Tensor]:
        if qtype.bits == 8:
            raise ValueError(f"SymmetricOptimizer: for 2/4-bit qtypes (qint2, qint4), got {qtype.name} "
                             f"(8-bit weights are symmetric already: AbsmaxOptimizer)")
        scale, shift = ops.symmetric_scale_shift(base, qtype.name, axis, group_size)
        # Stored as the integer zero-point it is (docs/format.md's uint8 variant), so it exports exactly.
        return scale, ops.shift_to_zeropoint(scale, shift, qtype.name)


class HqqOptimizer(Optimizer):
    """Half-Quadratic Quantization (Badri & Shaji) of the affine shift, optionally the scale too:
    starts from min/max and minimises the lp (p < 1) reconstruction error per group, in the native
    multi-threaded op. Same defaults as the HQQ paper."""

    def __init__(self, iters: int = 20, p: float = 0.7, beta: float = 10.0, kappa: float = 1.01,
                 optimize_scale: bool = False):
        if iters < 0:
            raise ValueError(f"HqqOptimizer: iters must be >= 0, got {iters}")
        if not 0 < p <= 1:
            raise ValueError(f"HqqOptimizer: p must be in (0, 1], got {p}")
        if beta <= 0 or kappa <= 1:
            raise ValueError(f"HqqOptimizer: beta must be > 0 and kappa > 1, got beta={beta}, kappa={kappa}")
        self.iters, self.p, self.beta, self.kappa = int(iters), float(p), float(beta), float(kappa)
        self.optimize_scale = bool(optimize_scale)

    def __call__(self, base, qtype, axis=0, group_size=None) -> Tuple[torch.Tensor, torch.Tensor]:
        if qtype.bits == 8:
            raise ValueError(f"HqqOptimizer: for 2/4-bit qtypes (qint2, qint4), got {qtype.name}")
        return ops.hqq_scale_shift(base, qtype.name, axis, group_size, self.iters, self.p, self.beta,
                                   self.kappa, self.optimize_scale)


class GptqOptimizer(Optimizer):
    """GPTQ (Frantar et al.) for 2/4-bit weights of linear layers; needs calibration.

    Inside ``quanto.Calibration()`` each quantized linear module accumulates X^T X of its inputs
    (and runs with its float weight, so every Hessian comes from the float model); ``freeze`` then
    quantizes the weight column by column with the native ``gptq_quantize`` op, spreading rounding
    errors through the dampened inverse Hessian. Groups, scales and shifts are docs/format.md's, so the
    files load in optimum-quanto. Before calibration (QAT forward) its grid is min/max.
    ``actorder=True`` quantizes columns by decreasing Hessian diagonal with static group parameters.
    Defaults (act-order, 10% dampening; the C++ API's "gptq") measured better than the paper's
    (1%, no act-order) on all-MiniLM-L6-v2 and SmolLM2-135M int4.
    Calibrate on sequences without padding (or accept that padded positions join the statistics).
    """

    needs_calibration = True

    def __init__(self, percdamp: float = 0.1, blocksize: int = 128, actorder: bool = True):
        if not 0 <= percdamp <= 100:
            raise ValueError(f"GptqOptimizer: percdamp must be in [0, 100], got {percdamp}")
        if blocksize < 1:
            raise ValueError(f"GptqOptimizer: blocksize must be >= 1, got {blocksize}")
        self.percdamp, self.blocksize, self.actorder = float(percdamp), int(blocksize), bool(actorder)

    def __call__(self, base, qtype, axis=0, group_size=None) -> Tuple[torch.Tensor, torch.Tensor]:
        return ops.minmax_scale_shift(base, qtype.name, axis, group_size)

    def quantize(self, base: torch.Tensor, hessian: torch.Tensor, qtype: qtype, group_size: Optional[int]):
        """(codes, scale, shift) of an out-first 2-D weight given its inputs' Hessian 2 X^T X / n."""
        return ops.gptq_quantize(base, hessian, qtype.name, group_size, self.percdamp, self.blocksize, self.actorder)


class ZeroPointOptimizer(Optimizer):
    """A 2/4-bit optimizer's parameters with the shift stored as an integer zero-point.

    Runs ``base`` (default min/max; HQQ works too) and rounds its float shift to the uint8 zero-point
    ``clamp(round(shift / scale), 0, 2^bits - 1)`` (docs/format.md section 4.3's variant, what the C++
    API's ``Config::zero_point`` writes); the weights layer then computes the codes against it. An
    integer zero-point is what other formats store (compressed-tensors' asymmetric ``pack-quantized``,
    GGUF), so such weights export exactly where a float shift cannot.
    """

    def __init__(self, base: Optional[Optimizer] = None):
        base = MaxOptimizer() if base is None else base
        if getattr(base, "needs_calibration", False) or isinstance(base, (AbsmaxOptimizer, ZeroPointOptimizer)):
            raise ValueError(f"ZeroPointOptimizer: base must be a 2/4-bit optimizer without calibration (minmax, hqq), "
                             f"got {type(base).__name__}")
        self.base = base

    def __call__(self, base, qtype, axis=0, group_size=None) -> Tuple[torch.Tensor, torch.Tensor]:
        if qtype.bits == 8:
            raise ValueError(f"ZeroPointOptimizer: for 2/4-bit qtypes (qint2, qint4), got {qtype.name}")
        scale, shift = self.base(base, qtype=qtype, axis=axis, group_size=group_size)
        return scale, ops.shift_to_zeropoint(scale, shift, qtype.name)


# Optimizers selectable by name in quantize(optimizer="..."): the CLI's and the C++ API's names, and
# Python's integer zero-point ("zeropoint": min/max, then the shift rounded) and symmetric variants.
OPTIMIZERS = {"absmax": AbsmaxOptimizer, "minmax": MaxOptimizer, "max": MaxOptimizer, "hqq": HqqOptimizer,
              "gptq": GptqOptimizer, "zeropoint": ZeroPointOptimizer, "symmetric": SymmetricOptimizer}
# AWQ scaling (quanto.awq.AwqOptimizer, Python API only) then the named base optimizer's rounding.
AWQ_NAMES = {"awq": "minmax", "awq+minmax": "minmax", "awq+hqq": "hqq", "awq+gptq": "gptq"}


def default_optimizer(wtype: qtype) -> Optimizer:
    return AbsmaxOptimizer() if wtype.bits == 8 else MaxOptimizer()


def as_optimizer(value, wtype: Optional[qtype], where: str = "quantize"):
    """Resolve ``optimizer=``: None (the qtype's default), a name from OPTIMIZERS, an Optimizer or
    any callable with optimum-quanto's optimizer signature. Checks the name fits the qtype."""
    if value is None:
        return None if wtype is None else default_optimizer(wtype)
    from .awq import AwqOptimizer  # here: awq imports this module

    if isinstance(value, str):
        cls = OPTIMIZERS.get(value.lower())
        if value.lower() in AWQ_NAMES:
            value = AwqOptimizer(base=AWQ_NAMES[value.lower()])
        elif cls is None:
            raise ValueError(f"{where}: unknown optimizer {value!r}; known: "
                             f"{', '.join(sorted(list(OPTIMIZERS) + list(AWQ_NAMES)))}")
        else:
            value = cls()
    elif not callable(value):
        raise TypeError(f"{where}: optimizer must be a name, an Optimizer or a callable, got {type(value).__name__}")
    if wtype is None:
        raise ValueError(f"{where}: an optimizer applies to weights; give weights= too")
    if wtype.bits == 8 and isinstance(value, (MaxOptimizer, HqqOptimizer, GptqOptimizer, ZeroPointOptimizer,
                                              SymmetricOptimizer, AwqOptimizer)):
        raise ValueError(f"{where}: optimizer {type(value).__name__} is for 2/4-bit weights, got {wtype.name}")
    if wtype.bits < 8 and isinstance(value, AbsmaxOptimizer):
        raise ValueError(f"{where}: AbsmaxOptimizer is for 8-bit weights, got {wtype.name}")
    return value
