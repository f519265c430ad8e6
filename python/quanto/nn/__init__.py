"""Quantized modules and the table that maps float modules to them."""

from typing import Optional

import torch

from .qconv import QConv1d, QConv2d
from .qembedding import QEmbedding
from .qlinear import QConv1DMixin, QLinear
from .qmodule import QModuleMixin, as_qtype, resolve_group_size
from .qnorm import QLayerNorm, QRMSNormMixin, is_rmsnorm

__all__ = ["QModuleMixin", "QLinear", "QConv1d", "QConv2d", "QLayerNorm", "QEmbedding", "QConv1DMixin",
           "QRMSNormMixin", "quantized_class", "quantize_module"]

# Exact torch classes -> quantized classes (subclasses get a quantized subclass of their own).
_TORCH_TABLE = [
    (torch.nn.Linear, QLinear),
    (torch.nn.Conv1d, QConv1d),
    (torch.nn.Conv2d, QConv2d),
    (torch.nn.LayerNorm, QLayerNorm),
    (torch.nn.Embedding, QEmbedding),
]
_subclasses = {}


def _subclass(mixin, cls):
    key = (mixin, cls)
    if key not in _subclasses:
        _subclasses[key] = type("Q" + cls.__name__, (mixin, cls), {"__module__": __name__})
    return _subclasses[key]


def _is_transformers_conv1d(module) -> bool:
    w = module._parameters.get("weight")
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and w is not None and w.dim() == 2


def quantized_class(module: torch.nn.Module):
    """The quantized class for this module, and its kind ("weights", "norm" or "embedding"), or None."""
    if isinstance(module, QModuleMixin):
        return None
    cls = type(module)
    for base, qcls in _TORCH_TABLE:
        if isinstance(module, base):
            kind = "norm" if base is torch.nn.LayerNorm else "embedding" if base is torch.nn.Embedding else "weights"
            return (qcls if cls is base else _subclass(qcls, cls)), kind
    if _is_transformers_conv1d(module):
        return _subclass(QConv1DMixin, cls), "weights"
    if is_rmsnorm(module):
        return _subclass(QRMSNormMixin, cls), "norm"
    return None


def quantize_module(module: torch.nn.Module, weights=None, activations=None, optimizer=None,
                    group_size: Optional[int] = None, name: str = "", embeddings: bool = False,
                    dynamic_activations: bool = False):
    """Quantizes one module in place (its class becomes a quantized subclass) and returns it, or
    returns None when the module is not quantized with these settings (as optimum-quanto's does).

    ``dynamic_activations``: activations are quantized per token at run time; only layers that
    quantize their input (Linear, GPT-2 Conv1D) take them, the others keep float activations
    (convolutions: weights only; norms: not quantized)."""
    weights = as_qtype(weights, "weights")
    activations = as_qtype(activations, "activations")
    found = quantized_class(module)
    if found is None:
        return None
    qcls, kind = found
    if dynamic_activations and not qcls._quantize_input:
        activations, dynamic_activations = None, False
    if kind == "norm":
        if activations is None:
            return None
        weights, optimizer, group_size = None, None, None  # norm weights are never quantized
    elif kind == "embedding":
        if not embeddings or weights is None:
            return None
        if module.max_norm is not None:
            raise ValueError(f"quantize: embedding {name!r} uses max_norm, which renormalises its weight in "
                             "place and cannot be applied to a quantized table")
    elif weights is None and activations is None:
        return None
    old = module.__class__
    module.__class__ = qcls
    try:
        module._quanto_setup(weights, activations, optimizer, group_size, name, dynamic_activations)
    except Exception:
        module.__class__ = old
        for k in ("input_scale", "output_scale"):
            module._buffers.pop(k, None)
        raise
    return module
