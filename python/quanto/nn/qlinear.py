"""Quantized linear layers: torch's Linear and transformers' GPT-2 style Conv1D."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .qmodule import PER_TOKEN, QModuleMixin, has_int8_activation_kernel

__all__ = ["QLinear", "QConv1DMixin", "qlinear_forward"]

ops = torch.ops.quanto


def qlinear_forward(m: QModuleMixin, x: torch.Tensor, xq: Optional[Tuple[torch.Tensor, torch.Tensor]],
                    bias: Optional[torch.Tensor]) -> torch.Tensor:
    """y = x @ W^T + bias with W the module's (out-first) weight, through the native ops once frozen;
    xq: x's int8 codes and scale, or PER_TOKEN (the op quantizes x per token)."""
    if m.weight_qtype is None or not m.frozen:
        w = m._fake_quantized_weight() if m.weight_qtype is not None else m._parameters["weight"]
        return F.linear(x, m._canonical_weight(w), bias)
    shape = list(m._quanto_qshape)
    if xq is PER_TOKEN:
        return ops.weight_linear_dynamic(x, m._held_weight(), m.weight_qtype.name, shape, m.weight_group_size,
                                         m._quanto_layout, bias, m.activation_qtype.name)
    if xq is not None and has_int8_activation_kernel(m):
        return ops.weight_linear_w8a8(x, xq[0], xq[1], m._held_weight(), m.weight_qtype.name, shape,
                                      m._quanto_layout, bias, x.dtype, m.weight_group_size)
    return ops.weight_linear(x, m._held_weight(), m.weight_qtype.name, shape, m.weight_group_size, m._quanto_layout,
                             bias)


class QLinear(QModuleMixin, torch.nn.Linear):
    """torch.nn.Linear with quantized weights and/or activations (optimum-quanto's QLinear)."""

    _quantize_input = True
    _linear_weight = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x, xq = self._quanto_input(input)
        return self._quanto_output(qlinear_forward(self, x, xq, self.bias))


class QConv1DMixin(QModuleMixin):
    """transformers' Conv1D (GPT-2): y = x @ W + b with W stored [in, out].

    The quantized weight is kept out-first ([out, in], the Linear layout the kernels read), so the
    stored codes have the transposed shape of the float ``weight``. optimum-quanto does not
    quantize Conv1D, so this key layout is quanto's own.
    """

    _quantize_input = True
    _linear_weight = True

    def _canonical_shape(self, shape):
        return (shape[1], shape[0])

    def _canonical_weight(self, w):
        return w.t()

    def _float_weight(self, wc):
        return wc.t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, xq = self._quanto_input(x)
        return self._quanto_output(qlinear_forward(self, x, xq, self.bias))
