"""Normalization layers with quantized output activations (their weights are never quantized)."""

import torch
import torch.nn.functional as F

from .qmodule import QModuleMixin

__all__ = ["QLayerNorm", "QRMSNormMixin", "is_rmsnorm"]


class QLayerNorm(QModuleMixin, torch.nn.LayerNorm):
    """torch.nn.LayerNorm whose output is quantized (optimum-quanto's QLayerNorm)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x, _ = self._quanto_input(input)
        y = F.layer_norm(x, self.normalized_shape, self._parameters.get("weight"), self.bias, self.eps)
        return self._quanto_output(y)


def is_rmsnorm(module: torch.nn.Module) -> bool:
    """RMSNorm-style layers of any library: class name ending in RMSNorm, a 1-d weight, an epsilon."""
    w = module._parameters.get("weight")
    return (type(module).__name__.endswith("RMSNorm") and w is not None and w.dim() == 1
            and (hasattr(module, "variance_epsilon") or hasattr(module, "eps")))


class QRMSNormMixin(QModuleMixin):
    """Mixed into the model's own RMSNorm class, so its exact math (dtype handling, offsets) is kept."""

    def forward(self, hidden_states, *args, **kwargs):
        x, _ = self._quanto_input(hidden_states)
        return self._quanto_output(super().forward(x, *args, **kwargs))
