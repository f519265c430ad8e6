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
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file

from ..nn import QModuleMixin
from ..quantize import freeze, quantization_map, quantize, requantize

__all__ = ["QuantizedTransformersModel", "QuantizedModelForCausalLM", "QMAP_NAME", "parse_size"]

QMAP_NAME = "quanto_qmap.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_SHARD_RE = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_size(size: Union[int, str]) -> int:
    """Bytes from an int or a string such as ``"5GB"`` (powers of 10) or ``"200MiB"`` (powers of 2)."""
    if isinstance(size, int) and not isinstance(size, bool):
        value = size
    elif isinstance(size, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", size.upper())
        if m is None or m.group(2) not in _UNITS:
            raise ValueError(f"max_shard_size: cannot read {size!r}: expected bytes as an int or a string like "
                             "'5GB', '500MB' or '2GiB'")
        value = int(float(m.group(1)) * _UNITS[m.group(2)])
    else:
        raise TypeError(f"max_shard_size: expected an int or a string like '5GB', got {type(size).__name__}")
    if value <= 0:
        raise ValueError(f"max_shard_size must be positive, got {size!r}")
    return value


def _fsync_dir(folder: Path):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: Path, write):
    """Calls ``write(tmp_path)`` on a temporary file beside ``path``, fsyncs it and renames it over
    ``path``: readers see the old file or the complete new one, never part of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _atomic_write_text(path: Path, text: str):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    _atomic_write(path, write)


def _output_embeddings_name(model) -> Optional[str]:
    get = getattr(model, "get_output_embeddings", None)
    out = get() if get is not None else None
    if out is None:
        return None
    for name, m in model.named_modules():
        if m is out:
            return name
    return None


def _unique_tensors(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The state dict without the later names of tensors that share storage (tied weights are
    saved once, under their first name, as transformers and optimum-quanto do)."""
    seen, out = set(), {}
    for k, t in state_dict.items():
        key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()),
               t.dtype) if t.numel() else None
        if key is not None and key in seen:
            continue
        if key is not None:
            seen.add(key)
        out[k] = t
    return out


def _plan_shards(tensors: Dict[str, torch.Tensor], max_bytes: int) -> List[List[str]]:
    shards, current, size = [], [], 0
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        if current and size + n > max_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(k)
        size += n
    if current or not shards:
        shards.append(current)
    return shards


class QuantizedTransformersModel:
    """A quantized (frozen) transformers ``PreTrainedModel`` with save/load in optimum-quanto's layout.

    Subclasses set ``auto_class`` (e.g. ``AutoModelForCausalLM``); the base class rebuilds the class
    named in the saved config's ``architectures``, so it reloads any transformers model.
    """

    auto_class = None  # a transformers Auto class, or None: the class named by config.architectures

    def __init__(self, model):
        if not isinstance(model, transformers.PreTrainedModel):
            raise TypeError(f"{type(self).__name__}: expected a transformers PreTrainedModel, got {type(model).__name__}")
        if not quantization_map(model):
            raise ValueError(f"{type(self).__name__}: the model has no quantized module; use "
                             f"{type(self).__name__}.quantize(model, weights=...) to quantize it")
        self.__dict__["_wrapped"] = model

    # --- the wrapped model ----------------------------------------------------------------------

    @property
    def model(self):
        """The wrapped (quantized) transformers model."""
        return self.__dict__["_wrapped"]

    def __getattr__(self, name: str) -> Any:
        wrapped = self.__dict__.get("_wrapped")
        if wrapped is None:
            raise AttributeError(name)
        return getattr(wrapped, name)

    def __call__(self, *args, **kwargs):
        return self.model(*args, **kwargs)

    def forward(self, *args, **kwargs):
        return self.model.forward(*args, **kwargs)

    def to(self, *args, **kwargs):
        self.model.to(*args, **kwargs)
        return self

    def eval(self):
        self.model.eval()
        return self

    def __repr__(self):
        return f"{type(self).__name__}({self.model!r})"

    def quantization_map(self) -> Dict[str, Dict[str, Any]]:
        return quantization_map(self.model)

    # --- quantize -------------------------------------------------------------------------------

    @classmethod
    def quantize(cls, model, weights=None, activations=None, optimizer=None,
                 include: Optional[Union[str, List[str]]] = None,
                 exclude: Optional[Union[str, List[str]]] = None,
                 group_size: Optional[int] = None, inplace: bool = True):
        """Quantize (``quanto.quantize``) then freeze ``model`` and wrap it.

        ``exclude=None`` leaves the output embeddings (``lm_head``, Whisper's ``proj_out`` …: the
        module ``model.get_output_embeddings()`` returns) in float; pass ``exclude=[]`` to quantize
        them too. Activation scales, if any, are calibrated afterwards with ``quanto.Calibration``.
        ``inplace=False`` quantizes a copy and leaves ``model`` untouched.
        """
        if not isinstance(model, transformers.PreTrainedModel):
            raise TypeError(f"{cls.__name__}.quantize: expected a transformers PreTrainedModel, got "
                            f"{type(model).__name__}")
        if exclude is None:
            head = _output_embeddings_name(model)
            exclude = [head] if head else None
        model = quantize(model, weights=weights, activations=activations, optimizer=optimizer, include=include,
                         exclude=exclude, group_size=group_size, inplace=inplace)
        if not quantization_map(model):
            raise ValueError(f"{cls.__name__}.quantize: no module of {type(model).__name__} matched "
                             f"include={include!r} / exclude={exclude!r}")
        freeze(model)
        return cls(model)

    # --- save -----------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: Union[str, os.PathLike], max_shard_size: Union[int, str] = "5GB"):
        """Write the quantized model to ``save_directory`` (created if needed); see the module doc."""
        model = self.model
        max_bytes = parse_size(max_shard_size)
        folder = Path(save_directory)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"save_pretrained: {str(folder)!r} exists and is not a folder")
        folder.mkdir(parents=True, exist_ok=True)

        state = model.state_dict()
        meta = [k for k, t in state.items() if t.is_meta]
        if meta:
            raise ValueError(f"save_pretrained: these tensors are on the meta device and hold no data: {meta[:10]}")
        tensors = {k: t.detach().to("cpu").contiguous() for k, t in _unique_tensors(state).items()}

        config = copy.deepcopy(model.config)  # the saved config differs; the model's own is left as is
        config.architectures = [type(model).__name__]
        tied = getattr(config, "tie_word_embeddings", False)
        if tied and any(isinstance(m, QModuleMixin) for m in (model.get_input_embeddings(),
                                                               model.get_output_embeddings()) if m is not None):
            # A quantized end of a tied pair no longer shares its tensor with the other end: both
            # are saved, and the reloaded model must not tie them.
            config.tie_word_embeddings = False

        shards = _plan_shards(tensors, max_bytes)
        names = ([WEIGHTS_NAME] if len(shards) == 1 else
                 [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
        for name, keys in zip(names, shards):
            part = {k: tensors[k] for k in keys}
            _atomic_write(folder / name, lambda tmp, part=part: save_file(part, tmp, metadata={"format": "pt"}))
        _atomic_write_text(folder / QMAP_NAME, json.dumps(quantization_map(model), indent=4) + "\n")
        _atomic_write_text(folder / "config.json", config.to_json_string(use_diff=True))
        generation = getattr(model, "generation_config", None)
        if generation is not None and model.can_generate():
            _atomic_write_text(folder / "generation_config.json", generation.to_json_string(use_diff=True))
        if len(shards) > 1:
            index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
                     "weight_map": {k: name for name, keys in zip(names, shards) for k in sorted(keys)}}
            _atomic_write_text(folder / INDEX_NAME, json.dumps(index, indent=2, sort_keys=True) + "\n")
        # Files of an earlier save that this one replaces (a single file vs shards).
        stale = [p for p in folder.iterdir() if p.name not in names and
                 (p.name == WEIGHTS_NAME or _SHARD_RE.match(p.name))]
        if len(shards) == 1:
            stale += [p for p in [folder / INDEX_NAME] if p.exists()]
        for p in stale:
            p.unlink()

    # --- load -----------------------------------------------------------------------------------

    @staticmethod
    def _read_state_dict(folder: Path, device: torch.device) -> Dict[str, torch.Tensor]:
        index_path, single = folder / INDEX_NAME, folder / WEIGHTS_NAME
        if index_path.is_file():
            try:
                weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"from_pretrained: {str(index_path)!r} is not a safetensors index "
                                 f"(a JSON object with a 'weight_map'): {e}") from None
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(f"from_pretrained: the 'weight_map' of {str(index_path)!r} must map names to files")
            files = sorted(set(weight_map.values()))
            for name in files:
                if Path(name).name != name:
                    raise ValueError(f"from_pretrained: {str(index_path)!r} names shard {name!r} outside the folder")
                if not (folder / name).is_file():
                    raise FileNotFoundError(f"from_pretrained: shard {name!r} listed in {str(index_path)!r} is missing")
        elif single.is_file():
            weight_map, files = None, [WEIGHTS_NAME]
        else:
            raise FileNotFoundError(f"from_pretrained: no {WEIGHTS_NAME} nor {INDEX_NAME} in {str(folder)!r}")
        state_dict = {}
        for name in files:
            with safe_open(folder / name, framework="pt", device=str(device)) as f:
                for k in f.keys():
                    if weight_map is not None and weight_map.get(k) != name:
                        continue
                    state_dict[k] = f.get_tensor(k)
        if weight_map is not None:
            absent = sorted(set(weight_map) - set(state_dict))
            if absent:
                raise ValueError(f"from_pretrained: tensors listed in {INDEX_NAME} are not in their shard: {absent[:10]}")
        return state_dict

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

        folder = Path(pretrained_model_name_or_path)
        if not folder.is_dir():
            raise FileNotFoundError(f"from_pretrained: {str(folder)!r} is not a folder (quanto loads local "
                                    "folders only; no model hub)")
        device = torch.device("cpu" if device is None else device)
        if device.type == "meta":
            raise ValueError("from_pretrained: device='meta' holds no data; give a real device")
        qmap_path = folder / QMAP_NAME
        if not qmap_path.is_file():
            raise FileNotFoundError(f"from_pretrained: no {QMAP_NAME} in {str(folder)!r}: is this a quantized model?")
        try:
            qmap = json.loads(qmap_path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"from_pretrained: {str(qmap_path)!r} is not valid JSON: {e}") from None
        if not isinstance(qmap, dict):
            raise ValueError(f"from_pretrained: {str(qmap_path)!r} must hold a JSON object")
        config = transformers.AutoConfig.from_pretrained(folder)
        model_class = cls._model_class(config)
        state_dict = cls._read_state_dict(folder, device)
        file_dtype = next((t.dtype for t in state_dict.values() if t.is_floating_point() and t.element_size() > 1),
                          None)
        build_dtype = file_dtype or getattr(config, "dtype", None) or torch.float32
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
