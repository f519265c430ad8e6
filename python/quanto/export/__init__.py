"""Export a quanto checkpoint to the formats serving engines read.

``export(src, out, format="compressed-tensors")`` writes a folder that vLLM, llm-compressor and
transformers load (compressed-tensors, see :mod:`quanto.export.compressed_tensors`);
``export(src, out, format="gguf")`` writes one GGUF file that llama.cpp loads (Llama-family models,
see :mod:`quanto.export.gguf_export`). ``src`` is a quanto checkpoint folder (``quanto quantize``'s
output or ``QuantizedModelForCausalLM.save_pretrained``'s). Only encodings with an exact
equivalent are mapped; anything else is refused with :class:`ExportRefused`, whose message names
the way out, unless ``allow_reencode=True`` asks for a re-encoding whose added error the returned
:class:`ExportReport` lists per layer.

The export reads the checkpoint one tensor at a time and writes the same way, so memory stays near
the libraries' own plus a few copies of the largest tensor; it writes beside ``out`` under a temporary name
and renames at the end (nothing half-written is left behind), never writes into ``src``, and
replaces an existing ``out`` only with ``force=True``.

From the command line: ``python -m quanto.export SRC -o OUT --format compressed-tensors|gguf``.
The package itself is callable: ``quanto.export(src, out, format=...)`` is :func:`export`.
"""

import os
import sys
import types
from pathlib import Path
from typing import Optional, Union

from . import _output
from ._checkpoint import QuantoCheckpoint
from ._report import ExportRefused, ExportReport, LayerReport

__all__ = ["export", "FORMATS", "ExportRefused", "ExportReport", "LayerReport"]

FORMATS = ("compressed-tensors", "gguf")


def export(src: Union[str, os.PathLike], out: Union[str, os.PathLike], format: str = "compressed-tensors",
           allow_reencode: bool = False, force: bool = False, tokenizer_pre: Optional[str] = None) -> ExportReport:
    """Export the quanto checkpoint folder ``src`` to ``out`` (a folder for compressed-tensors, a file for
    GGUF). ``tokenizer_pre`` (GGUF only) is llama.cpp's pre-tokenizer name (``tokenizer.ggml.pre``, e.g.
    "smollm", "llama-bpe"); default "default". Returns the per-layer report."""
    if format not in FORMATS:
        raise ValueError(f"export: unknown format {format!r}; valid formats: {', '.join(FORMATS)}")
    if tokenizer_pre is not None and format != "gguf":
        raise ValueError("export: tokenizer_pre applies to format='gguf' only")
    src, out = Path(src), Path(out)
    _output.check_paths(src, out, force)
    if out.exists() and out.is_dir() != (format == "compressed-tensors"):
        raise ValueError(f"export: {str(out)!r} is a {'folder' if out.is_dir() else 'file'}; {format} writes a "
                         f"{'folder' if format == 'compressed-tensors' else 'file'}, and force=True replaces only "
                         "an output of the same kind")
    ckpt = QuantoCheckpoint(src)
    report = ExportReport(format=format, source=str(src), output=str(out))
    tmp = _output.temporary_path(out)
    try:
        if format == "compressed-tensors":
            from .compressed_tensors import export_compressed_tensors

            tmp.mkdir()
            export_compressed_tensors(ckpt, tmp, allow_reencode, report)
        else:
            from .gguf_export import export_gguf

            export_gguf(ckpt, tmp, allow_reencode, report, tokenizer_pre=tokenizer_pre)
        _output.commit(tmp, out)
    except BaseException:
        _output.discard(tmp)
        raise
    finally:
        ckpt.close()
    report.layers.sort(key=lambda layer: layer.name)
    return report


class _CallableModule(types.ModuleType):
    """``quanto.export(src, out, ...)`` calls :func:`export`, while ``quanto.export`` stays the package
    (``python -m quanto.export``, ``from quanto.export import ExportReport``)."""

    def __call__(self, *args, **kwargs) -> ExportReport:
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
