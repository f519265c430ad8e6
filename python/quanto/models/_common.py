"""Pieces shared by the transformers and diffusers helpers: the wrapper around a quantized model,
and the files of a saved one (atomic writes, safetensors weights, sharding, the quantization map).

Both libraries lay a checkpoint out the same way around a file stem (``model`` for transformers,
``diffusion_pytorch_model`` for diffusers): ``STEM.safetensors``, or past ``max_shard_size``
``STEM-0000i-of-0000n.safetensors`` shards listed in ``STEM.safetensors.index.json``
(``{"metadata": {"total_size": …}, "weight_map": {key: file}}``); :class:`WeightFiles` names them.
"""

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..quantize import freeze, quantization_map, quantize

QMAP_NAME = "quanto_qmap.json"
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


# --- atomic writes --------------------------------------------------------------------------------

def fsync_dir(folder: Path):
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


def atomic_write(path: Path, write):
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
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str):
    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


# --- weights --------------------------------------------------------------------------------------

class WeightFiles:
    """The names of a checkpoint's weight files around ``stem`` (see the module doc)."""

    def __init__(self, stem: str):
        self.single = f"{stem}.safetensors"
        self.index = f"{stem}.safetensors.index.json"
        self._stem = stem
        self._shard_re = re.compile(rf"^{re.escape(stem)}-\d{{5}}-of-\d{{5}}\.safetensors$")

    def shard(self, i: int, n: int) -> str:
        return f"{self._stem}-{i + 1:05d}-of-{n:05d}.safetensors"

    def is_weights(self, name: str) -> bool:
        return name == self.single or self._shard_re.match(name) is not None


def unique_tensors(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
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


def plan_shards(tensors: Dict[str, torch.Tensor], max_bytes: int) -> List[List[str]]:
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


def prepare_folder(save_directory: Union[str, os.PathLike]) -> Path:
    folder = Path(save_directory)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"save_pretrained: {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def savable_tensors(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors, each stored tensor once."""
    state = model.state_dict()
    meta = [k for k, t in state.items() if t.is_meta]
    if meta:
        raise ValueError(f"save_pretrained: these tensors are on the meta device and hold no data: {meta[:10]}")
    return {k: t.detach().to("cpu").contiguous() for k, t in unique_tensors(state).items()}


def write_weights(folder: Path, tensors: Dict[str, torch.Tensor], files: WeightFiles, max_bytes: int) -> List[str]:
    """Writes one safetensors file, or shards and their index past ``max_bytes``; returns the names
    of the weight files (give them to :func:`remove_stale_weights` once the rest is written)."""
    shards = plan_shards(tensors, max_bytes)
    names = [files.single] if len(shards) == 1 else [files.shard(i, len(shards)) for i in range(len(shards))]
    for name, keys in zip(names, shards):
        part = {k: tensors[k] for k in keys}
        atomic_write(folder / name, lambda tmp, part=part: save_file(part, tmp, metadata={"format": "pt"}))
    if len(shards) > 1:
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in tensors.values())},
                 "weight_map": {k: name for name, keys in zip(names, shards) for k in sorted(keys)}}
        atomic_write_text(folder / files.index, json.dumps(index, indent=2, sort_keys=True) + "\n")
    return names


def remove_stale_weights(folder: Path, files: WeightFiles, names: List[str]):
    """Removes the weight files of an earlier save that this one replaced (a single file vs shards)."""
    stale = [p for p in folder.iterdir() if p.name not in names and files.is_weights(p.name)]
    if len(names) == 1:
        stale += [p for p in [folder / files.index] if p.exists()]
    for p in stale:
        p.unlink()


def write_qmap(folder: Path, model: torch.nn.Module):
    atomic_write_text(folder / QMAP_NAME, json.dumps(quantization_map(model), indent=4) + "\n")


def read_weights(folder: Path, device: torch.device, files: WeightFiles) -> Dict[str, torch.Tensor]:
    index_path, single = folder / files.index, folder / files.single
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"from_pretrained: {str(index_path)!r} is not a safetensors index "
                             f"(a JSON object with a 'weight_map'): {e}") from None
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise ValueError(f"from_pretrained: the 'weight_map' of {str(index_path)!r} must map names to files")
        names = sorted(set(weight_map.values()))
        for name in names:
            if Path(name).name != name:
                raise ValueError(f"from_pretrained: {str(index_path)!r} names shard {name!r} outside the folder")
            if not (folder / name).is_file():
                raise FileNotFoundError(f"from_pretrained: shard {name!r} listed in {str(index_path)!r} is missing")
    elif single.is_file():
        weight_map, names = None, [files.single]
    else:
        raise FileNotFoundError(f"from_pretrained: no {files.single} nor {files.index} in {str(folder)!r}")
    state_dict = {}
    for name in names:
        with safe_open(folder / name, framework="pt", device=str(device)) as f:
            for k in f.keys():
                if weight_map is not None and weight_map.get(k) != name:
                    continue
                state_dict[k] = f.get_tensor(k)
    if weight_map is not None:
        absent = sorted(set(weight_map) - set(state_dict))
        if absent:
            raise ValueError(f"from_pretrained: tensors listed in {files.index} are not in their shard: {absent[:10]}")
    return state_dict


def check_load_args(pretrained_model_name_or_path, device) -> Tuple[Path, torch.device]:
    folder = Path(pretrained_model_name_or_path)
    if not folder.is_dir():
        raise FileNotFoundError(f"from_pretrained: {str(folder)!r} is not a folder (quanto loads local "
                                "folders only; no model hub)")
    device = torch.device("cpu" if device is None else device)
    if device.type == "meta":
        raise ValueError("from_pretrained: device='meta' holds no data; give a real device")
    return folder, device


def read_qmap(folder: Path) -> Dict[str, Any]:
    qmap_path = folder / QMAP_NAME
    if not qmap_path.is_file():
        raise FileNotFoundError(f"from_pretrained: no {QMAP_NAME} in {str(folder)!r}: is this a quantized model?")
    try:
        qmap = json.loads(qmap_path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise ValueError(f"from_pretrained: {str(qmap_path)!r} is not valid JSON: {e}") from None
    if not isinstance(qmap, dict):
        raise ValueError(f"from_pretrained: {str(qmap_path)!r} must hold a JSON object")
    return qmap


def file_float_dtype(state_dict: Dict[str, torch.Tensor]) -> Optional[torch.dtype]:
    """The dtype of the first float tensor wider than a byte (float8 weights say nothing of the rest)."""
    return next((t.dtype for t in state_dict.values() if t.is_floating_point() and t.element_size() > 1), None)


# --- the wrapper ----------------------------------------------------------------------------------

class QuantizedModelWrapper:
    """A quantized (frozen) model that forwards every attribute it lacks to the model.

    Subclasses say which models they take: ``_model_type`` (a class) and ``_model_kind`` (its name
    in messages).
    """

    _model_type: type = torch.nn.Module
    _model_kind = "torch.nn.Module"

    @classmethod
    def _check_model_type(cls, model, where: str):
        if not isinstance(model, cls._model_type):
            raise TypeError(f"{where}: expected a {cls._model_kind}, got {type(model).__name__}")

    @classmethod
    def _quantize_and_wrap(cls, model, include, exclude, **settings):
        """quantize (in place or a copy) + freeze + wrap; refuses a selection that matched nothing."""
        model = quantize(model, include=include, exclude=exclude, **settings)
        if not quantization_map(model):
            raise ValueError(f"{cls.__name__}.quantize: no module of {type(model).__name__} matched "
                             f"include={include!r} / exclude={exclude!r}")
        freeze(model)
        return cls(model)

    def __init__(self, model):
        self._check_model_type(model, type(self).__name__)
        if not quantization_map(model):
            raise ValueError(f"{type(self).__name__}: the model has no quantized module; use "
                             f"{type(self).__name__}.quantize(model, weights=...) to quantize it")
        # Set through __dict__: __getattr__ reads it, and must not recurse before it exists.
        self.__dict__["_wrapped"] = model

    @property
    def model(self):
        """The wrapped (quantized) model."""
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
