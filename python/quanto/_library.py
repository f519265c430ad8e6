"""Loads the native core so that ``torch.ops.quanto.*`` exist.

The library is found, in order, at ``$QUANTO_LIBRARY``, in this package's ``_native/`` folder
(where the build copies it), or in the repository's ``build/`` folder. Nothing is compiled at
import time.
"""

import os
from pathlib import Path

import torch

_LIB_NAME = "libquanto.so"


def _candidates():
    env = os.environ.get("QUANTO_LIBRARY")
    if env:
        yield Path(env)
        return
    here = Path(__file__).resolve().parent
    yield here / "_native" / _LIB_NAME
    yield here.parent.parent / "build" / _LIB_NAME


def library_path() -> Path:
    tried = []
    for path in _candidates():
        if path.is_file():
            return path
        tried.append(str(path))
    raise ImportError(
        "quanto: native library not found (looked at " + ", ".join(tried) + "). Build it with `make build`."
    )


_loaded = None


def load() -> Path:
    global _loaded
    if _loaded is None:
        path = library_path()
        torch.ops.load_library(str(path))
        _loaded = path
    return _loaded
