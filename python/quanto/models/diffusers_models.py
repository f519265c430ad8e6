"""Quantized diffusers models with optimum-quanto's helper API and diffusers' file layout.

``QuantizedUNet2DConditionModel.quantize(unet, weights=qint8)`` quantizes and freezes a diffusers
model (a ``ModelMixin``: UNet, DiT-style transformer, VAE …) in place and wraps it; the wrapper
forwards everything else (``config``, ``dtype``, calls) to the model, so it drops into a pipeline
(``pipe.unet = qunet`` or, to keep the pipeline's own ``to``/offloading, ``qunet.model``).
``save_pretrained(folder)`` writes

- ``diffusion_pytorch_model.safetensors`` — the quantized state dict with optimum-quanto's keys
  (docs/format.md) — or, past ``max_shard_size``, ``diffusion_pytorch_model-0000i-of-0000n.safetensors``
  shards and ``diffusion_pytorch_model.safetensors.index.json``;
- ``quanto_qmap.json`` — the quantization map;
- ``config.json`` — the model's diffusers config (``to_json_string``: ``_class_name`` names its class),

each written atomically, so optimum-quanto 0.2.7's diffusers helpers read the folder (given a
``base_class``) and quanto reads theirs. ``from_pretrained(folder, device=…)`` builds the model
from its config with empty (meta) weights, then ``quanto.requantize`` loads the quantized tensors
straight onto ``device``: float weights of quantized layers never exist.

The base class reloads any diffusers model class (the one ``_class_name`` names); a subclass with
``base_class`` set accepts that class only, as optimum-quanto's do.
"""

import json
import os
from pathlib import Path
from typing import List, Optional, Union

import diffusers
import torch
from diffusers.models.modeling_utils import ModelMixin

from ..quantize import requantize
from ._common import (QMAP_NAME, QuantizedModelWrapper, WeightFiles, atomic_write_text, check_load_args,
                      file_float_dtype, parse_size, prepare_folder, read_qmap, read_weights, remove_stale_weights,
                      savable_tensors, write_qmap, write_weights)

__all__ = ["QuantizedDiffusersModel", "QuantizedUNet2DConditionModel", "QuantizedPixArtTransformer2DModel",
           "QuantizedFluxTransformer2DModel", "QMAP_NAME"]

CONFIG_NAME = "config.json"
_FILES = WeightFiles("diffusion_pytorch_model")
WEIGHTS_NAME = _FILES.single
INDEX_NAME = _FILES.index


def _cast_computed_buffers(model: torch.nn.Module, dtype: Optional[torch.dtype]):
    """Gives the float buffers the model computed at construction the file's float dtype, as a
    model loaded in that dtype has (the loaded tensors bring their own). Modules diffusers keeps in
    float32 keep theirs. Not ``model.to``: diffusers warns on every cast of a model it did not load."""
    if dtype is None:
        return
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, m in model.named_modules():
        if any(k in name for k in keep):  # diffusers matches these names as substrings
            continue
        for key, b in m._buffers.items():
            if b is not None and b.is_floating_point() and not b.is_meta and b.dtype != dtype:
                m._buffers[key] = b.to(dtype)


class QuantizedDiffusersModel(QuantizedModelWrapper):
    """A quantized (frozen) diffusers ``ModelMixin`` with save/load in diffusers' layout (module doc)."""

    base_class: Optional[type] = None  # a diffusers model class, or None: any, as config.json names it

    @classmethod
    def _check_model_type(cls, model, where: str):
        expected = cls.base_class or ModelMixin
        if not isinstance(model, expected):
            what = f"a diffusers {expected.__name__}" if cls.base_class else "a diffusers model (ModelMixin)"
            raise TypeError(f"{where}: expected {what}, got {type(model).__name__}")

    # --- quantize -------------------------------------------------------------------------------

    @classmethod
    def quantize(cls, model, weights=None, activations=None, optimizer=None,
                 include: Optional[Union[str, List[str]]] = None,
                 exclude: Optional[Union[str, List[str]]] = None,
                 group_size: Optional[int] = None, inplace: bool = True, dynamic_activations: bool = False):
        """Quantize (``quanto.quantize``) then freeze ``model`` and wrap it.

        Every quantizable module is quantized unless ``include``/``exclude`` (fnmatch patterns on
        module names) say otherwise, as optimum-quanto does. Activation scales, if any, are
        calibrated afterwards with ``quanto.Calibration``, unless ``dynamic_activations=True`` (per-token
        scales at run time, no calibration). ``inplace=False`` quantizes a copy and
        leaves ``model`` untouched.
        """
        cls._check_model_type(model, f"{cls.__name__}.quantize")
        return cls._quantize_and_wrap(model, include, exclude, weights=weights, activations=activations,
                                      optimizer=optimizer, group_size=group_size, inplace=inplace,
                                      dynamic_activations=dynamic_activations)

    # --- save -----------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: Union[str, os.PathLike], max_shard_size: Union[int, str] = "10GB"):
        """Write the quantized model to ``save_directory`` (created if needed); see the module doc.
        The default shard size is diffusers' own."""
        model = self.model
        max_bytes = parse_size(max_shard_size)
        folder = prepare_folder(save_directory)
        tensors = savable_tensors(model)
        names = write_weights(folder, tensors, _FILES, max_bytes)
        write_qmap(folder, model)
        atomic_write_text(folder / CONFIG_NAME, model.to_json_string())
        remove_stale_weights(folder, _FILES, names)

    # --- load -----------------------------------------------------------------------------------

    @classmethod
    def _model_class(cls, folder: Path) -> type:
        path = folder / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(f"from_pretrained: no {CONFIG_NAME} in {str(folder)!r}: the diffusers config "
                                    "of the model is needed to build it")
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"from_pretrained: {str(path)!r} is not valid JSON: {e}") from None
        name = config.get("_class_name") if isinstance(config, dict) else None
        if not isinstance(name, str):
            raise ValueError(f"from_pretrained: {str(path)!r} has no '_class_name': is it a diffusers model config?")
        if cls.base_class is not None:
            if name != cls.base_class.__name__:
                raise ValueError(f"{cls.__name__}.from_pretrained: {str(path)!r} describes a {name}, not a "
                                 f"{cls.base_class.__name__} (the base_class); load it with "
                                 "QuantizedDiffusersModel.from_pretrained or a class whose base_class is "
                                 f"{name}")
            return cls.base_class
        model_class = getattr(diffusers, name, None)
        if not (isinstance(model_class, type) and issubclass(model_class, ModelMixin)):
            raise ValueError(f"{cls.__name__}.from_pretrained: '_class_name' {name!r} in {str(path)!r} is not a "
                             f"diffusers model class of diffusers {diffusers.__version__}")
        return model_class

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike],
                        device: Optional[Union[str, torch.device]] = None, dtype: Optional[torch.dtype] = None):
        """Load a folder written by ``save_pretrained`` (quanto's or optimum-quanto's) onto ``device``
        (default cpu), optionally casting float tensors to ``dtype``."""
        from accelerate import init_empty_weights

        folder, device = check_load_args(pretrained_model_name_or_path, device)
        qmap = read_qmap(folder)
        model_class = cls._model_class(folder)
        config = model_class.load_config(folder)
        state_dict = read_weights(folder, device, _FILES)
        # Parameters on the meta device (no memory, no initialisation); buffers computed at
        # construction (positional embeddings …) stay real.
        with init_empty_weights(include_buffers=False):
            model = model_class.from_config(config)
        _cast_computed_buffers(model, file_float_dtype(state_dict))
        model = requantize(model, state_dict, qmap, device=device)
        if dtype is not None:
            model.to(dtype)
        model.eval()
        return cls(model)


class QuantizedUNet2DConditionModel(QuantizedDiffusersModel):
    """A quantized ``UNet2DConditionModel`` (the Stable Diffusion 1.x/2.x/XL denoiser)."""

    base_class = diffusers.UNet2DConditionModel


class QuantizedPixArtTransformer2DModel(QuantizedDiffusersModel):
    """A quantized ``PixArtTransformer2DModel`` (the PixArt-α/Σ DiT), as optimum-quanto's."""

    base_class = diffusers.PixArtTransformer2DModel


class QuantizedFluxTransformer2DModel(QuantizedDiffusersModel):
    """A quantized ``FluxTransformer2DModel`` (the FLUX.1 MMDiT)."""

    base_class = diffusers.FluxTransformer2DModel
