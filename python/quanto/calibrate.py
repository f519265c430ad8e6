"""Calibration of static activation scales (FORMAT.md, "Activations").

Inside ``with Calibration(momentum=0.9):`` every forward of a quantized module with quantized
activations updates its 0-dim ``input_scale`` and ``output_scale`` from the batch:
``new = amax(|x|) / qmax`` (computed by the native op); a scale that is still exactly 1 becomes
``new``, otherwise ``momentum * scale + (1 - momentum) * new``. As in optimum-quanto, a module fed
directly by another quantized module adopts that module's output scale as its input scale.
"""

from typing import List, Optional

__all__ = ["Calibration", "calibration_momentum"]

_active: List["Calibration"] = []


def calibration_momentum() -> Optional[float]:
    """The momentum of the innermost active Calibration, or None outside calibration."""
    return _active[-1].momentum if _active else None


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
        _active.append(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        _active.remove(self)
        return False
