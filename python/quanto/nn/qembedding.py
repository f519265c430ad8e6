"""Quantized embeddings: one scale per row (token), rows gathered before dequantization."""

import torch
import torch.nn.functional as F

from .qmodule import QModuleMixin

__all__ = ["QEmbedding"]

ops = torch.ops.quanto


class QEmbedding(QModuleMixin, torch.nn.Embedding):
    """torch.nn.Embedding with quantized weights (optimum-quanto 0.2.7 has no equivalent).

    8-bit tables gather the codes and scales of the looked-up rows and dequantize only those;
    2/4-bit tables (grouped, packed across rows) are dequantized whole, then looked up.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.weight_qtype is None or not self.frozen:
            w = self._fake_quantized_weight() if self.weight_qtype is not None else self._parameters["weight"]
            y = F.embedding(input, w, self.padding_idx, None, 2.0, self.scale_grad_by_freq, self.sparse)
        elif self.weight_qtype.bits == 8:
            idx = input.reshape(-1)
            rows = ops.symmetric_dequantize(self.weight_data.index_select(0, idx),
                                            self.weight_scale.index_select(0, idx))
            y = rows.reshape(*input.shape, self.embedding_dim)
        else:
            y = F.embedding(input, self.dequantized_weight(), self.padding_idx)
        return self._quanto_output(y)
