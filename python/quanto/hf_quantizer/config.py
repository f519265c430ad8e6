"""``quanto.QuantoConfig``: the transformers quantization config of quanto's own method.

``AutoModel*.from_pretrained(path, quantization_config=QuantoConfig(weights="int4"))`` quantizes
each weight with quanto as transformers loads it; ``save_pretrained`` writes the config (as
``config.json``'s ``quantization_config``) beside quanto's files, and a later ``from_pretrained``
without a config rebuilds the quantized model from them (see ``quantizer.py``).

The config is transformers' ``QuantizationConfigMixin``, so this module imports
``transformers.utils.quantization_config`` (about a second): ``import quanto`` does not import it,
``quanto.QuantoConfig`` does on first use.
"""

import copy
from typing import Callable, List, Optional

from transformers.utils.quantization_config import QuantizationConfigMixin

from ..optimizers import OPTIMIZERS
from ..qtypes import qtype, qtypes

__all__ = ["QuantoConfig", "QUANT_METHOD", "as_qtype_name"]

# The method name in config.json's "quantization_config". transformers keeps "quanto" for its
# optimum-quanto integration, whose files are not saved this way (that path cannot serialize).
QUANT_METHOD = "quanto_native"

# The CLI's short names ("int4", "float8", ...) are the qtype names without their leading "q".
_SHORT_NAMES = {name[1:]: name for name in qtypes if name.startswith("q")}

# Optimizers that work while loading: GPTQ needs calibration data run through the float model.
_LOAD_TIME_OPTIMIZERS = sorted(name for name, cls in OPTIMIZERS.items() if not getattr(cls, "needs_calibration", False))


def _order(name: str):
    """Integers before floats, wider first: int8, int4, int2, float8..."""
    q = qtypes[_SHORT_NAMES.get(name, name)]
    return q.is_floating_point, -q.bits, name


def _valid_names(bits: Optional[int] = None) -> str:
    short = sorted((s for s, q in _SHORT_NAMES.items() if bits is None or qtypes[q].bits == bits), key=_order)
    full = sorted((q for q in set(_SHORT_NAMES.values()) if bits is None or qtypes[q].bits == bits), key=_order)
    return ", ".join(short) + " (or the qtype names " + ", ".join(full) + ")"


def as_qtype_name(value, what: str, bits: Optional[int] = None) -> Optional[str]:
    """The qtype name (``"qint4"``) for a short name (``"int4"``), a qtype name, a quanto qtype, or
    None; raises ValueError listing the valid values."""
    if value is None or value == "none":
        return None
    if isinstance(value, qtype):
        name = value.name
    elif isinstance(value, str):
        name = _SHORT_NAMES.get(value, value)
    else:
        raise TypeError(f"QuantoConfig: {what} must be a string such as 'int4' or a quanto qtype, "
                        f"got {type(value).__name__} {value!r}; valid: {_valid_names(bits)}")
    if name not in qtypes:
        raise ValueError(f"QuantoConfig: unknown {what} {value!r}; valid: {_valid_names(bits)}")
    if bits is not None and qtypes[name].bits != bits:
        raise ValueError(f"QuantoConfig: {what} are quantized to {bits}-bit qtypes only, got {value!r}; "
                         f"valid: {_valid_names(bits)}")
    return qtypes[name].name  # "qfloat8" is an alias: keep the canonical name


class QuantoConfig(QuantizationConfigMixin):
    """Quantize a transformers model with quanto while ``from_pretrained`` loads it.

    Args:
        weights: weight qtype: ``"int8"``, ``"int4"``, ``"int2"``, ``"float8"``
            (``"float8_e4m3fn"``, ``"float8_e5m2"``, ``"float8_e4m3fnuz"``), the qtype names
            (``"qint4"``...) or a quanto qtype. ``None`` only with ``activations``.
        activations: ``None`` (weight-only, the default) or an 8-bit qtype (``"int8"``,
            ``"float8"``...). Static activation scales need data: give ``calibration``.
        dynamic_activations: with ``activations``, quantize the inputs of linear layers per token at
            run time instead (no calibration; int8 weights run the integer W8A8 kernels).
        group_size: group size of 2/4-bit weights (default: docs/format.md's rule; a non-default
            one is recorded in ``quanto_qmap.json``, which optimum-quanto ignores).
        optimizer: ``None`` (the qtype's default), ``"absmax"``, ``"minmax"`` or ``"hqq"``.
            ``"gptq"`` needs the float model and calibration data, which quantizing while loading
            never has: use ``quanto.quantize(..., optimizer="gptq")`` + ``Calibration`` + ``freeze``.
        modules_to_not_convert: modules left in float, with transformers' matching (a name, a
            prefix up to a module boundary, a regex or a suffix: ``["lm_head"]``). ``None``: the
            output embeddings (``lm_head``) and tied weights, as transformers' ``QuantoConfig``.
            A module whose weight is tied to another's always stays float.
        embeddings: also quantize ``nn.Embedding`` weights (optimum-quanto cannot read them).
        calibration: with ``activations``, a callable ``calibration(model)`` that runs sample
            batches through the loaded, weight-quantized model; quanto calls it inside
            ``quanto.Calibration()`` to set the static activation scales. Not saved (the scales are).
    """

    def __init__(self, weights="int8", activations=None, group_size: Optional[int] = None,
                 optimizer: Optional[str] = None, modules_to_not_convert: Optional[List[str]] = None,
                 embeddings: bool = False, calibration: Optional[Callable] = None,
                 dynamic_activations: bool = False, **kwargs):
        self.quant_method = QUANT_METHOD
        self.weights = weights
        self.activations = activations
        self.group_size = group_size
        self.optimizer = optimizer
        self.modules_to_not_convert = modules_to_not_convert
        self.embeddings = embeddings
        self.calibration = calibration
        self.dynamic_activations = dynamic_activations
        unknown = sorted(k for k in kwargs if k != "quant_method")
        if unknown:
            raise TypeError(f"QuantoConfig: unknown arguments {unknown}; valid: weights, activations, group_size, "
                            "optimizer, modules_to_not_convert, embeddings, calibration, dynamic_activations")
        self.post_init()

    def post_init(self):
        """Checks every value and names the valid ones (transformers calls it after ``update``)."""
        self.weights = as_qtype_name(self.weights, "weights")
        self.activations = as_qtype_name(self.activations, "activations", bits=8)
        if self.weights is None and self.activations is None:
            raise ValueError(f"QuantoConfig: nothing to quantize: give weights= ({_valid_names()}) "
                             "and/or activations=")
        bits = qtypes[self.weights].bits if self.weights is not None else None
        gs = self.group_size
        if gs is not None:
            if not isinstance(gs, int) or isinstance(gs, bool) or gs <= 0:
                raise ValueError(f"QuantoConfig: group_size must be a positive int or None, got {gs!r}")
            if bits is None or bits == 8:
                raise ValueError(f"QuantoConfig: group_size applies to 2/4-bit weights (int2, int4) only, "
                                 f"got weights={self.weights}")
        if self.optimizer is not None:
            if not isinstance(self.optimizer, str):
                raise TypeError(f"QuantoConfig: optimizer must be a name ({', '.join(_LOAD_TIME_OPTIMIZERS)}), "
                                f"got {type(self.optimizer).__name__}: the config is saved as JSON")
            name = self.optimizer.lower()
            if name not in OPTIMIZERS:
                raise ValueError(f"QuantoConfig: unknown optimizer {self.optimizer!r}; valid: "
                                 f"{', '.join(_LOAD_TIME_OPTIMIZERS)}")
            if name not in _LOAD_TIME_OPTIMIZERS:
                raise ValueError(
                    f"QuantoConfig: optimizer {self.optimizer!r} needs calibration data run through the float model, "
                    "which quantizing while loading never holds; use quanto.quantize(model, weights=..., "
                    "optimizer='gptq'), run batches inside quanto.Calibration(), then quanto.freeze(model) "
                    "(and quanto.models to save), or choose one of " + ", ".join(_LOAD_TIME_OPTIMIZERS))
            if self.weights is None:
                raise ValueError("QuantoConfig: an optimizer applies to weights; give weights= too")
            if (bits == 8) != (name == "absmax"):
                fits = "absmax" if bits == 8 else "minmax, hqq"
                raise ValueError(f"QuantoConfig: optimizer {self.optimizer!r} does not fit weights={self.weights}; "
                                 f"valid for it: {fits}")
            self.optimizer = name
        m = self.modules_to_not_convert
        if m is not None and (not isinstance(m, (list, tuple)) or not all(isinstance(p, str) for p in m)):
            raise TypeError(f"QuantoConfig: modules_to_not_convert must be a list of module names or patterns, "
                            f"got {m!r}")
        if m is not None:
            self.modules_to_not_convert = list(m)
        if not isinstance(self.embeddings, bool):
            raise TypeError(f"QuantoConfig: embeddings must be True or False, got {self.embeddings!r}")
        if self.embeddings and self.weights is None:
            raise ValueError("QuantoConfig: embeddings=True needs weights=: an embedding has no activation-only "
                             "quantization")
        if not isinstance(self.dynamic_activations, bool):
            raise TypeError(f"QuantoConfig: dynamic_activations must be True or False, got {self.dynamic_activations!r}")
        if self.dynamic_activations and self.activations is None:
            raise ValueError("QuantoConfig: dynamic_activations=True needs activations= (int8 or a float8 qtype)")
        if self.dynamic_activations and self.calibration is not None:
            raise ValueError("QuantoConfig: dynamic_activations=True computes activation scales per token at run "
                             "time: it takes no calibration=")
        if self.calibration is not None and not callable(self.calibration):
            raise TypeError(f"QuantoConfig: calibration must be a callable taking the model, "
                            f"got {type(self.calibration).__name__}")

    def to_dict(self):
        """The JSON-able fields (``calibration`` is code: it is not saved; the scales it set are)."""
        d = {k: v for k, v in self.__dict__.items() if k != "calibration"}
        d["modules_to_not_convert"] = None if self.modules_to_not_convert is None else list(self.modules_to_not_convert)
        return d

    def __iter__(self):
        yield from self.to_dict().items()

    def __deepcopy__(self, memo):
        # from_pretrained deep-copies the model config, this config with it: share the callable
        # (a bound method would drag a deep copy of its object, data and all).
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        new.__dict__.update({k: v if k == "calibration" else copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new
