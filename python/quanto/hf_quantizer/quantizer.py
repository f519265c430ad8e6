"""The transformers quantizer (``HfQuantizer``) behind ``quanto.QuantoConfig``.

transformers builds the model on the meta device, calls this quantizer, then streams the
checkpoint tensor by tensor. Two ways in:

- **Quantize while loading** (a float checkpoint and ``quantization_config=QuantoConfig(...)``):
  before loading, ``quanto.quantize`` turns the selected meta modules into quanto's quantized
  modules (no data yet). transformers hands each of their float weights, cast to the model's dtype
  and already on its ``device_map`` device, to :class:`~.ops.QuantizeOnLoad`, which quantizes it
  with quanto's weights layer and drops it (handing the pages it was read from back to the OS,
  ``pages.py``). The float model never exists whole: the peak is the quantized model plus one
  float weight.
- **A saved quanto model** (``config.json`` holds this method's ``quantization_config``): the
  modules come from ``quanto_qmap.json`` beside the checkpoint (as ``quanto.requantize`` does), and
  :class:`~.ops.LoadQuantized` takes each module's ``weight._data`` / ``_scale`` / ``_shift``
  tensors, checked against the module; float weights are never materialised.

transformers replaces every non-persistent buffer once loading ends (it re-creates rotary
frequencies and the like), and a frozen quanto module keeps its weight in such buffers; so both
ops leave the quantized tensors beside the module and :meth:`_process_model_after_weight_loading`
installs them, after that step.

Saving: ``model.state_dict()`` of a frozen quanto model already holds docs/format.md's keys, so
transformers' ``save_pretrained`` writes quanto's tensors (sharded past ``max_shard_size``) and
``config.json``; the loaded model's ``save_pretrained`` then adds ``quanto_qmap.json``. The folder
also loads with ``quanto.models`` and, within its format (section 5 of docs/format.md), with
optimum-quanto 0.2.7.
"""

import re
import types
from pathlib import Path
from typing import Dict, List

import torch
from transformers.quantizers.base import HfQuantizer
from transformers.quantizers.quantizers_utils import get_module_from_name, should_convert_module

from ..calibrate import Calibration
from ..nn import QModuleMixin
from ..qtypes import qtypes
from ..quantize import apply_quantization_map, quantization_map, quantize
from . import registration as _registration
from .config import QuantoConfig

__all__ = ["QuantoHfQuantizer"]

_PENDING = "_quanto_pending"  # module.__dict__ key of the quantized tensors waiting to be installed


def weight_state_keys() -> List[str]:
    """The module-relative state-dict keys of every quantized weight format (``weight._data`` ...), as
    the weights layer names them, longest first."""
    return sorted({k for name in qtypes for k in torch.ops.quanto.weight_state_keys(name)}, key=len, reverse=True)


def weight_state_patterns() -> List[str]:
    """The keys as the regexes transformers matches checkpoint names with (longest first, so
    ``weight._data._data`` wins over ``weight._data``)."""
    return [re.escape(k) for k in weight_state_keys()]


class QuantoHfQuantizer(HfQuantizer):
    """Quantizes with quanto while transformers loads a model, and loads quanto's saved models."""

    requires_calibration = False
    quantization_config: QuantoConfig

    # --- what transformers asks first -----------------------------------------------------------

    @property
    def quantized_element_size(self):
        w = self.quantization_config.weights
        return None if w is None else qtypes[w].bits / 8

    def validate_environment(self, device_map=None, **kwargs):
        _check_device_map(device_map)
        cfg = self.quantization_config
        if (not self.pre_quantized and cfg.activations is not None and not cfg.dynamic_activations
                and cfg.calibration is None):
            raise ValueError(
                "QuantoConfig: activations need static scales calibrated on data: give calibration=fn, where "
                "fn(model) runs sample batches through the loaded model (quanto calls it inside "
                "quanto.Calibration()), or load without activations and quantize with quanto.quantize + "
                "quanto.Calibration")

    def param_needs_quantization(self, model, param_name: str, **kwargs) -> bool:
        if self.pre_quantized:
            return False
        module, tensor_name = get_module_from_name(model, param_name)
        return (isinstance(module, QModuleMixin) and tensor_name == "weight" and module.weight_qtype is not None
                and not module.frozen)

    # --- before loading: quantized modules on the meta model ------------------------------------

    def _process_model_before_weight_loading(self, model, checkpoint_files=None, device_map=None, **kwargs):
        if self.pre_quantized:
            apply_quantization_map(model, _read_qmap_beside(checkpoint_files), where="from_pretrained")
            return
        cfg = self.quantization_config
        skip = self.get_modules_to_not_convert(model, cfg.modules_to_not_convert, model._keep_in_fp32_modules)
        # A tied weight is one tensor under two names; quantizing one end would untie them silently.
        skip += [k.rsplit(".", 1)[0] for pair in model.all_tied_weights_keys.items() for k in pair]
        exclude = [name for name, _ in model.named_modules() if name and not should_convert_module(name, skip)]
        quantize(model, weights=cfg.weights, activations=cfg.activations, optimizer=cfg.optimizer,
                 exclude=exclude, group_size=cfg.group_size, embeddings=cfg.embeddings,
                 dynamic_activations=cfg.dynamic_activations)
        if not quantization_map(model):
            raise ValueError(f"QuantoConfig: no module of {type(model).__name__} was quantized "
                             f"(modules_to_not_convert={cfg.modules_to_not_convert!r} left nothing quantizable)")
        # Activation scales are not in a float checkpoint: they are set after loading (not "missing").
        model._keys_to_ignore_on_load_missing = set(model._keys_to_ignore_on_load_missing or ()) | {
            r"\.input_scale$", r"\.output_scale$"}

    def get_quantize_ops(self):
        from .ops import QuantizeOnLoad

        return QuantizeOnLoad(self)

    # A saved model: transformers gathers each module's quantized tensors (under the model's own
    # `weight` parameter, still on meta) and hands them to LoadQuantized.
    @property
    def serialized_names(self) -> Dict[str, List[str]]:
        return {"weight": weight_state_patterns()} if self.pre_quantized else {}

    def get_load_operations(self):
        from .ops import LoadQuantized

        return {"deserialize": LoadQuantized}

    # --- after loading ----------------------------------------------------------------------------

    def _process_model_after_weight_loading(self, model, **kwargs):
        unfilled = []
        for name, m in model.named_modules():
            if not isinstance(m, QModuleMixin):
                continue
            pending = m.__dict__.pop(_PENDING, None)
            if pending is not None:
                m._set_frozen(*pending)
            if not self.pre_quantized:
                # Scales the float checkpoint lacked: transformers left them uninitialised.
                with torch.no_grad():
                    for key in ("input_scale", "output_scale"):
                        m._buffers[key] = torch.ones((), dtype=m._buffers[key].dtype, device=_device_of(m))
            if m.weight_qtype is not None and not m.frozen:
                if self.pre_quantized or m._parameters["weight"].is_meta:
                    unfilled.append(name)
                else:
                    m.freeze()  # a weight the checkpoint lacked, initialised (and reported) by transformers
        if unfilled:
            raise ValueError(f"from_pretrained: the checkpoint holds no quantized weight for these quantized modules "
                             f"(does quanto_qmap.json match the weights?): {unfilled[:10]}")
        cfg = self.quantization_config
        if not self.pre_quantized and cfg.activations is not None and not cfg.dynamic_activations:
            with Calibration():
                cfg.calibration(model)
        model.save_pretrained = types.MethodType(_save_pretrained_with_qmap, model)
        return model

    # --- capabilities -----------------------------------------------------------------------------

    def is_serializable(self):
        return True

    @property
    def is_trainable(self) -> bool:
        return True  # adapters (LoRA) train on frozen quantized layers: gradients flow to their inputs

    @property
    def is_compileable(self) -> bool:
        return True


def _device_of(m: QModuleMixin) -> torch.device:
    for t in list(m._buffers.values()) + list(m._parameters.values()):
        if t is not None and not t.is_meta:
            return t.device
    return torch.device("cpu")


def _check_device_map(device_map):
    """quanto's layers keep weights in their own buffers, which accelerate's CPU/disk offload cannot
    stream (it moves state-dict tensors by name): refuse maps that offload."""
    if not isinstance(device_map, dict):
        return
    devices = {str(d) for d in device_map.values()}
    if "disk" in devices or ("cpu" in devices and len(devices) > 1):
        raise ValueError(
            f"QuantoConfig: this device_map offloads to {'disk' if 'disk' in devices else 'cpu'} "
            f"({sorted(devices)}), which quanto's quantized layers do not support; use one kind of device: "
            "all 'cpu', or accelerators only (give max_memory or a dict so 'auto' fits them)")


def _read_qmap_beside(checkpoint_files):
    from ..models._common import read_qmap

    if not checkpoint_files:
        raise ValueError("from_pretrained: a quanto model loads from its folder (quanto_qmap.json is read beside "
                         "the weights); a state_dict argument is not supported")
    return read_qmap(Path(checkpoint_files[0]).parent)


def _save_pretrained_with_qmap(self, save_directory, *args, **kwargs):
    """transformers' ``save_pretrained``, then ``quanto_qmap.json`` (written atomically) beside it.

    Tensors keep the model's own names (``save_original_format=False``): quanto_qmap.json names
    modules, and every reader (quanto.models, optimum-quanto, the C++ loader) finds a module's
    tensors under its name. transformers' default would rename some architectures' tensors back to
    their original checkpoint names (ViT's ``encoder.layer.0.attention.attention.query``...)."""
    from ..models._common import write_qmap

    if kwargs.setdefault("save_original_format", False):
        raise ValueError("save_pretrained: a quanto model saves its tensors under its modules' names (those of "
                         "quanto_qmap.json); save_original_format=True would rename them")
    result = type(self).save_pretrained(self, save_directory, *args, **kwargs)
    is_main = kwargs.get("is_main_process", args[0] if args else True)
    if is_main and not getattr(self, "_hf_peft_config_loaded", False):
        write_qmap(Path(save_directory), self)
    return result


def stash_quantized(module: QModuleMixin, tensors: Dict[str, torch.Tensor], layout: str):
    """Keeps a module's frozen tensors (data in ``layout``, already the one its device's kernels read)
    for :meth:`QuantoHfQuantizer._process_model_after_weight_loading`."""
    module.__dict__[_PENDING] = (tensors, layout)
    module._is_hf_initialized = True


__all__ += ["stash_quantized", "weight_state_keys", "weight_state_patterns"]

# Importing this module loads transformers' registry (transformers.quantizers.base imports it),
# whose import hook found this module half-defined and left the registration to this line.
_registration.register()
