"""The two operations transformers' loader runs on quanto's modules (``ConversionOps``).

Imported when a load needs them, not with the quantizer, which is imported while transformers
loads its quantizer registry: registering loads nothing beyond what the registry itself loads.
"""

import re

import torch
from transformers.core_model_loading import ConversionOps

from ..nn import QModuleMixin
from ..nn.qmodule import quantize_weight
from .pages import release_pages, trim_heap
from .quantizer import stash_quantized, weight_state_keys

__all__ = ["QuantizeOnLoad", "LoadQuantized"]


def _module(model, full_layer_name: str) -> QModuleMixin:
    name = full_layer_name.rsplit(".", 1)[0]
    m = model.get_submodule(name)
    if not isinstance(m, QModuleMixin) or m.weight_qtype is None:
        raise ValueError(f"{full_layer_name}: quantized tensors for module {name!r}, whose weight is not quantized "
                         "(does quanto_qmap.json match the weights?)")
    return m


class QuantizeOnLoad(ConversionOps):
    """A float weight, as transformers loaded it (model dtype, target device), quantized with the
    module's qtype, group size and optimizer; the float tensor is dropped when this returns."""

    def __init__(self, hf_quantizer):
        self.hf_quantizer = hf_quantizer

    @torch.no_grad()
    def convert(self, input_dict, model=None, full_layer_name=None, missing_keys=None, **kwargs):
        (values,) = input_dict.values()
        m = _module(model, full_layer_name)
        w = values[0] if isinstance(values, list) else values
        wc = m._canonical_weight(w.detach()).contiguous()
        stash_quantized(m, *m._in_device_layout(quantize_weight(wc, m.weight_qtype, m.weight_group_size, m.optimizer)))
        release_pages(w)
        trim_heap()
        if missing_keys is not None:
            missing_keys.discard(full_layer_name)
        return {}


class LoadQuantized(ConversionOps):
    """A saved module's quantized tensors (``weight._data``, ``weight._scale``[, ``weight._shift``]),
    gathered by transformers under ``full_layer_name`` (the module's ``weight``), checked against the
    module; float scales and shifts take the model's dtype as the other float tensors do."""

    def __init__(self, hf_quantizer):
        self.hf_quantizer = hf_quantizer

    @torch.no_grad()
    def convert(self, input_dict, model=None, full_layer_name=None, missing_keys=None, **kwargs):
        m = _module(model, full_layer_name)
        prefix = full_layer_name.rsplit(".", 1)[0] + "."
        keys = m._weight_keys()  # {part: key}, the weights layer's names for this qtype
        part_of = {re.escape(k): part for part, k in keys.items()}  # transformers hands them by pattern
        t = {}
        for pattern, values in input_dict.items():
            if pattern not in part_of:
                key = next((k for k in weight_state_keys() if re.escape(k) == pattern), pattern)
                raise ValueError(f"{prefix}{key}: not a tensor of a {m.weight_qtype.name} "
                                 f"weight (those are {sorted(prefix + k for k in keys.values())}); does "
                                 "quanto_qmap.json match the weights?")
            t[part_of[pattern]] = values[0] if isinstance(values, list) else values
        absent = sorted(prefix + k for part, k in keys.items() if part not in t)
        if absent:
            raise ValueError(f"the checkpoint lacks {absent} of module {prefix[:-1]!r} ({m.weight_qtype.name})")
        dtype = m._parameters["weight"].dtype
        for part in ("scale", "shift"):
            if part in t and t[part].is_floating_point():
                t[part] = t[part].to(dtype)
        t = m._checked_frozen(t, prefix)
        held, layout = m._in_device_layout(t)
        stash_quantized(m, held, layout)
        if held["data"] is not t["data"]:
            release_pages(t["data"])  # the file's canonical codes, now converted to the kernels' layout
        if missing_keys is not None:
            missing_keys.discard(full_layer_name)
        return {}
