"""Quantized linear layers: torch's Linear and transformers' GPT-2 style Conv1D."""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from .qmodule import QModuleMixin, is_w8a8

__all__ = ["QLinear", "QConv1DMixin", "qlinear_forward"]

ops = torch.ops.quanto


def qlinear_forward(m: QModuleMixin, x: torch.Tensor, xq: Optional[Tuple[torch.Tensor, torch.Tensor]],
                    bias: Optional[torch.Tensor]) -> torch.Tensor:
    """y = x @ W^T + bias with W the module's (out-first) weight, through the native ops once frozen."""
    if m.weight_qtype is None or not m.frozen:
        w = m._fake_quantized_weight() if m.weight_qtype is not None else m._parameters["weight"]
        return F.linear(x, m._canonical_weight(w), bias)
    bits = m.weight_qtype.bits
    if bits == 8:
        if getattr(m, "_quanto_w8a8_packed", False):
            if xq is not None:
                return ops.linear_w8a8_packed(xq[0], xq[1], m.weight_data, m.weight_scale, m._quanto_qshape[0], bias,
                                              x.dtype)
            return ops.linear_qbytes(x, m.canonical_weight_tensors()["data"], m.weight_scale, bias)
        if xq is not None and is_w8a8(m):
            return ops.linear_w8a8(xq[0], xq[1], m.weight_data, m.weight_scale, bias, x.dtype)
        return ops.linear_qbytes(x, m.weight_data, m.weight_scale, bias)
    gs = m._effective_group_size()
    if m._quanto_tiled:
        return ops.linear_qbits_tiled(x, m.weight_data, m.weight_scale, m.weight_shift, bits, gs, bias)
    return ops.linear_qbits(x, m.weight_data, m.weight_scale, m.weight_shift, bits, gs, bias)


class QLinear(QModuleMixin, torch.nn.Linear):
    """torch.nn.Linear with quantized weights and/or activations (optimum-quanto's QLinear)."""

    _quantize_input = True
    _linear_weight = True

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x, xq = self._quanto_input(input)
        return self._quanto_output(qlinear_forward(self, x, xq, self.bias))


class QConv1DMixin(QModuleMixin):
    """transformers' Conv1D (GPT-2): y = x @ W + b with W stored [in, out].

    The quantized weight is kept out-first ([out, in], the Linear layout the kernels read), so
    ``weight._data`` has the transposed shape of the float ``weight``. optimum-quanto does not
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
