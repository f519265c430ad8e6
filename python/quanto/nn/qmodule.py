"""The quantized-module mixin shared by every quantized layer.

A float module becomes quantized in place: its class is swapped for a subclass that mixes in
:class:`QModuleMixin` (so hooks, attributes and the module's identity survive). Before
:meth:`freeze` the float weight stays a trainable Parameter and forward uses it fake-quantized
with straight-through gradients (QAT). ``freeze`` replaces it by plain buffers holding the
quantized weight: ``weight_data`` (int8/float8 values, or packed 2/4-bit codes — tiled for the
fast 4-bit kernels when the group size allows), ``weight_scale`` and ``weight_shift``.
``state_dict`` always holds optimum-quanto's keys and canonical layout (docs/format.md), plus
``input_scale`` and ``output_scale``.

Activations are static (per tensor, with the calibrated ``input_scale`` / ``output_scale``; an
output on its grid is a :class:`~quanto.nn.qactivation.QuantizedActivation`, which the next
quantized module reads as it is, as optimum-quanto does) or, with ``dynamic_activations``, dynamic:
linear layers quantize each input token with its own scale computed at run time, and their output
stays float.

All arithmetic goes through ``torch.ops.quanto``, and the facts of each weight format (its
state-dict keys, canonical shapes, and the in-memory layout a device gets) come from the native
weights layer through ``torch.ops.quanto.weight_*``: Python only decides which op to call.
"""

import weakref
from typing import Dict, List, Optional, Tuple

import torch

from ..calibrate import (calibration_begin_read, calibration_end_read, calibration_momentum, calibration_note_output,
                         calibration_note_read)
from ..optimizers import as_optimizer
from ..qtypes import qint4, qint8, qtype, qtype_from_name, qtypes
from .qactivation import QuantizedActivation, activation_grid, quantize_per_token

__all__ = ["QModuleMixin", "as_qtype", "resolve_group_size"]

ops = torch.ops.quanto
_FLOAT8 = (torch.float8_e4m3fn, torch.float8_e4m3fnuz, torch.float8_e5m2)
_FROZEN_BUFFERS = ("weight_data", "weight_scale", "weight_shift")
# (weakref to an input, its version, its X^T X, rows) of the last Hessian computed in calibration.
_last_xtx = [None]


def as_qtype(value, what: str) -> Optional[qtype]:
    """A quanto qtype from a qtype, its name, an optimum-quanto qtype, or None / "none"."""
    if value is None or (isinstance(value, str) and value == "none"):
        return None
    if isinstance(value, qtype):
        return value
    if isinstance(value, str):
        try:
            return qtype_from_name(value)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
    name = getattr(value, "name", None)  # an optimum-quanto qtype
    if isinstance(name, str) and name in qtypes:
        return qtypes[name]
    raise TypeError(f"{what}: expected a qtype or a qtype name, got {type(value).__name__} {value!r}")


def resolve_group_size(wtype: qtype, in_features: int, group_size: Optional[int], where: str) -> Optional[int]:
    """The group size used for a weight: docs/format.md's default rule, or the user's choice, checked."""
    if wtype.bits == 8:
        return None
    if group_size is None:
        return ops.default_group_size(in_features)
    if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size <= 0:
        raise ValueError(f"{where}: group_size must be a positive int, got {group_size!r}")
    if in_features % group_size != 0:
        raise ValueError(
            f"{where}: group_size {group_size} does not divide the weight's {in_features} input features"
        )
    return group_size


class _StraightThrough(torch.autograd.Function):
    """Forward returns the quantized value; backward passes the gradient to the float input."""

    @staticmethod
    def forward(ctx, x, xq):
        return xq

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _straight_through(x: torch.Tensor, xq: torch.Tensor) -> torch.Tensor:
    if torch.is_grad_enabled() and x.requires_grad:
        return _StraightThrough.apply(x, xq)
    return xq


def quantize_weight(w: torch.Tensor, wtype: qtype, group_size: Optional[int], optimizer) -> Dict[str, torch.Tensor]:
    """Canonical quantized tensors of an out-first weight: data, scale (and shift for 2/4 bits).

    The optimizer gives the parameters; the native weights layer does the rest."""
    w = w.detach()
    if wtype.bits == 8:
        scale, shift = optimizer(w, qtype=wtype, axis=0), None
    else:
        scale, shift = optimizer(w, qtype=wtype, axis=0, group_size=group_size)
    parts = ops.weight_quantize(w, wtype.name, group_size, scale, shift)
    return dict(zip(("data", "scale", "shift"), parts))


def dequantize_weight(t: Dict[str, torch.Tensor], wtype: qtype, group_size: Optional[int], shape) -> torch.Tensor:
    """The float weight (scale's dtype) that canonical quantized tensors stand for."""
    parts = [t["data"], t["scale"]] + ([t["shift"]] if wtype.bits < 8 else [])
    return ops.weight_dequantize(parts, wtype.name, list(shape), group_size)


class _FrozenWeight(torch.Tensor):
    """The dequantized weight a frozen module reads back.

    It is a copy: arithmetic on it changes nothing in the module. Assigning its ``.data`` — what
    PEFT's LoRA ``merge`` / ``unmerge`` (``weight.data += delta``) and similar tools do to update a
    base weight in place — re-quantizes the module's weight from the new values instead of being
    silently lost on the copy.
    """

    # Ops on it return plain tensors.
    __torch_function__ = torch._C._disabled_torch_function_impl

    @staticmethod
    def wrap(t: torch.Tensor, owner) -> "_FrozenWeight":
        w = torch.Tensor._make_subclass(_FrozenWeight, t)
        w._quanto_owner = owner
        return w

    @property
    def data(self):
        return torch.Tensor(torch._C.TensorBase.data.__get__(self))

    @data.setter
    def data(self, value):
        self._quanto_owner._requantize_from(value)


class QModuleMixin:
    """Quantization state and behaviour shared by quantized modules (mixed in first)."""

    # Subclasses: whether forward quantizes a float input (optimum-quanto: Linear only; also the
    # layers that may quantize it per token, dynamically), whether the weight feeds a linear op (so
    # 4-bit weights may use the tiled layout).
    _quantize_input = False
    _linear_weight = False
    dynamic_activations = False  # set per module by _quanto_setup

    # --- set-up -------------------------------------------------------------------------------

    def _quanto_setup(self, weights: Optional[qtype], activations: Optional[qtype], optimizer,
                      group_size: Optional[int], name: str = "", dynamic_activations: bool = False):
        self.name = name
        self.weight_qtype = weights
        self.activation_qtype = activations
        # Per-token activation scales computed at run time (no calibration, float output).
        self.dynamic_activations = bool(dynamic_activations) and activations is not None
        self._quanto_frozen = False
        self._quanto_layout = "canonical"
        # Whether forward quantizes the output (with activations). Calibration(streamline=True)
        # turns it off when no quantized module reads the output; quantization_map persists it.
        self._quanto_quantize_output = True
        w = self._parameters.get("weight")
        if weights is not None:
            if w is None:
                raise ValueError(f"quantize: module {name!r} has no weight to quantize")
            shape = self._canonical_shape(tuple(w.shape))
            self._quanto_qshape = shape
            in_features = torch.Size(shape).numel() // shape[0]
            self.weight_group_size = resolve_group_size(weights, in_features, group_size, f"quantize: {name!r}")
            self.optimizer = as_optimizer(optimizer, weights, f"quantize: {name!r}")
            if getattr(self.optimizer, "needs_calibration", False) and not (self._linear_weight and len(shape) == 2):
                raise ValueError(f"quantize: module {name!r} ({type(self).__name__}): the "
                                 f"{type(self.optimizer).__name__} optimizer handles linear layers only; "
                                 "exclude this module or choose another optimizer")
        else:
            self.weight_group_size = None
            self.optimizer = None
        dtype = w.dtype if w is not None else torch.float32
        device = w.device if w is not None else torch.device("cpu")
        for key in ("input_scale", "output_scale"):
            self.register_buffer(key, torch.ones((), dtype=dtype, device=device))

    # Subclasses whose float weight is not out-first (transformers' Conv1D) override these two.
    def _canonical_shape(self, shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return shape

    def _canonical_weight(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def _float_weight(self, wc: torch.Tensor) -> torch.Tensor:
        return wc

    # --- weight -------------------------------------------------------------------------------

    @property
    def frozen(self) -> bool:
        return self.__dict__.get("_quanto_frozen", False)

    @property
    def weight(self):
        if not self.__dict__.get("_quanto_frozen", False):
            return self._parameters.get("weight")
        # A frozen weight is read back dequantized (a new tensor each time; not a Parameter).
        return _FrozenWeight.wrap(self._float_weight(self.dequantized_weight()), self)

    @weight.setter
    def weight(self, value):
        raise AttributeError(
            f"{type(self).__name__}.weight is quantized and frozen; load a state dict or re-quantize instead"
        )

    def _layout_for(self, device: torch.device) -> str:
        """The in-memory layout the native weights layer picks for this weight on `device`."""
        a = self.activation_qtype.name if self.activation_qtype is not None else "none"
        return ops.weight_layout(self.weight_qtype.name, list(self._quanto_qshape), self.weight_group_size, device,
                                 a, self._linear_weight)

    @property
    def _quanto_tiled(self) -> bool:
        return self.__dict__.get("_quanto_layout") == "tiled"

    @property
    def _quanto_w8a8_packed(self) -> bool:
        return self.__dict__.get("_quanto_layout") == "packed_w8a8"

    def _requantize_from(self, value: torch.Tensor):
        """Replaces the frozen weight by `value` (float, the module's weight layout) quantized again
        with the module's qtype, group size and optimizer: what merging a LoRA adapter needs."""
        if getattr(self.optimizer, "needs_calibration", False):
            raise ValueError(
                f"{self.name!r}: its weight was quantized with the {type(self.optimizer).__name__} optimizer, which "
                "needs calibration data, so it cannot be re-quantized from new float values (e.g. a LoRA merge); "
                "keep the adapter unmerged, or quantize this module with minmax/hqq before merging")
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise TypeError(f"{self.name!r}: a new weight must be a float tensor, got {value!r:.80}")
        shape = tuple(self._float_weight(torch.empty(self._quanto_qshape, device="meta")).shape)
        if tuple(value.shape) != shape:
            raise ValueError(f"{self.name!r}: a new weight must have shape {list(shape)}, got {list(value.shape)}")
        w = self._canonical_weight(value.detach()).to(self.weight_scale.dtype).to(self.weight_scale.device)
        with torch.no_grad():
            t = quantize_weight(w.contiguous(), self.weight_qtype, self.weight_group_size, self.optimizer)
        self._set_frozen(t)

    def _held_weight(self) -> List[torch.Tensor]:
        """The frozen weight's tensors as held in memory: data (in _quanto_layout), scale[, shift]."""
        # From _buffers directly: nn.Module.__getattr__ per tensor was a tenth of a small layer's call.
        b = self._buffers
        return ([b["weight_data"], b["weight_scale"], b["weight_shift"]] if self.weight_qtype.bits < 8 else
                [b["weight_data"], b["weight_scale"]])

    def _weight_in_layout(self, layout: str) -> torch.Tensor:
        """The frozen weight's data converted (exactly) to another layout by the weights layer."""
        if layout == self._quanto_layout:
            return self.weight_data
        return ops.weight_relayout(self._held_weight(), self.weight_qtype.name, list(self._quanto_qshape),
                                   self.weight_group_size, self._quanto_layout, layout)

    def canonical_weight_tensors(self) -> Dict[str, torch.Tensor]:
        """The frozen weight in the canonical layout (docs/format.md), whatever its in-memory one."""
        if not self.frozen:
            raise ValueError(f"{type(self).__name__} {self.name!r} is not frozen: its weight is not quantized yet")
        t = {"data": self._weight_in_layout("canonical"), "scale": self.weight_scale}
        if self.weight_qtype.bits < 8:
            t["shift"] = self.weight_shift
        return t

    def dequantized_weight(self) -> torch.Tensor:
        """The out-first float weight the frozen quantized weight stands for."""
        return dequantize_weight(self.canonical_weight_tensors(), self.weight_qtype, self.weight_group_size,
                                 self._quanto_qshape)

    def _set_frozen(self, t: Dict[str, torch.Tensor], layout: str = "canonical"):
        """Installs frozen tensors whose data is in ``layout`` (canonical by default), converted to the
        layout the weights layer picks for their device."""
        self._parameters.pop("weight", None)
        self.register_buffer("weight_data", t["data"], persistent=False)
        self.register_buffer("weight_scale", t["scale"], persistent=False)
        if "shift" in t:
            self.register_buffer("weight_shift", t["shift"], persistent=False)
        self._quanto_layout = layout
        self._quanto_frozen = True
        self._relayout()

    def _in_device_layout(self, t: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], str]:
        """Canonical frozen tensors with their data converted to the layout the weights layer picks
        for their device, and that layout: what ``_set_frozen(t)`` would hold, without installing it."""
        layout = self._layout_for(t["data"].device)
        if layout == "canonical":
            return t, layout
        parts = [t["data"], t["scale"]] + ([t["shift"]] if "shift" in t else [])
        data = ops.weight_relayout(parts, self.weight_qtype.name, list(self._quanto_qshape), self.weight_group_size,
                                   "canonical", layout)
        return dict(t, data=data), layout

    def _expected_shapes(self) -> Dict[str, Tuple[int, ...]]:
        data, scale = ops.weight_stored_shapes(self.weight_qtype.name, list(self._quanto_qshape),
                                               self.weight_group_size)
        shapes = {"data": tuple(data), "scale": tuple(scale)}
        if self.weight_qtype.bits < 8:
            shapes["shift"] = tuple(scale)
        return shapes

    def _empty_frozen(self):
        """Frozen buffers of the right shapes, without data (requantize fills them)."""
        w = self._parameters["weight"]
        exp = self._expected_shapes()
        bits = self.weight_qtype.bits
        data_dtype = self.weight_qtype.dtype if bits == 8 else torch.uint8
        t = {"data": torch.empty(exp["data"], dtype=data_dtype, device=w.device),
             "scale": torch.empty(exp["scale"], dtype=w.dtype, device=w.device)}
        if bits < 8:
            t["shift"] = torch.empty(exp["shift"], dtype=w.dtype, device=w.device)
        self._set_frozen(t)

    def freeze(self):
        """Replace the float weight by its quantized form (no-op when there is nothing to freeze)."""
        if self.weight_qtype is None or self.frozen:
            return
        w = self._parameters["weight"]
        if w.is_meta:
            raise ValueError(
                f"freeze: the weight of {self.name!r} is on the meta device (it holds no data); load real "
                "weights first, or use quanto.requantize to load quantized ones"
            )
        if getattr(self.optimizer, "needs_calibration", False):
            self._freeze_calibrated(w)
            return
        with torch.no_grad():
            t = quantize_weight(self._canonical_weight(w).contiguous(), self.weight_qtype, self.weight_group_size,
                                self.optimizer)
        self._set_frozen(t)

    # --- optimizers that need calibration (GPTQ) ------------------------------------------------

    def _accumulate_hessian(self, x: torch.Tensor):
        """Inside Calibration: add X^T X of this input (float64) for a calibrated optimizer."""
        with torch.no_grad():
            cached = _last_xtx[0]
            if cached is not None and cached[0]() is x and cached[1] == x._version:
                xtx, rows = cached[2], cached[3]  # layers reading one tensor (q/k/v_proj) share the product
            else:
                x2 = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
                xtx, rows = x2.T @ x2, x2.shape[0]
                _last_xtx[0] = (weakref.ref(x), x._version, xtx, rows)
            h = self.__dict__.get("_quanto_hessian")
            # Never accumulate in place: the first product may be shared with other layers.
            self.__dict__["_quanto_hessian"] = xtx if h is None else h + xtx
            self.__dict__["_quanto_hessian_rows"] = self.__dict__.get("_quanto_hessian_rows", 0) + rows

    def _freeze_calibrated(self, w: torch.Tensor):
        check_ready = getattr(self.optimizer, "check_ready", None)  # AWQ: the model-level step ran
        if check_ready is not None:
            check_ready(self)
        _last_xtx[0] = None  # calibration is over: release the cached product
        h = self.__dict__.get("_quanto_hessian")
        if h is None:
            raise ValueError(
                f"freeze: module {self.name!r} uses the {type(self.optimizer).__name__} optimizer, which needs "
                "calibration data: run sample batches through the model inside `with quanto.Calibration():` "
                "before freeze")
        with torch.no_grad():
            hessian = 2.0 * h / self.__dict__["_quanto_hessian_rows"]
            codes, scale, shift = self.optimizer.quantize(self._canonical_weight(w).detach().contiguous(),
                                                          hessian.to(w.device), self.weight_qtype,
                                                          self.weight_group_size)
            t = {"data": ops.pack_codes(codes, self.weight_qtype.bits), "scale": scale, "shift": shift}
        del self.__dict__["_quanto_hessian"], self.__dict__["_quanto_hessian_rows"]
        self._set_frozen(t)

    def _fake_quantized_weight(self) -> torch.Tensor:
        """Before freeze: the weight quantized then dequantized, with straight-through gradients
        (inside Calibration, a module whose optimizer needs calibration runs its float weight)."""
        w = self._parameters["weight"]
        if calibration_momentum() is not None and getattr(self.optimizer, "needs_calibration", False):
            return w
        with torch.no_grad():
            wc = self._canonical_weight(w.detach()).contiguous()
            t = quantize_weight(wc, self.weight_qtype, self.weight_group_size, self.optimizer)
            wq = self._float_weight(dequantize_weight(t, self.weight_qtype, self.weight_group_size, wc.shape))
        return _straight_through(w, wq.to(w.dtype))

    # --- activations --------------------------------------------------------------------------

    def _quantize_activation(self, x: torch.Tensor, scale: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(codes, float value) of x quantized per tensor with a static scale."""
        data = ops.symmetric_quantize(x.detach(), scale, self.activation_qtype.name)
        return data, ops.symmetric_dequantize(data, scale).to(x.dtype)

    @staticmethod
    def _update_scale(buffer: torch.Tensor, new: torch.Tensor, momentum: float):
        new = new.to(buffer.dtype)
        buffer.copy_(torch.where(buffer == 1, new, momentum * buffer + (1.0 - momentum) * new))

    def _quanto_input(self, x):
        """Returns (x to use, (codes, scale) or None)."""
        calibration_begin_read(self)  # until _quanto_output: ops on x are this module's read
        if (getattr(self.optimizer, "needs_calibration", False) and not self.frozen and isinstance(x, torch.Tensor)
                and calibration_momentum() is not None):
            self._accumulate_hessian(x)
        a = self.activation_qtype
        if a is None or not isinstance(x, torch.Tensor) or not x.is_floating_point():
            return x, None
        if self.dynamic_activations:
            # Scales from this input, per token: nothing to calibrate, whatever produced x.
            if not self._quantize_input or x.numel() == 0:
                return x, None
            if (self.frozen and getattr(self, "_linear_weight", False) and has_int8_activation_kernel(self)
                    and not (torch.is_grad_enabled() and x.requires_grad)):
                # The integer kernel reads only the codes, and no gradient needs the dequantized
                # copy: the linear op quantizes x itself (ops.weight_linear_dynamic).
                return x, PER_TOKEN
            with torch.no_grad():
                data, scale, xq = quantize_per_token(x.detach(), a.name)
            return _straight_through(x, xq), (data, scale)
        momentum = calibration_momentum()
        if momentum is not None:
            tag = getattr(x, "_quanto_activation", None)
            with torch.no_grad():
                if tag is not None:
                    if tag[0] != a.name:
                        raise ValueError(
                            f"{self.name!r}: models with heterogeneous quantized activations are not supported: "
                            f"expected {a.name} input, got {tag[0]}"
                        )
                    self.input_scale.copy_(tag[1])
                    calibration_note_read(tag[2])
                else:
                    self._update_scale(self.input_scale, ops.absmax_scale(x.detach(), a.name), momentum)
        if not self._quantize_input:
            return x, None
        scale = self.input_scale
        grid = activation_grid(x) if momentum is None else None
        if grid is not None and grid[0] == a.name:
            # x is a quantized module's output still on its grid: read it as it is, like
            # optimum-quanto (quantizing with its own scale gives back its codes).
            scale = grid[1]
        data, xq = self._quantize_activation(x, scale)
        return _straight_through(x, xq), (data, scale)

    def _quanto_output(self, y):
        calibration_end_read(self)
        a = self.activation_qtype
        if a is None or self.dynamic_activations or not isinstance(y, torch.Tensor) or not y.is_floating_point():
            return y
        momentum = calibration_momentum()
        if momentum is None and not self.quantizes_output:
            return y
        if momentum is not None:
            with torch.no_grad():
                self._update_scale(self.output_scale, ops.absmax_scale(y.detach(), a.name), momentum)
        _, yq = self._quantize_activation(y, self.output_scale)
        yq = _straight_through(y, yq)
        if momentum is not None:
            # During calibration every output is quantized; a quantized module reading it adopts
            # this scale and marks this module as read (calibrate.py).
            yq._quanto_activation = (a.name, self.output_scale.detach().clone(), (self,))
            calibration_note_output(self)
            return yq
        return QuantizedActivation.wrap(yq, (a.name, self.output_scale))

    @property
    def quantizes_output(self) -> bool:
        """Whether forward quantizes the output (False once streamlined off by Calibration, and
        for dynamic activations)."""
        return self.__dict__.get("_quanto_quantize_output", True) and not self.__dict__.get("dynamic_activations")

    # --- device / dtype -----------------------------------------------------------------------

    def _apply(self, fn, *args, **kwargs):
        # The in-memory layout follows the device (and its kernels): when the destination gets
        # another one, the weight goes back to the canonical layout before the move and into the
        # destination's after it (exact both ways).
        relayout = self.frozen and self.weight_qtype is not None
        if relayout:
            data = self._buffers["weight_data"]
            target = self._layout_for(fn(torch.empty(0, dtype=torch.float32, device=data.device)).device)
            relayout = target != self._quanto_layout
        if relayout and self._quanto_layout != "canonical":
            self._buffers["weight_data"] = self._weight_in_layout("canonical")
            self._quanto_layout = "canonical"
        # Module.to(dtype) would cast float8 weight codes like any floating tensor: move them only.
        held = {k: b for k, b in self._buffers.items() if b is not None and b.dtype in _FLOAT8}
        for k in held:
            self._buffers[k] = None
        try:
            result = super()._apply(fn, *args, **kwargs)
        finally:
            for k, b in held.items():
                self._buffers[k] = b
        for k, b in held.items():
            device = fn(torch.empty(0, dtype=torch.float32, device=b.device)).device
            if device != b.device:
                self._buffers[k] = torch.empty_like(b, device=device) if b.is_meta else b.to(device)
        if relayout:
            self._relayout()
        return result

    def _relayout(self):
        """Converts canonical frozen data to the layout its device gets."""
        layout = self._layout_for(self._buffers["weight_data"].device)
        if layout != self._quanto_layout:
            self._buffers["weight_data"] = self._weight_in_layout(layout)
            self._quanto_layout = layout

    # --- state dict ---------------------------------------------------------------------------

    def _weight_keys(self) -> Dict[str, str]:
        """Module-relative state-dict keys of the weight's format, by part (data, scale, shift)."""
        return dict(zip(("data", "scale", "shift"), ops.weight_state_keys(self.weight_qtype.name)))

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.frozen:
            keys = self._weight_keys()
            for part, t in self.canonical_weight_tensors().items():
                destination[prefix + keys[part]] = t if keep_vars else t.detach()
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        if self.weight_qtype is not None:
            keys = {part: prefix + k for part, k in self._weight_keys().items()}
            present = {part: k for part, k in keys.items() if k in state_dict}
            float_key = prefix + "weight"
            if keys["data"] not in state_dict:
                other_qtype = "qint8" if self.weight_qtype.bits < 8 else "qint4"
                other = ops.weight_state_keys(other_qtype)[0]
                if prefix + other in state_dict:
                    kind = "an 8-bit" if self.weight_qtype.bits < 8 else "a 2/4-bit"
                    raise ValueError(f"{prefix + other}: the state dict holds {kind} quantized weight for "
                                     f"{prefix[:-1]!r}, but the module is quantized to {self.weight_qtype.name}; "
                                     "does the quantization map match the file?")
            if present and float_key in state_dict:
                raise ValueError(f"state dict holds both {float_key!r} and quantized {sorted(present.values())}")
            if present:
                missing = [k for k in keys.values() if k not in state_dict]
                if missing:
                    missing_keys.extend(missing)
                    for k in present.values():
                        state_dict.pop(k)
                else:
                    self._load_frozen({part: state_dict.pop(k) for part, k in keys.items()}, prefix)
            elif float_key in state_dict and self.frozen:
                self._unfreeze_for(state_dict[float_key])
            elif self.frozen:
                missing_keys.extend(keys.values())
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def _load_frozen(self, t: Dict[str, torch.Tensor], prefix: str):
        self._set_frozen(self._checked_frozen(t, prefix))

    def _checked_frozen(self, t: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
        """Canonical quantized tensors read from a file (``{part: tensor}``), checked against this
        module's qtype, shapes and dtypes, contiguous on the module's device (the data's while the
        module is on meta); raises ValueError naming the key otherwise."""
        wtype, exp = self.weight_qtype, self._expected_shapes()
        keys = self._weight_keys()
        data_dtype = wtype.dtype if wtype.bits == 8 else torch.uint8
        for part, v in t.items():
            key = prefix + keys[part]
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"{key}: expected a tensor, got {type(v).__name__}")
            if v.is_meta:
                raise ValueError(f"{key} is a meta tensor: it holds no data to load")
            if tuple(v.shape) != tuple(exp[part]):
                raise ValueError(
                    f"{key}: shape {list(v.shape)} does not match {list(exp[part])} expected for a {wtype.name} "
                    f"weight of shape {list(self._quanto_qshape)} (group size {self.weight_group_size}); "
                    "does the quantization map match the model?"
                )
        if t["data"].dtype != data_dtype:
            raise ValueError(
                f"{prefix + keys['data']}: dtype {t['data'].dtype} is not {data_dtype}, the storage of {wtype.name}; "
                "does the quantization map match the model?"
            )
        if not t["scale"].is_floating_point():
            raise ValueError(f"{prefix + keys['scale']}: a scale must be floating point, got {t['scale'].dtype}")
        if "shift" in t and not (t["shift"].is_floating_point() or t["shift"].dtype == torch.uint8):
            raise ValueError(f"{prefix + keys['shift']}: a shift must be floating point or uint8 (zero-point), "
                             f"got {t['shift'].dtype}")
        device = self.input_scale.device
        if device.type == "meta":
            device = t["data"].device
        return {part: v.detach().to(device).contiguous() for part, v in t.items()}

    def _unfreeze_for(self, w: torch.Tensor):
        """A float weight is loaded into a frozen module: it becomes a trainable (unfrozen) weight again."""
        for k in _FROZEN_BUFFERS:
            self._buffers.pop(k, None)
        self._quanto_frozen = False
        self._quanto_layout = "canonical"
        device = self.input_scale.device
        self._parameters["weight"] = torch.nn.Parameter(torch.empty(w.shape, dtype=w.dtype, device=device))

    def extra_repr(self) -> str:
        base = super().extra_repr()
        q = [f"weights={self.weight_qtype.name if self.weight_qtype else None}",
             f"activations={self.activation_qtype.name if self.activation_qtype else None}"
             + (" (dynamic)" if self.dynamic_activations else "")]
        if self.weight_group_size:
            q.append(f"group_size={self.weight_group_size}")
        if self.activation_qtype is not None and not self.quantizes_output:
            q.append("quantize_output=False")
        if self.frozen:
            q.append("frozen")
        return ", ".join(([base] if base else []) + q)


def is_w8a8(m: QModuleMixin) -> bool:
    """int8 weights and int8 activations, static or dynamic: the integer W8A8 kernels."""
    return m.weight_qtype is qint8 and m.activation_qtype is qint8


# _quanto_input's answer for a frozen linear layer with dynamic int8 activations: the linear op
# (ops.weight_linear_dynamic) quantizes x per token itself, one op call instead of two.
PER_TOKEN = "per_token"


def has_int8_activation_kernel(m: QModuleMixin) -> bool:
    """int8 activations (static or dynamic) times int8 (W8A8) or 4-bit (W4A8) weights: the int8
    activation codes go to the integer kernels as they are (ops.weight_linear_w8a8)."""
    return m.activation_qtype is qint8 and (m.weight_qtype is qint8 or m.weight_qtype is qint4)
