"""The package as installed by `make build` (an editable pip install into the venv): importable
without PYTHONPATH, from another folder, and bound to this checkout's sources and library."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def test_editable_install_imports_this_checkout(tmp_path):
    try:
        dist = importlib.metadata.distribution("quanto")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("quanto is not installed in this environment: run `make build` (pip install -e .)")
    assert dist.version == "0.1.0"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QUANTO_LIBRARY")}
    code = ("import quanto, torch; print(quanto.__file__); print(quanto._library.load()); "
            "print(torch.ops.quanto.absmax_scale(torch.ones(2, 3), 'qint8', 0).tolist())")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    module, library, scale = out.stdout.splitlines()
    assert Path(module).resolve() == REPO / "python" / "quanto" / "__init__.py"
    assert Path(library).resolve() == REPO / "python" / "quanto" / "_native" / "libquanto.so"
    assert scale == str(torch.full((2, 1), 1 / 127).tolist())  # float32 amax / 127
