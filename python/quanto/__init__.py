"""quanto: quantization of PyTorch models on a C++ (LibTorch) core.

Importing the package loads the native library, which registers ``torch.ops.quanto.*``.
"""

from . import _library
from .qtypes import (
    qfloat8,
    qfloat8_e4m3fn,
    qfloat8_e4m3fnuz,
    qfloat8_e5m2,
    qint2,
    qint4,
    qint8,
    qtype,
    qtype_from_name,
    qtypes,
)

_library.load()

from .calibrate import Calibration  # noqa: E402
from .nn import QConv1d, QConv2d, QEmbedding, QLayerNorm, QLinear, QModuleMixin, quantize_module  # noqa: E402
from .optimizers import (  # noqa: E402
    AbsmaxOptimizer,
    GptqOptimizer,
    HqqOptimizer,
    MaxOptimizer,
    Optimizer,
    SymmetricOptimizer,
    ZeroPointOptimizer,
)
from .quantize import freeze, quantization_map, quantize, requantize  # noqa: E402
from .awq import AwqOptimizer  # noqa: E402
from .smoothquant import SmoothQuant  # noqa: E402
from . import models  # noqa: E402  (transformers helpers; transformers is imported on first use)
from . import export  # noqa: E402  (quanto.export(src, out, format=...): compressed-tensors and GGUF exports)
from . import hf_quantizer  # noqa: E402  (transformers quantization method; imports transformers on first use)

# quanto's method joins transformers' registry when transformers loads it (or now, if it has).
hf_quantizer.install()


def __getattr__(name):
    if name == "QuantoConfig":  # imports transformers' config classes (about a second): on first use
        return hf_quantizer.QuantoConfig
    if name == "fusion":  # torch.compile's graph pass (imports torch._inductor): on first use
        import importlib

        return importlib.import_module(".fusion", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "qtype",
    "qtypes",
    "qtype_from_name",
    "qint2",
    "qint4",
    "qint8",
    "qfloat8",
    "qfloat8_e4m3fn",
    "qfloat8_e4m3fnuz",
    "qfloat8_e5m2",
    "quantize",
    "freeze",
    "quantization_map",
    "requantize",
    "Calibration",
    "QModuleMixin",
    "QLinear",
    "QConv1d",
    "QConv2d",
    "QLayerNorm",
    "QEmbedding",
    "quantize_module",
    "Optimizer",
    "AbsmaxOptimizer",
    "MaxOptimizer",
    "HqqOptimizer",
    "GptqOptimizer",
    "SymmetricOptimizer",
    "ZeroPointOptimizer",
    "AwqOptimizer",
    "SmoothQuant",
    "QuantoConfig",
    "export",
]
