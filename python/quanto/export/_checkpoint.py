"""Reading a saved quanto checkpoint (docs/format.md) one tensor at a time, for the exporters.

A folder written by ``quanto.models`` / optimum-quanto / the ``quanto`` CLI holds ``model.safetensors``
(or its shards and ``model.safetensors.index.json``), ``quanto_qmap.json`` and ``config.json``. The
files do not store the float shape of a 2/4-bit weight, so it comes from the model's transformers
class built on the meta device (no memory); the weights layer (``torch.ops.quanto.weight_*``) then
gives the keys, checks the stored shapes and dequantizes. Tensors are read one at a time when
asked for (plain reads at their offsets, after safetensors validated each shard): only the module
being converted is ever in memory.
"""

import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Tuple

import torch
from safetensors import safe_open

from ..models._common import QMAP_NAME, WeightFiles
from ..nn.qmodule import as_qtype, resolve_group_size
from ..qtypes import qtype

ops = torch.ops.quanto
FILES = WeightFiles("model")

__all__ = ["QuantizedWeight", "QuantoCheckpoint", "FILES"]


@dataclass
class QuantizedWeight:
    """One quantized module of the checkpoint, as the weights layer describes it."""

    name: str                    # module name ("model.layers.0.mlp.up_proj")
    module_type: str             # class name of the float module ("Linear", "Embedding", "Conv1D", ...)
    weights: Optional[qtype]     # None: activations only (a quantized norm)
    activations: Optional[qtype]
    shape: Tuple[int, ...]       # out-first float shape (docs/format.md section 5)
    group_size: Optional[int]    # qint2/qint4: the group size in use (None: per output channel)
    keys: Dict[str, str]         # part ("data", "scale", "shift") -> tensor name in the checkpoint
    zero_point: bool = False     # qint2/qint4: uint8 integer zero-point instead of a float shift
    dynamic_activations: Optional[qtype] = None  # inputs quantized per token at run time (qint8, float8)

    @property
    def out_features(self) -> int:
        return self.shape[0]

    @property
    def in_features(self) -> int:
        return int(torch.Size(self.shape).numel()) // self.shape[0]

    @property
    def is_linear(self) -> bool:
        return self.module_type == "Linear" and len(self.shape) == 2


class QuantoCheckpoint:
    """A quanto checkpoint folder opened for reading (see the module doc)."""

    def __init__(self, folder, where: str = "export"):
        self.folder = Path(folder)
        self.where = where
        if not self.folder.is_dir():
            raise FileNotFoundError(f"{where}: {str(self.folder)!r} is not a folder (a quanto checkpoint folder "
                                    f"holds model.safetensors, {QMAP_NAME} and config.json)")
        config_path = self.folder / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(f"{where}: no config.json in {str(self.folder)!r}: the exporters need the model's "
                                    "transformers config")
        self.config_dict = self._read_json(config_path, dict)
        qmap_path = self.folder / QMAP_NAME
        if not qmap_path.is_file():
            raise FileNotFoundError(f"{where}: no {QMAP_NAME} in {str(self.folder)!r}: is this a quanto checkpoint? "
                                    "(quantize it first: quanto quantize, or "
                                    "QuantizedModelForCausalLM.save_pretrained)")
        self.qmap = self._read_json(qmap_path, dict)
        self.shards, self.weight_map = self._index()
        self._readers: Dict[str, _ShardReader] = {}
        self._float_model = None
        self.modules: Dict[str, QuantizedWeight] = {}
        self._describe_modules()

    # --- files ------------------------------------------------------------------------------------

    def _read_json(self, path: Path, kind: type):
        try:
            value = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise ValueError(f"{self.where}: {str(path)!r} is not valid JSON: {e}") from None
        if not isinstance(value, kind):
            raise ValueError(f"{self.where}: {str(path)!r} must hold a JSON object")
        return value

    def _index(self) -> Tuple[List[str], Dict[str, str]]:
        """(weight files, tensor name -> file) from the index or the single file."""
        index_path, single = self.folder / FILES.index, self.folder / FILES.single
        if index_path.is_file():
            index = self._read_json(index_path, dict)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise ValueError(f"{self.where}: the 'weight_map' of {str(index_path)!r} must map names to files")
            shards = sorted(set(weight_map.values()))
            for name in shards:
                if Path(name).name != name or not (self.folder / name).is_file():
                    raise FileNotFoundError(f"{self.where}: shard {name!r} listed in {str(index_path)!r} is missing")
            return shards, dict(weight_map)
        if single.is_file():
            with safe_open(single, framework="pt") as f:
                return [FILES.single], {k: FILES.single for k in f.keys()}
        raise FileNotFoundError(f"{self.where}: no {FILES.single} nor {FILES.index} in {str(self.folder)!r}")

    def source_files(self) -> List[str]:
        """The weight files and the files that describe them, which an export rewrites."""
        names = list(self.shards) + [QMAP_NAME, "config.json"]
        if (self.folder / FILES.index).is_file():
            names.append(FILES.index)
        return names

    def names(self) -> List[str]:
        """Every tensor name, in the index's (or the file's) order."""
        return list(self.weight_map)

    def shard_of(self, name: str) -> str:
        return self.weight_map[name]

    def _shard(self, shard: str) -> "_ShardReader":
        reader = self._readers.get(shard)
        if reader is None:
            reader = self._readers[shard] = _ShardReader(self.folder / shard)
        return reader

    def get(self, name: str) -> torch.Tensor:
        """One tensor, read from its shard into memory of its own."""
        if name not in self.weight_map:
            raise KeyError(f"{self.where}: tensor {name!r} is not in the checkpoint")
        return self._shard(self.weight_map[name]).read(name)

    def get_slice_info(self, name: str) -> Tuple[str, List[int]]:
        """(safetensors dtype name, shape) of a tensor, from its shard's header."""
        entry = self._shard(self.weight_map[name]).entries[name]
        return entry["dtype"], list(entry["shape"])

    def close(self):
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    # --- modules ----------------------------------------------------------------------------------

    def float_model(self) -> torch.nn.Module:
        """The model's transformers class built from config.json with empty (meta) weights."""
        if self._float_model is None:
            import transformers
            from accelerate import init_empty_weights

            from ..models.transformers_models import QuantizedTransformersModel

            config = transformers.AutoConfig.from_pretrained(self.folder)
            model_class = QuantizedTransformersModel._model_class(config)
            with init_empty_weights(include_buffers=False):
                self._float_model = model_class._from_config(config)
        return self._float_model

    def _describe_modules(self):
        modules = dict(self.float_model().named_modules())
        for name, entry in self.qmap.items():
            if not isinstance(entry, dict) or "weights" not in entry or "activations" not in entry:
                raise ValueError(f"{self.where}: the {QMAP_NAME} entry for {name!r} must be an object with 'weights' "
                                 f"and 'activations', got {entry!r}")
            if name not in modules:
                raise ValueError(f"{self.where}: {QMAP_NAME} names module {name!r}, which the model of config.json "
                                 "does not have")
            module = modules[name]
            w = as_qtype(entry["weights"], f"{self.where}: {name!r} weights")
            a = as_qtype(entry["activations"], f"{self.where}: {name!r} activations")
            module_type = type(module).__name__
            if w is None:
                self.modules[name] = QuantizedWeight(name, module_type, None, a, (), None, {})
                continue
            float_shape = tuple(module.weight.shape)
            # transformers' Conv1D keeps [in, out]; quanto stores it out-first (docs/format.md section 5).
            shape = (float_shape[1], float_shape[0]) if module_type == "Conv1D" else float_shape
            in_features = int(torch.Size(shape).numel()) // shape[0]
            gs = resolve_group_size(w, in_features, entry.get("group_size"), f"{self.where}: {name!r}")
            parts = ("data", "scale", "shift")
            keys = {part: f"{name}.{k}" for part, k in zip(parts, ops.weight_state_keys(w.name))}
            dynamic = entry.get("dynamic_activations")
            dynamic = None if dynamic is None else as_qtype(dynamic, f"{self.where}: {name!r} dynamic_activations")
            qw = QuantizedWeight(name, module_type, w, a, shape, gs, keys, dynamic_activations=dynamic)
            self._check_stored(qw)
            self.modules[name] = qw

    def _check_stored(self, qw: QuantizedWeight):
        """Checks the stored tensors against the weights layer's canonical shapes and dtypes."""
        data_shape, scale_shape = ops.weight_stored_shapes(qw.weights.name, list(qw.shape), qw.group_size)
        expected = {"data": data_shape, "scale": scale_shape, "shift": scale_shape}
        for part, key in qw.keys.items():
            if key not in self.weight_map:
                raise ValueError(f"{self.where}: the quantized module {qw.name!r} ({qw.weights.name}) lacks tensor "
                                 f"{key!r}; does {QMAP_NAME} match the weights?")
            dtype, shape = self.get_slice_info(key)
            if shape != list(expected[part]):
                raise ValueError(f"{self.where}: {key!r} has shape {shape}, expected {list(expected[part])} for a "
                                 f"{qw.weights.name} weight of shape {list(qw.shape)} with group size {qw.group_size}; "
                                 f"does {QMAP_NAME} match the weights?")
            if part == "shift":
                qw.zero_point = dtype == "U8"

    def quantized_tensor_names(self) -> Dict[str, str]:
        """Every tensor a quantized module adds (its weight's, and the activation scales every quantized
        module stores, 1.0 when unused) -> its module name. None of them exists in the float model."""
        names = {key: qw.name for qw in self.modules.values() for key in qw.keys.values()}
        for qw in self.modules.values():
            for k in ("input_scale", "output_scale"):
                if f"{qw.name}.{k}" in self.weight_map:
                    names[f"{qw.name}.{k}"] = qw.name
        return names

    def weight_state(self, qw: QuantizedWeight) -> Dict[str, torch.Tensor]:
        """The canonical tensors of a quantized weight (data, scale[, shift])."""
        return {part: self.get(key) for part, key in qw.keys.items()}

    def scale_dtype(self) -> Optional[torch.dtype]:
        """The float dtype of the quantized weights' scales (quanto's T), None without quantized weights;
        refuses a checkpoint that mixes several."""
        dtypes = set()
        for qw in self.modules.values():
            if qw.weights is not None:
                dtypes.add(self.get_slice_info(qw.keys["scale"])[0])
        if len(dtypes) > 1:
            raise ValueError(f"{self.where}: the quantized weights' scales mix dtypes {sorted(dtypes)}; re-quantize "
                             "with one scale dtype")
        if not dtypes:
            return None
        return {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[dtypes.pop()]


_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
           "F8_E4M3FNUZ": torch.float8_e4m3fnuz, "F8_E5M2FNUZ": torch.float8_e5m2fnuz}


class _ShardReader:
    """Reads single tensors of one safetensors file with plain reads at their offsets.

    safetensors' ``safe_open`` validates the file first (docs/format.md section 8.2); reads then go
    through ``pread`` instead of a memory map, whose touched pages would stay resident for as long
    as it is open and add up to the whole checkpoint."""

    def __init__(self, path: Path):
        if sys.byteorder != "little":
            raise ValueError("export: safetensors data is little-endian; this reader runs on little-endian hosts only")
        with safe_open(path, framework="pt"):
            pass  # validation: header, dtypes, offsets tiling the data buffer
        self.fd = os.open(path, os.O_RDONLY)
        (n,) = struct.unpack("<Q", os.pread(self.fd, 8, 0))
        header = json.loads(os.pread(self.fd, n, 8))
        header.pop("__metadata__", None)
        self.entries: Dict[str, dict] = header
        self.base = 8 + n

    def read(self, name: str) -> torch.Tensor:
        entry = self.entries[name]
        begin, end = entry["data_offsets"]
        buf = bytearray(end - begin)
        view, done = memoryview(buf), 0
        while done < len(buf):
            got = os.preadv(self.fd, [view[done:]], self.base + begin + done)
            if got <= 0:
                raise OSError(f"unexpected end of file reading tensor {name!r}")
            done += got
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise ValueError(f"tensor {name!r}: safetensors dtype {entry['dtype']} is not supported here")
        if not buf:
            return torch.empty(entry["shape"], dtype=dtype)
        return torch.frombuffer(buf, dtype=torch.uint8).view(dtype).reshape(entry["shape"])

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self):
        self.close()


def dequantized(state: Dict[str, torch.Tensor], qw: QuantizedWeight) -> torch.Tensor:
    """quanto's dequantized (out-first) weight, in the scale's dtype: the reference every export is
    measured against."""
    parts = [state["data"], state["scale"]] + ([state["shift"]] if "shift" in state else [])
    return ops.weight_dequantize(parts, qw.weights.name, list(qw.shape), qw.group_size)


def codes_2d(state: Dict[str, torch.Tensor], qw: QuantizedWeight) -> torch.Tensor:
    """The unsigned 2/4-bit codes of a qbits weight, unpacked and shaped [out, in_features] (uint8)."""
    rows = qw.out_features if qw.group_size is None else (qw.out_features * qw.in_features) // qw.group_size
    codes = ops.unpack_codes(state["data"], qw.weights.bits, rows)
    return codes.reshape(qw.out_features, qw.in_features)


def params_2d(t: torch.Tensor, qw: QuantizedWeight) -> torch.Tensor:
    """A qbits scale or shift shaped [out, groups per row] (one column per output channel without groups)."""
    return t.reshape(qw.out_features, -1)


def iter_float_tensors(ckpt: QuantoCheckpoint) -> Iterator[str]:
    """Names of the tensors that are not part of a quantized weight, in the checkpoint's order."""
    quantized = ckpt.quantized_tensor_names()
    return (n for n in ckpt.names() if n not in quantized)
