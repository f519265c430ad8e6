"""Atomic output: an export is written beside its destination under a temporary name and renamed
into place at the end, so a failed or interrupted export leaves the old output or none, never part
of one; the input is never written, and an existing output is replaced only when asked."""

import os
import shutil
from pathlib import Path

from ..models._common import fsync_dir

__all__ = ["check_paths", "temporary_path", "commit", "discard"]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_paths(src: Path, out: Path, force: bool, where: str = "export"):
    src, out = src.resolve(), out.resolve()
    if _inside(out, src):
        raise ValueError(f"{where}: the output {str(out)!r} must not be the input folder or inside it")
    if _inside(src, out):
        raise ValueError(f"{where}: the output {str(out)!r} contains the input {str(src)!r}; choose another output")
    if out.exists() or out.is_symlink():
        if not force:
            raise FileExistsError(f"{where}: {str(out)!r} exists; choose another output or pass force=True "
                                  "(--force) to replace it")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{where}: the output's parent folder {str(out.parent)!r} does not exist")


def temporary_path(out: Path) -> Path:
    """A fresh name beside ``out`` (same file system, so the final rename is atomic)."""
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    discard(tmp)
    return tmp


def commit(tmp: Path, out: Path):
    """Moves the finished ``tmp`` (file or folder) to ``out``, replacing an existing ``out``."""
    old = None
    if out.exists() or out.is_symlink():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        discard(old)
        os.replace(out, old)
    os.replace(tmp, out)
    fsync_dir(out.parent)
    if old is not None:
        discard(old)


def discard(path: Path):
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fsync_file(path: Path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())
