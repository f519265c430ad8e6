"""quanto as a transformers quantization method: ``quanto.QuantoConfig`` for
``AutoModel*.from_pretrained(..., quantization_config=...)``, its ``HfQuantizer``, and their
registration with transformers (``registration.py``: deferred until transformers loads its
quantizer registry, so ``import quanto`` stays fast).

``QuantoConfig`` and ``QuantoHfQuantizer`` import transformers: they are loaded on first use.
"""

from .registration import install, register

_LAZY = {"QuantoConfig": "config", "QUANT_METHOD": "config", "QuantoHfQuantizer": "quantizer"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["QuantoConfig", "QuantoHfQuantizer", "QUANT_METHOD", "install", "register"]
