"""Quantized transformers models with optimum-quanto's helper API and file layout.

``QuantizedModelForCausalLM.quantize(model, weights=qint4)`` quantizes and freezes a
transformers model in place and wraps it; the wrapper forwards everything else (``generate``,
``config``, ``to`` …) to the model. ``save_pretrained(folder)`` writes

- ``model.safetensors`` — the quantized state dict with optimum-quanto's keys (docs/format.md) — or,
  past ``max_shard_size``, ``model-0000i-of-0000n.safetensors`` shards and
  ``model.safetensors.index.json`` (``{"metadata": {"total_size": …}, "weight_map": {key: file}}``);
- ``quanto_qmap.json`` — the quantization map;
- ``config.json`` (and ``generation_config.json`` for generative models),

each written atomically, so optimum-quanto 0.2.7's ``QuantizedModelForCausalLM.from_pretrained``
reads the folder, and quanto reads optimum-quanto's. ``from_pretrained(folder, device=…)`` builds
the model from its config with empty (meta) weights, then ``quanto.requantize`` loads the
quantized tensors straight onto ``device``: float weights of quantized layers never exist.
"""

import copy
import os
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
import transformers

from ..nn import QModuleMixin
from ..quantize import requantize
from ._common import (QMAP_NAME, QuantizedModelWrapper, WeightFiles, atomic_write_text, check_load_args,
                      file_float_dtype, parse_size, prepare_folder, read_qmap, read_weights, remove_stale_weights,
                      savable_tensors, write_qmap, write_weights)

__all__ = ["QuantizedTransformersModel", "QuantizedModelForCausalLM", "QMAP_NAME", "parse_size"]

_FILES = WeightFiles("model")
WEIGHTS_NAME = _FILES.single
INDEX_NAME = _FILES.index


def _output_embeddings_name(model) -> Optional[str]:
    get = getattr(model, "get_output_embeddings", None)
    out = get() if get is not None else None
    if out is None:
        return None
    for name, m in model.named_modules():
        if m is out:
            return name
    return None


class QuantizedTransformersModel(QuantizedModelWrapper):
    """A quantized (frozen) transformers ``PreTrainedModel`` with save/load in optimum-quanto's layout.

    Subclasses set ``auto_class`` (e.g. ``AutoModelForCausalLM``); the base class rebuilds the class
    named in the saved config's ``architectures``, so it reloads any transformers model.
    """

    auto_class = None  # a transformers Auto class, or None: the class named by config.architectures
    _model_type = transformers.PreTrainedModel
    _model_kind = "transformers PreTrainedModel"

    # --- quantize -------------------------------------------------------------------------------

    @classmethod
    def quantize(cls, model, weights=None, activations=None, optimizer=None,
                 include: Optional[Union[str, List[str]]] = None,
                 exclude: Optional[Union[str, List[str]]] = None,
                 group_size: Optional[int] = None, inplace: bool = True, dynamic_activations: bool = False):
        """Quantize (``quanto.quantize``) then freeze ``model`` and wrap it.

        ``exclude=None`` leaves the output embeddings (``lm_head``, Whisper's ``proj_out`` …: the
        module ``model.get_output_embeddings()`` returns) in float; pass ``exclude=[]`` to quantize
        them too. Activation scales, if any, are calibrated afterwards with ``quanto.Calibration``, unless ``dynamic_activations=True`` (per-token
        scales at run time, no calibration).
        ``inplace=False`` quantizes a copy and leaves ``model`` untouched.
        """
        cls._check_model_type(model, f"{cls.__name__}.quantize")
        if exclude is None:
            head = _output_embeddings_name(model)
            exclude = [head] if head else None
        return cls._quantize_and_wrap(model, include, exclude, weights=weights, activations=activations,
                                      optimizer=optimizer, group_size=group_size, inplace=inplace,
                                      dynamic_activations=dynamic_activations)

    # --- save -----------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: Union[str, os.PathLike], max_shard_size: Union[int, str] = "5GB"):
        """Write the quantized model to ``save_directory`` (created if needed); see the module doc."""
        model = self.model
        max_bytes = parse_size(max_shard_size)
        folder = prepare_folder(save_directory)
        tensors = savable_tensors(model)

        config = copy.deepcopy(model.config)  # the saved config differs; the model's own is left as is
        config.architectures = [type(model).__name__]
        tied = getattr(config, "tie_word_embeddings", False)
        if tied and any(isinstance(m, QModuleMixin) for m in (model.get_input_embeddings(),
                                                               model.get_output_embeddings()) if m is not None):
            # A quantized end of a tied pair no longer shares its tensor with the other end: both
            # are saved, and the reloaded model must not tie them.
            config.tie_word_embeddings = False

        names = write_weights(folder, tensors, _FILES, max_bytes)
        write_qmap(folder, model)
        atomic_write_text(folder / "config.json", config.to_json_string(use_diff=True))
        generation = getattr(model, "generation_config", None)
        if generation is not None and model.can_generate():
            atomic_write_text(folder / "generation_config.json", generation.to_json_string(use_diff=True))
        remove_stale_weights(folder, _FILES, names)

    # --- load -----------------------------------------------------------------------------------

    @staticmethod
    def _read_state_dict(folder: Path, device: torch.device) -> Dict[str, torch.Tensor]:
        return read_weights(folder, device, _FILES)

    @classmethod
    def _model_class(cls, config):
        if cls.auto_class is not None:
            return cls.auto_class
        archs = getattr(config, "architectures", None) or []
        if len(archs) != 1 or not isinstance(getattr(transformers, archs[0], None), type):
            raise ValueError(f"{cls.__name__}.from_pretrained: config.architectures must name one transformers "
                             f"model class, got {archs!r}; use a class with an auto_class (e.g. "
                             "QuantizedModelForCausalLM) instead")
        return getattr(transformers, archs[0])

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike],
                        device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None):
        """Load a folder written by ``save_pretrained`` (quanto's or optimum-quanto's) onto ``device``
        (default cpu), optionally casting float tensors to ``dtype``."""
        from accelerate import init_empty_weights

        folder, device = check_load_args(pretrained_model_name_or_path, device)
        qmap = read_qmap(folder)
        config = transformers.AutoConfig.from_pretrained(folder)
        model_class = cls._model_class(config)
        state_dict = cls._read_state_dict(folder, device)
        build_dtype = file_float_dtype(state_dict) or getattr(config, "dtype", None) or torch.float32
        if isinstance(build_dtype, str):
            build_dtype = getattr(torch, build_dtype)
        # Parameters on the meta device (no memory, no initialisation); buffers computed at
        # construction (rotary frequencies …) stay real.
        with init_empty_weights(include_buffers=False):
            if hasattr(model_class, "from_config"):
                model = model_class.from_config(config, dtype=build_dtype)
            else:
                model = model_class._from_config(config, dtype=build_dtype)
        model = requantize(model, state_dict, qmap, device=device)
        if getattr(model.config, "tie_word_embeddings", False) and hasattr(model, "tie_weights"):
            model.tie_weights()
        if dtype is not None:
            model.to(dtype)
        model.eval()
        return cls(model)


class QuantizedModelForCausalLM(QuantizedTransformersModel):
    """A quantized causal language model (``AutoModelForCausalLM``); ``lm_head`` stays float by default."""

    auto_class = transformers.AutoModelForCausalLM
