"""The Python side of tests/io/interop_test.cpp, with the real `safetensors` package.

  interop.py write DIR            writes DIR/python.safetensors (safetensors.torch.save_file, fixed
                                  seed, every dtype the package maps to torch) and DIR/manifest.json
                                  (dtype name, shape and hex bytes of each tensor, the metadata)
  interop.py check FILE MANIFEST  loads FILE with safetensors.safe_open and exits 1 unless its
                                  tensors and metadata equal the manifest's, byte for byte
"""
import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import _TYPES, save_file

METADATA = {"format": "pt", "quanto.format_version": "1", "note": "ünïcode ✓ \"quoted\""}


def tensors():
    g = torch.Generator().manual_seed(20240607)
    out = {}
    for name, dtype in sorted(_TYPES.items()):
        if dtype == torch.bool:
            t = torch.randint(0, 2, (3, 5), generator=g, dtype=torch.uint8).to(torch.bool)
        else:
            size = torch.empty((), dtype=dtype).element_size()
            raw = torch.randint(0, 256, (3, 5 * size), generator=g, dtype=torch.uint8)
            t = raw.view(dtype)
        out[f"t.{name}"] = t
    out["scalar"] = torch.tensor(-2.75)
    out["empty"] = torch.zeros(0, 4, dtype=torch.float16)
    out["layer.0.weight._data"] = torch.randint(-128, 128, (4, 8), generator=g, dtype=torch.int8)
    return out


def describe(t):
    dtype = next(k for k, v in _TYPES.items() if v == t.dtype)
    return {"dtype": dtype, "shape": list(t.shape), "hex": t.contiguous().view(-1).view(torch.uint8).numpy().tobytes().hex()
            if t.numel() else ""}


def write(folder):
    ts = tensors()
    save_file(ts, os.path.join(folder, "python.safetensors"), metadata=METADATA)
    with open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump({"metadata": METADATA, "tensors": {k: describe(v) for k, v in ts.items()}}, f)


def check(path, manifest_path):
    with open(manifest_path) as f:
        manifest = json.load(f)
    errors = []
    with safe_open(path, framework="pt") as f:
        if f.metadata() != manifest["metadata"]:
            errors.append(f"metadata {f.metadata()} != {manifest['metadata']}")
        if sorted(f.keys()) != sorted(manifest["tensors"]):
            errors.append(f"names {sorted(f.keys())} != {sorted(manifest['tensors'])}")
        for k in f.keys():
            if k in manifest["tensors"] and describe(f.get_tensor(k)) != manifest["tensors"][k]:
                errors.append(f"tensor {k}: {describe(f.get_tensor(k))} != {manifest['tensors'][k]}")
    for e in errors:
        print("interop mismatch:", e[:300], file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    elif sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(f"unknown mode {sys.argv[1]}")
