"""A safetensors writer that streams: the header is written from a plan (names, dtypes, shapes),
then each tensor is produced and written one at a time, so memory stays near one tensor whatever
the file's size (safetensors' own ``save_file`` needs every tensor in memory at once). The layout is
docs/format.md section 8: 8-byte little-endian header length, the JSON header padded with spaces to
8 bytes, then the data; tensors are laid out by decreasing element size so each starts aligned."""

import json
import os
import struct
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

__all__ = ["DTYPE_NAMES", "write_streaming"]

DTYPE_NAMES = {
    torch.float64: "F64", torch.int64: "I64", torch.float32: "F32", torch.int32: "I32", torch.bfloat16: "BF16",
    torch.float16: "F16", torch.int16: "I16", torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2",
    torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def write_streaming(path: Path, plan: Sequence[Tuple[str, torch.dtype, Sequence[int]]],
                    produce: Callable[[str], torch.Tensor], metadata: Optional[Dict[str, str]] = None):
    """Writes ``plan``'s tensors to ``path``; ``produce(name)`` returns each one (checked against the plan)."""
    order: List[Tuple[str, torch.dtype, Tuple[int, ...]]] = sorted(
        ((n, d, tuple(int(x) for x in s)) for n, d, s in plan),
        key=lambda e: -torch.empty((), dtype=e[1]).element_size())
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    for name, dtype, shape in order:
        if dtype not in DTYPE_NAMES:
            raise TypeError(f"safetensors: no dtype name for {dtype} ({name!r})")
        nbytes = torch.Size(shape).numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, dtype, shape in order:
            t = produce(name)
            if t.dtype != dtype or tuple(t.shape) != shape:
                raise AssertionError(f"safetensors: {name!r} was planned as {dtype} {list(shape)}, "
                                     f"produced {t.dtype} {list(t.shape)}")
            data = t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
            f.write(memoryview(data.numpy()))
        f.flush()
        os.fsync(f.fileno())
