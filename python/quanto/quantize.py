"""Model-level API with optimum-quanto's names and meaning: quantize, freeze, quantization_map,
requantize."""

import copy
import re
from fnmatch import fnmatch
from typing import Any, Dict, List, Optional, Union

import torch

from .awq import AwqOptimizer, apply_awq, attach_awq
from .nn import QModuleMixin, quantize_module, quantized_class
from .nn.qmodule import as_qtype, resolve_group_size
from .optimizers import as_optimizer

__all__ = ["quantize", "freeze", "quantization_map", "requantize", "apply_quantization_map"]


def _patterns(value, what: str) -> Optional[List[str]]:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(p, str) for p in value):
        return list(value)
    raise TypeError(f"quantize: {what} must be a pattern string or a list of them, got {value!r}")


def _check_activations(activations, where: str):
    if activations is not None and activations.bits != 8:
        raise ValueError(f"{where}: activations are quantized per tensor to 8-bit qtypes only (qint8, qfloat8*), "
                         f"got {activations.name}")


def quantize(
    model: torch.nn.Module,
    weights=None,
    activations=None,
    optimizer=None,
    include: Optional[Union[str, List[str]]] = None,
    exclude: Optional[Union[str, List[str]]] = None,
    group_size: Optional[int] = None,
    inplace: bool = True,
    embeddings: bool = False,
    dynamic_activations: bool = False,
) -> torch.nn.Module:
    """Quantize the submodules of ``model`` that have a quantized counterpart.

    Same arguments as optimum-quanto's ``quantize`` (include/exclude are fnmatch patterns on module
    names), plus:
      - ``group_size``: group size of 2/4-bit weights instead of docs/format.md's default rule (it must
        divide every selected layer's input features; optimum-quanto cannot read such files);
      - ``inplace=False``: quantize a deep copy and leave ``model`` untouched;
      - ``optimizer`` may also be a name: "absmax" (8-bit default), "minmax" (2/4-bit default), "hqq",
        "gptq", "awq" (``quanto.AwqOptimizer``; "awq+hqq", "awq+gptq": AWQ scaling then that rounding),
        "symmetric", "zeropoint". "gptq" and "awq*" need calibration (``with Calibration(): model(batch)``)
        before ``freeze(model)``; AWQ's factors are folded into the preceding layers at freeze;
      - ``embeddings=True``: also quantize nn.Embedding weights (optimum-quanto 0.2.7 cannot read them);
      - ``dynamic_activations=True`` (with ``activations``): the inputs of linear layers (Linear,
        GPT-2 Conv1D) are quantized per token at run time, each token with its own absmax scale, and
        their outputs stay float: no calibration. int8 weights use the integer W8A8 kernels.
        Convolutions and norms keep float activations. The default (False) is optimum-quanto's
        static per-tensor scheme, calibrated with ``Calibration``. optimum-quanto reads such files as
        weight-only (docs/format.md).
    Returns the quantized model (``model`` itself when ``inplace``).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"quantize: model must be a torch.nn.Module, got {type(model).__name__}")
    weights = as_qtype(weights, "quantize: weights")
    activations = as_qtype(activations, "quantize: activations")
    if weights is None and activations is None:
        raise ValueError("quantize: nothing to do: give weights= and/or activations= (a qtype or its name)")
    _check_activations(activations, "quantize")
    if not isinstance(dynamic_activations, bool):
        raise TypeError(f"quantize: dynamic_activations must be a bool, got {dynamic_activations!r}")
    if dynamic_activations and activations is None:
        raise ValueError("quantize: dynamic_activations=True needs activations= (qint8 or a float8 qtype)")
    if group_size is not None and (weights is None or weights.bits == 8):
        raise ValueError(f"quantize: group_size applies to 2/4-bit weights (qint2, qint4) only, "
                         f"got weights={weights.name if weights else None}")
    if embeddings and weights is None:
        raise ValueError("quantize: embeddings=True needs weights=: an embedding has no activation-only quantization")
    optimizer = as_optimizer(optimizer, weights, "quantize")
    if isinstance(optimizer, AwqOptimizer) and activations is not None and not dynamic_activations:
        raise ValueError("quantize: the AWQ optimizer does not combine with static activations: at freeze it folds "
                         "factors into the layers before the quantized ones, which would make calibrated static "
                         "activation scales stale; quantize with activations=None or dynamic_activations=True")
    include, exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
    if not inplace:
        model = copy.deepcopy(model)

    selected = []
    for name, m in model.named_modules():
        if include is not None and not any(fnmatch(name, p) for p in include):
            continue
        if exclude is not None and any(fnmatch(name, p) for p in exclude):
            continue
        if isinstance(m, QModuleMixin):
            raise ValueError(f"quantize: module {name!r} is already quantized")
        found = quantized_class(m)
        if found is None:
            continue
        if weights is not None and weights.bits < 8 and found[1] == "weights" and group_size is not None:
            # Validate every layer before changing any, so a bad group size leaves the model intact.
            w = m._parameters["weight"]
            shape = (w.shape[1], w.shape[0]) if type(m).__name__ == "Conv1D" else tuple(w.shape)
            resolve_group_size(weights, torch.Size(shape).numel() // shape[0], group_size, f"quantize: {name!r}")
        selected.append((name, m))
    for name, m in selected:
        quantize_module(m, weights, activations, optimizer, group_size, name=name, embeddings=embeddings,
                        dynamic_activations=dynamic_activations)
    if isinstance(optimizer, AwqOptimizer) and selected:
        attach_awq(model)  # notes, while calibrating, which module produces each layer's input
    return model


def freeze(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the float weights of every quantized module by their quantized form.

    Modules quantized with the AWQ optimizer first get their factors searched and folded into the
    preceding layers (quanto.awq), which is why AWQ needs this model-level call."""
    apply_awq(model)
    for _, m in model.named_modules():
        if isinstance(m, QModuleMixin):
            m.freeze()
    return model


def quantization_map(model: torch.nn.Module) -> Dict[str, Dict[str, Any]]:
    """``{module name: {"weights": qtype name or "none", "activations": …}}`` for every quantized
    module (optimum-quanto's quanto_qmap.json). A non-default group size adds ``"group_size"``,
    an output that Calibration stopped quantizing adds ``"quantize_output": false``, and dynamic
    activations are ``"activations": "none", "dynamic_activations": <qtype>``; optimum-quanto
    ignores the three (so it runs dynamic layers weight-only)."""
    config = {}
    for name, m in model.named_modules():
        if isinstance(m, QModuleMixin):
            static = m.activation_qtype if not m.dynamic_activations else None
            entry = {
                "weights": "none" if m.weight_qtype is None else m.weight_qtype.name,
                "activations": "none" if static is None else static.name,
            }
            if m.dynamic_activations:
                entry["dynamic_activations"] = m.activation_qtype.name
            if m.weight_qtype is not None and m.weight_qtype.bits < 8:
                shape = m._quanto_qshape
                default = resolve_group_size(m.weight_qtype, torch.Size(shape).numel() // shape[0], None, name)
                if m.weight_group_size != default:
                    entry["group_size"] = m.weight_group_size
            if static is not None and not m.quantizes_output:
                entry["quantize_output"] = False
            config[name] = entry
    return config


def _first_device(model: torch.nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return torch.device("cpu") if t.is_meta else t.device
    return torch.device("cpu")


def _ignorable_unexpected(model: torch.nn.Module, keys: List[str]) -> List[str]:
    """The state-dict keys the model does not load that transformers would ignore too: names of the
    model's non-persistent buffers (old checkpoints saved ``position_ids``, ``rotary_emb.inv_freq``
    …), and keys matching the model's ``_keys_to_ignore_on_load_unexpected`` patterns. They are
    not loaded: the buffers the model computed stay."""
    names = set()
    for mname, m in model.named_modules():
        for b in getattr(m, "_non_persistent_buffers_set", ()):
            names.add(f"{mname}.{b}" if mname else b)
    patterns = [re.compile(p) for p in (getattr(model, "_keys_to_ignore_on_load_unexpected", None) or ())]
    return [k for k in keys if k in names or any(p.search(k) for p in patterns)]


def apply_quantization_map(model: torch.nn.Module, quantization_map: Dict[str, Dict[str, Any]],
                           where: str = "requantize") -> List[QModuleMixin]:
    """Quantize the modules ``quantization_map`` names (qtypes, group size, ``quantize_output``) without
    touching their float weights, which may live on the meta device; returns them, not frozen.

    Every entry is checked before any module changes, so a bad map leaves the model intact. This is
    the first half of :func:`requantize`; transformers' loader (``quanto.hf_quantizer``) fills the
    weights itself."""
    if not isinstance(quantization_map, dict):
        raise TypeError(f"{where}: quantization_map must be a dict, got {type(quantization_map).__name__}")
    modules = dict(model.named_modules())
    plan = []
    for name, qconfig in quantization_map.items():
        if name not in modules:
            raise ValueError(f"{where}: the quantization map names module {name!r}, which the model does not have")
        if not isinstance(qconfig, dict) or "weights" not in qconfig or "activations" not in qconfig:
            raise ValueError(f"{where}: the quantization map entry for {name!r} must be a dict with 'weights' "
                             f"and 'activations', got {qconfig!r}")
        m = modules[name]
        if isinstance(m, QModuleMixin):
            raise ValueError(f"{where}: module {name!r} is already quantized; pass a float model")
        w = as_qtype(qconfig["weights"], f"{where}: {name!r} weights")
        a = as_qtype(qconfig["activations"], f"{where}: {name!r} activations")
        _check_activations(a, f"{where}: {name!r}")
        found = quantized_class(m)
        if found is None:
            raise ValueError(f"{where}: module {name!r} ({type(m).__name__}) has no quantized counterpart")
        quantize_output = qconfig.get("quantize_output", True)  # absent: every output is quantized
        if not isinstance(quantize_output, bool):
            raise ValueError(f"{where}: 'quantize_output' of {name!r} must be true or false, "
                             f"got {quantize_output!r}")
        dynamic = qconfig.get("dynamic_activations")  # quanto's entry; absent or null: static or none
        if dynamic is not None:
            d = as_qtype(dynamic, f"{where}: {name!r} dynamic_activations") if isinstance(dynamic, str) else None
            if d is None or d.bits != 8:
                raise ValueError(f"{where}: 'dynamic_activations' of {name!r} must be qint8 or a float8 qtype "
                                 f"name, got {dynamic!r}")
            if a is not None:
                raise ValueError(f"{where}: {name!r} has both static activations ({a.name}) and "
                                 f"'dynamic_activations' ({d.name}); a layer's activations are one or the other")
            if not found[0]._quantize_input:
                raise ValueError(f"{where}: 'dynamic_activations' of {name!r}: dynamic (per-token) activations "
                                 f"apply to linear layers, not {type(m).__name__}")
            a = d
        plan.append((name, m, w, a, qconfig.get("group_size"), quantize_output, dynamic is not None))
    prepared = []
    for name, m, w, a, gs, quantize_output, dynamic in plan:
        q = quantize_module(m, w, a, None, gs, name=name, embeddings=True, dynamic_activations=dynamic)
        if q is None:
            raise ValueError(f"{where}: the quantization map entry {quantization_map[name]!r} does not quantize "
                             f"module {name!r} ({type(m).__name__})")
        q._quanto_quantize_output = quantize_output
        prepared.append(q)
    return prepared


def requantize(
    model: torch.nn.Module,
    state_dict: Dict[str, Any],
    quantization_map: Dict[str, Dict[str, Any]],
    device: Optional[Union[str, torch.device]] = None,
    strict: bool = True,
) -> torch.nn.Module:
    """Load a quantized state dict (optimum-quanto's or quanto's) into a float ``model``.

    The modules named in ``quantization_map`` are quantized and given empty frozen weights, so the
    float weights are never quantized (nor need to exist: the model may live on the meta device),
    then ``state_dict`` is loaded and the model moved to ``device`` (default: the device of the
    model's first tensor, cpu for meta). With ``strict`` (default), keys the model does not expect
    and tensors left without data raise ValueError naming them; like transformers, keys naming a
    non-persistent buffer of the model (a legacy ``position_ids``) or matching its
    ``_keys_to_ignore_on_load_unexpected`` patterns are ignored.
    """
    device = _first_device(model) if device is None else torch.device(device)
    for q in apply_quantization_map(model, quantization_map):
        if q.weight_qtype is not None:
            q._empty_frozen()

    has_meta = any(t.is_meta for t in list(model.parameters()) + list(model.buffers()))
    missing, unexpected = model.load_state_dict(state_dict, strict=False, assign=has_meta)
    if has_meta and hasattr(model, "tie_weights"):
        model.tie_weights()  # transformers models re-tie shared weights the file stores once
    if strict:
        ignorable = set(_ignorable_unexpected(model, unexpected))
        unexpected = [k for k in unexpected if k not in ignorable]
        if unexpected:
            raise ValueError(f"requantize: the state dict has keys the quantized model does not expect "
                             f"(does the quantization map match?): {unexpected[:10]}")
        loaded = {id(v) for k, v in model.state_dict(keep_vars=True).items() if k not in missing}
        current = model.state_dict(keep_vars=True)
        really_missing = [k for k in missing if k not in current or current[k].is_meta or id(current[k]) not in loaded]
        if really_missing:
            raise ValueError(f"requantize: the state dict lacks tensors the model needs: {really_missing[:10]}")
    left = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left and device.type != "meta":
        raise ValueError(f"requantize: these tensors are on the meta device and the state dict does not provide "
                         f"them: {left[:10]}")
    return model.to(device)
