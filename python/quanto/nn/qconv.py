"""Quantized convolutions: the weight is dequantized by the native ops, then convolved by torch."""

import torch

from .qmodule import QModuleMixin

__all__ = ["QConv1d", "QConv2d"]


class _QConvMixin(QModuleMixin):
    # optimum-quanto quantizes a convolution's output, never its float input.
    _quantize_input = False

    def _conv_weight(self, x: torch.Tensor) -> torch.Tensor:
        if self.weight_qtype is None:
            return self._parameters["weight"]
        w = self.dequantized_weight() if self.frozen else self._fake_quantized_weight()
        return w if w.dtype == x.dtype else w.to(x.dtype)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x, _ = self._quanto_input(input)
        return self._quanto_output(self._conv_forward(x, self._conv_weight(x), self.bias))


class QConv1d(_QConvMixin, torch.nn.Conv1d):
    """torch.nn.Conv1d with quantized weights and/or output activations."""


class QConv2d(_QConvMixin, torch.nn.Conv2d):
    """torch.nn.Conv2d with quantized weights and/or output activations (optimum-quanto's QConv2d)."""
