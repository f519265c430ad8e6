"""Registers quanto's method with transformers (``register_quantization_config`` /
``register_quantizer``, its public API) without making ``import quanto`` import transformers.

Importing ``transformers.quantizers.auto``, where the registry lives, costs seconds (it imports most
of transformers' loading code), several times ``import quanto`` itself. So ``import quanto`` calls
:func:`install`: if that module is already imported, quanto registers at once; otherwise a finder
on ``sys.meta_path`` waits for it and registers right after it executes. transformers imports it
before it reads any ``quantization_config`` (``from_pretrained`` imports ``modeling_utils``, which
imports it), so a saved quanto model loads with ``AutoModel*.from_pretrained(folder)`` once
``quanto`` has been imported, whichever of the two was imported first.
"""

import importlib.abc
import sys
import threading
import warnings

_TARGET = "transformers.quantizers.auto"
_QUANTIZER_MODULE = __name__.rsplit(".", 1)[0] + ".quantizer"
_lock = threading.RLock()  # re-entered when importing the quantizer registers (its last line)
_registered = False


def register() -> None:
    """Registers ``QuantoConfig`` and its quantizer under ``QUANT_METHOD`` (idempotent)."""
    global _registered
    with _lock:
        if _registered:
            return
        quantizer = sys.modules.get(_QUANTIZER_MODULE)
        if quantizer is not None and not hasattr(quantizer, "QuantoHfQuantizer"):
            # The quantizer module is importing transformers' registry right now (its own imports
            # loaded it): it is not defined yet, and registers itself on its last line.
            return
        from transformers.quantizers.auto import (AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING,
                                                  register_quantization_config, register_quantizer)

        from .config import QUANT_METHOD, QuantoConfig
        from .quantizer import QuantoHfQuantizer

        if _registered:  # importing the quantizer just did
            return

        pairs = ((AUTO_QUANTIZATION_CONFIG_MAPPING, QuantoConfig, register_quantization_config),
                 (AUTO_QUANTIZER_MAPPING, QuantoHfQuantizer, register_quantizer))
        for mapping, cls, _ in pairs:
            other = mapping.get(QUANT_METHOD)
            if other is not None and not other.__module__.startswith(__name__.rsplit(".", 1)[0]):
                raise ValueError(f"transformers already has a quantization method {QUANT_METHOD!r} "
                                 f"({other.__module__}.{other.__qualname__}), which is not quanto's")
        for mapping, cls, reg in pairs:
            mapping.pop(QUANT_METHOD, None)  # an earlier copy of this module (importlib.reload) registered it
            reg(QUANT_METHOD)(cls)
        _registered = True


class _Loader(importlib.abc.Loader):
    """The module's own loader, then :func:`register` once the module has executed."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        try:
            register()
        except Exception as e:  # never break transformers' import; say why quanto is not available there
            warnings.warn(f"quanto could not register its transformers quantization method: {e!r}", stacklevel=2)

    def __getattr__(self, name):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for ``transformers.quantizers.auto`` it asks the other finders and wraps
    the loader they return, then leaves ``sys.meta_path``."""

    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        _uninstall_finder()
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_finder = _Finder()


def _uninstall_finder():
    try:
        sys.meta_path.remove(_finder)
    except ValueError:
        pass


def install() -> None:
    """Registers now if transformers' registry is loaded, else when it gets imported."""
    if _TARGET in sys.modules:
        try:
            register()
        except Exception as e:
            warnings.warn(f"quanto could not register its transformers quantization method: {e!r}", stacklevel=2)
        return
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)
