"""Export a quanto checkpoint to compressed-tensors (what vLLM, llm-compressor and transformers read).

Only what has an exact equivalent is mapped; the exported weights then decompress to exactly
quanto's dequantized weights (compressed-tensors computes ``(q - zero_point) * scale`` in the
scale's dtype, with one rounding, as quanto does):

| quanto weight (Linear layers) | compressed-tensors |
| --- | --- |
| qint4 / qint2, integer zero-point, all zero-points = 2^(bits-1) | ``pack-quantized``, int, symmetric |
| qint4 / qint2, integer zero-point | ``pack-quantized``, int, asymmetric (``weight_zero_point``) |
| qint8 (symmetric, per output channel) | ``pack-quantized``, int8, symmetric, channel |
| qfloat8_e4m3fn (per output channel) | ``naive-quantized``, float8, channel |

Dynamic per-token activations (``dynamic_activations`` in quanto_qmap.json) become
``input_activations`` ``{num_bits: 8, strategy: token, dynamic: true, symmetric: true}`` (int with
integer weights, float with qfloat8_e4m3fn weights), the schemes vLLM runs as W8A8 / W4A8 / FP8
dynamic: formats ``int-quantized`` (the signed integer codes as an int8 ``weight``, not packed) and
``float-quantized``, which compressed-tensors infers for schemes that quantize activations. quanto
scales each token by its absmax / 127 (float8: / 448), as those schemes do.

Groups of ``gs`` input features become strategy ``group`` with ``group_size: gs``; one group per row
(per output channel, or ``gs == in_features``) becomes strategy ``channel``. The formats are the ones
compressed-tensors itself infers for such weight-only schemes (``int-quantized`` / ``float-quantized``
are its names for schemes that also quantize activations).

Tensors of a module ``m`` (compressed-tensors 0.20's layout):

- ``m.weight_packed``: int32 ``[out, ceil(in * bits / 32)]``; the unsigned value ``q + 2^(bits-1)``
  (= quanto's code) of element ``j`` of a row sits at bits ``j * bits`` of the row's little-endian
  32-bit words;
- ``m.weight_scale``: the scale's dtype, ``[out, in / gs]`` (``[out, 1]`` per channel);
- ``m.weight_zero_point`` (asymmetric only): the zero-points ``zp - 2^(bits-1)`` packed the same way
  along the output dimension, int32 ``[ceil(out * bits / 32), in / gs]``;
- ``m.weight_shape``: int64 ``[out, in]``;
- float8: ``m.weight`` (float8_e4m3fn) and ``m.weight_scale`` ``[out, 1]``;
- ``int-quantized``: ``m.weight`` int8 ``[out, in]`` (``q``, signed), ``m.weight_scale`` as above and,
  asymmetric, ``m.weight_zero_point`` int8 ``[out, in / gs]`` (``zp - 2^(bits-1)``).

``config.json`` gets ``quantization_config`` (``quant_method: compressed-tensors``, one
``config_groups`` entry per distinct scheme, whose ``targets`` are module names or anchored ``re:``
patterns matching exactly that group's modules, ``ignore`` listing every float Linear layer) and
``dtype``: the scales' dtype, which compressed-tensors gives the parameters it creates.

Refused (``ExportRefused``), with the way out in the message:

- a float shift (quanto's min/max, HQQ and GPTQ default for qint2/qint4): ``code * scale - shift``
  has no integer zero-point equivalent. Re-quantize with ``optimizer="zeropoint"`` or
  ``"symmetric"``, or pass ``allow_reencode=True``: the shift is rounded to the integer zero-point
  ``round(shift / scale)`` and quanto's dequantized weight is quantized again with the same scales;
- qfloat8_e5m2 / qfloat8_e4m3fnuz: compressed-tensors has float8 e4m3fn only; ``allow_reencode``
  quantizes quanto's dequantized weight to qfloat8_e4m3fn (absmax per channel);
- quantized non-Linear modules (embeddings, convolutions): ``allow_reencode`` writes their
  dequantized weight as float (exact, uncompressed);
- static activation quantization (``activations`` in quanto_qmap.json): quanto's calibrated
  per-tensor input *and output* scales have no compressed-tensors equivalent; quantize weights only.

Every re-encoded layer is listed in the report with its added error (max absolute difference to
quanto's dequantized weight).
"""

import json
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ._checkpoint import FILES, QuantizedWeight, QuantoCheckpoint, codes_2d, dequantized, iter_float_tensors, params_2d
from ._output import fsync_file
from ._report import ExportRefused, ExportReport, LayerReport
from ._safetensors_stream import write_streaming

ops = torch.ops.quanto

__all__ = ["export_compressed_tensors", "pack_int32", "FLOAT_SHIFT_ALTERNATIVES"]

# The compressed-tensors release whose layout and config schema this exporter follows.
CT_FORMAT_VERSION = "0.20.0"
PACK, NAIVE = "pack-quantized", "naive-quantized"
INT_Q, FLOAT_Q = "int-quantized", "float-quantized"  # the same layouts as naive, for schemes with activations

# How a user gets weights that export exactly (named in every float-shift refusal).
FLOAT_SHIFT_ALTERNATIVES = (
    "re-quantize with an integer zero-point: in Python quantize(..., optimizer=\"zeropoint\") (min/max) or "
    "optimizer=\"symmetric\" (symmetric int4/int2: the layout vLLM's fastest kernels want), in the CLI "
    "quanto quantize --zero-point or --optimizer symmetric, in C++ quanto::Config::zero_point = true (or "
    "optimizer \"symmetric\"); or pass allow_reencode=True (--allow-reencode) to round each shift to an "
    "integer zero-point and re-quantize, with the added error reported per layer")
STATIC_ACTIVATIONS_ALTERNATIVE = (
    "quanto's calibrated static per-tensor activation scales (input and output) have no compressed-tensors "
    "equivalent; quantize the weights only (activations=None, the CLI's default) or with per-token activations "
    "(dynamic_activations=True, the CLI's --dynamic-activations), which export as compressed-tensors' dynamic "
    "token schemes")


# --- packing (compressed-tensors' dense int32 layout) ----------------------------------------------

def pack_int32(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned ``bits``-bit codes ``[rows, cols]`` -> int32 ``[rows, ceil(cols * bits / 32)]``: code ``j``
    of a row at bits ``j * bits`` of the row's little-endian 32-bit words (bits divides 8 here, so codes
    are packed into bytes first and four bytes make a word)."""
    if sys.byteorder != "little":
        raise ValueError("export: compressed-tensors words are little-endian; run the export on a little-endian host")
    per_byte, per_word = 8 // bits, 32 // bits
    rows, cols = codes.shape
    words = -(-cols // per_word)
    c = codes.to(torch.uint8)
    if words * per_word != cols:
        c = torch.nn.functional.pad(c, (0, words * per_word - cols))
    c = c.reshape(rows, words * 4, per_byte)
    packed = c[..., 0].clone()
    for j in range(1, per_byte):
        packed |= c[..., j] << (bits * j)
    return packed.contiguous().view(torch.int32)


def _decode(q: torch.Tensor, zp: torch.Tensor, scale: torch.Tensor, group_size: int) -> torch.Tensor:
    """compressed-tensors' dequantization ``(q - zp) * scale`` in the scale's dtype, per group."""
    out, cols = q.shape
    dtype = scale.dtype
    diff = (q.to(dtype).reshape(out, cols // group_size, group_size)
            - zp.to(dtype).reshape(out, -1, 1))
    return (diff * scale.reshape(out, -1, 1)).reshape(out, cols)


# --- planning ---------------------------------------------------------------------------------------

class _ModulePlan:
    """How one quantized module is exported: ``kind`` "pack", "fp8" or "float"; ``reencode`` says why
    it is not a plain copy of quanto's numbers (None when it is)."""

    def __init__(self, qw: QuantizedWeight, kind: str, reencode: Optional[str] = None):
        self.qw, self.kind, self.reencode = qw, kind, reencode
        self.symmetric = True
        self.row_as_group = False  # one group per row written as strategy "group" (see _plan_modules)

    @property
    def bits(self) -> int:
        return self.qw.weights.bits

    @property
    def group_size(self) -> int:
        """Input features per scale (in_features for one scale per row)."""
        return self.qw.group_size or self.qw.in_features

    @property
    def unpacked(self) -> bool:
        """Integer weights with quantized activations: compressed-tensors' int-quantized layout."""
        return self.kind == "pack" and self.qw.dynamic_activations is not None

    def input_activations(self) -> Optional[dict]:
        a = self.qw.dynamic_activations
        if a is None:
            return None
        return {"num_bits": 8, "type": "float" if a.is_floating_point else "int", "symmetric": True,
                "strategy": "token", "group_size": None, "dynamic": True, "observer": None}

    def format(self) -> str:
        if self.kind == "fp8":
            return NAIVE if self.qw.dynamic_activations is None else FLOAT_Q
        return INT_Q if self.unpacked else PACK

    def scheme(self) -> Optional[dict]:
        if self.kind == "float":
            return None
        per_row = self.group_size == self.qw.in_features and not self.row_as_group
        weights = {"num_bits": 8 if self.kind == "fp8" else self.bits,
                   "type": "float" if self.kind == "fp8" else "int",
                   "symmetric": self.symmetric,
                   "strategy": "channel" if per_row else "group",
                   "group_size": None if per_row else self.group_size,
                   "dynamic": False}
        return {"weights": weights, "input_activations": self.input_activations(), "output_activations": None,
                "format": self.format()}

    def source(self) -> str:
        w = self.qw.weights
        if w.bits == 8:
            return w.name
        g = f"g{self.qw.group_size}" if self.qw.group_size else "per-channel"
        return f"{w.name} {g} {'zero-point' if self.qw.zero_point else 'float shift'}"

    def target(self) -> str:
        if self.kind == "float":
            return "float (dequantized)"
        s = self.scheme()["weights"]
        where = f"group {s['group_size']}" if s["group_size"] else "channel"
        kind = "float8_e4m3fn" if self.kind == "fp8" else f"int{s['num_bits']}"
        acts = "" if self.qw.dynamic_activations is None else f", dynamic per-token {self.qw.dynamic_activations.name}"
        return f"{self.scheme()['format']} {kind} {where} {'symmetric' if s['symmetric'] else 'asymmetric'}{acts}"


def _plan_modules(ckpt: QuantoCheckpoint, allow_reencode: bool) -> List[_ModulePlan]:
    plans, problems = [], defaultdict(list)
    for qw in ckpt.modules.values():
        if qw.activations is not None:
            problems["static activations (" + STATIC_ACTIVATIONS_ALTERNATIVE + ")"].append(qw.name)
            continue
        w, dyn = qw.weights, qw.dynamic_activations
        if dyn is not None and (not qw.is_linear or w is None or (dyn.name == "qint8") != (not w.is_floating_point)
                                or dyn.name not in ("qint8", "qfloat8_e4m3fn")):
            problems["dynamic activations that compressed-tensors' schemes do not pair with these weights (it has "
                     "int8 activations with integer weights and float8 e4m3fn activations with float8 weights, on "
                     "Linear layers): quantize with a matching pair, or weight-only"].append(
                f"{qw.name} ({w.name if w else 'no weights'} + {dyn.name})")
            continue
        if not qw.is_linear:
            if allow_reencode:
                plans.append(_ModulePlan(qw, "float", "compressed-tensors quantizes Linear layers only: "
                                                      "stored dequantized"))
            else:
                problems[f"quantized non-Linear modules (compressed-tensors quantizes Linear layers; pass "
                         f"allow_reencode=True to store them dequantized, or exclude them from quantization)"
                         ].append(f"{qw.name} ({qw.module_type})")
            continue
        if w.name == "qint8":
            plans.append(_ModulePlan(qw, "pack"))
        elif w.bits < 8 and qw.zero_point:
            plans.append(_ModulePlan(qw, "pack"))
        elif w.bits < 8:
            if allow_reencode:
                plans.append(_ModulePlan(qw, "pack", "float shift rounded to an integer zero-point, re-quantized"))
            else:
                problems[f"{w.name} weights with a float shift (quanto's default for qint2/qint4, also HQQ's and "
                         f"GPTQ's): code * scale - shift has no integer zero-point equivalent; "
                         + FLOAT_SHIFT_ALTERNATIVES].append(qw.name)
        elif w.name == "qfloat8_e4m3fn":
            plans.append(_ModulePlan(qw, "fp8"))
        else:
            if allow_reencode:
                plans.append(_ModulePlan(qw, "fp8", f"{w.name} re-quantized to qfloat8_e4m3fn"))
            else:
                problems[f"{w.name} weights (compressed-tensors has float8 e4m3fn only: quantize with qfloat8 / "
                         f"--weights float8, or pass allow_reencode=True to re-quantize to qfloat8_e4m3fn)"
                         ].append(qw.name)
    if problems:
        lines = [f"cannot export {str(ckpt.folder)!r} to compressed-tensors exactly:"]
        for why, names in problems.items():
            shown = ", ".join(names[:6]) + (f", ... ({len(names)} modules)" if len(names) > 6 else "")
            lines.append(f"  - {shown}: {why}")
        raise ExportRefused("\n".join(lines))
    # Symmetric when every zero-point of that width is the middle code: decided per bit width for
    # the whole model, so layers vLLM fuses (q/k/v, gate/up) share one scheme.
    for bits in {p.bits for p in plans if p.kind == "pack"}:
        same = [p for p in plans if p.kind == "pack" and p.bits == bits]
        symmetric = all(p.bits == 8 or (p.reencode is None and _all_middle(ckpt, p)) for p in same)
        for p in same:
            p.symmetric = symmetric
    # One scale per row is both strategy "channel" and "group" with group_size = in_features. Where
    # other layers use that group size, "group" puts both in one config group: fewer schemes, and
    # transformers' dequantize=True loading path applies a single scheme to every dense layer.
    group_sizes = {p.group_size for p in plans if p.kind == "pack" and p.group_size < p.qw.in_features}
    for p in plans:
        if p.kind == "pack" and p.bits < 8 and p.group_size == p.qw.in_features and p.group_size in group_sizes:
            p.row_as_group = True
    return plans


def _all_middle(ckpt: QuantoCheckpoint, plan: _ModulePlan) -> bool:
    zp = ckpt.get(plan.qw.keys["shift"])
    return bool((zp == 2 ** (plan.bits - 1)).all())


def _generalize(name: str) -> str:
    """An anchored regex for ``name`` with every numeric part (a layer index) replaced by ``\\d+``."""
    return r"\.".join(r"\d+" if part.isdigit() else re.escape(part) for part in name.split(".")) + "$"


def _targets(members: List[str], linear_names: List[str]) -> List[str]:
    """Targets matching exactly ``members`` among the model's Linear layers: ``re:`` patterns where
    generalizing the layer index matches nothing else, names otherwise (compressed-tensors and vLLM
    take a target as a name, a class name or ``re:`` + a regex matched from the start of the name)."""
    by_pattern: Dict[str, List[str]] = defaultdict(list)
    for n in members:
        by_pattern[_generalize(n)].append(n)
    targets = []
    for pattern, names in by_pattern.items():
        rx = re.compile(pattern)
        if len(names) > 1 and {n for n in linear_names if rx.match(n)} == set(names):
            targets.append("re:" + pattern)
        else:
            targets.extend(names)
    return targets


def _quantization_config(ckpt: QuantoCheckpoint, plans: List[_ModulePlan]) -> dict:
    groups: Dict[str, List[_ModulePlan]] = defaultdict(list)
    for p in plans:
        if p.kind != "float":
            groups[json.dumps(p.scheme(), sort_keys=True)].append(p)
    linear_names = [n for n, m in ckpt.float_model().named_modules() if isinstance(m, torch.nn.Linear)]
    config_groups = {}
    for i, (key, members) in enumerate(groups.items()):
        scheme = json.loads(key)
        scheme["targets"] = _targets([p.qw.name for p in members], linear_names)
        config_groups[f"group_{i}"] = scheme
    quantized = {p.qw.name for p in plans if p.kind != "float"}
    formats = {g["format"] for g in config_groups.values()}
    return {
        "quant_method": "compressed-tensors",
        "format": formats.pop() if len(formats) == 1 else "mixed-precision",
        "quantization_status": "compressed",
        "config_groups": config_groups,
        "ignore": [n for n in linear_names if n not in quantized],
        "kv_cache_scheme": None,
        "global_compression_ratio": None,
        "sparsity_config": {},
        "version": CT_FORMAT_VERSION,
    }


# --- tensors ----------------------------------------------------------------------------------------

class _ModuleTensors:
    """Produces a module's exported tensors one at a time, each read from the checkpoint when asked for."""

    def __init__(self, ckpt: QuantoCheckpoint, plan: _ModulePlan, report: ExportReport):
        self.ckpt, self.plan, self.report = ckpt, plan, report

    def plan_entries(self) -> List[Tuple[str, torch.dtype, List[int], Callable[[], torch.Tensor]]]:
        qw, p, name = self.plan.qw, self.plan, self.plan.qw.name
        dtype = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}[
            self.ckpt.get_slice_info(qw.keys["scale"])[0]]
        out, cols = qw.out_features, qw.in_features
        if p.kind == "float":
            shape = list(qw.shape) if qw.module_type != "Conv1D" else [qw.shape[1], qw.shape[0]]
            return [(f"{name}.weight", dtype, shape, self.float_weight)]
        groups = cols // p.group_size
        if p.kind == "fp8":
            return [(f"{name}.weight", torch.float8_e4m3fn, [out, cols], self.fp8_weight),
                    (f"{name}.weight_scale", dtype, [out, 1], self.fp8_scale)]
        if p.unpacked:
            entries = [(f"{name}.weight", torch.int8, [out, cols], self.int8_weight),
                       (f"{name}.weight_scale", dtype, [out, groups], self.scale)]
            if not p.symmetric:
                entries.append((f"{name}.weight_zero_point", torch.int8, [out, groups], self.int8_zero_point))
            return entries
        per_word = 32 // p.bits
        entries = [(f"{name}.weight_packed", torch.int32, [out, -(-cols // per_word)], self.packed),
                   (f"{name}.weight_scale", dtype, [out, groups], self.scale),
                   (f"{name}.weight_shape", torch.int64, [2], lambda: torch.tensor([out, cols], dtype=torch.int64))]
        if not p.symmetric:
            entries.append((f"{name}.weight_zero_point", torch.int32, [-(-out // per_word), groups], self.zero_point))
        return entries

    # quanto's numbers, re-encoded where the plan says so

    def _state(self):
        return self.ckpt.weight_state(self.plan.qw)

    def _zp(self, state) -> torch.Tensor:
        """Unsigned integer zero-points [out, groups] (the middle code for 8-bit weights)."""
        qw = self.plan.qw
        if qw.weights.bits == 8:
            return torch.full((qw.out_features, 1), 128, dtype=torch.uint8)
        zp = state["shift"]
        if zp.dtype != torch.uint8:  # float shift, re-encoded
            zp = ops.shift_to_zeropoint(state["scale"], zp, qw.weights.name)
        return params_2d(zp, qw)

    def scale(self) -> torch.Tensor:
        return params_2d(self.ckpt.get(self.plan.qw.keys["scale"]), self.plan.qw).contiguous()

    def zero_point(self) -> torch.Tensor:
        zp = self._zp({"shift": self.ckpt.get(self.plan.qw.keys["shift"]),
                       "scale": self.ckpt.get(self.plan.qw.keys["scale"])})
        return pack_int32(zp.t().contiguous(), self.plan.bits).t().contiguous()

    def int8_weight(self) -> torch.Tensor:
        half = 2 ** (self.plan.bits - 1)
        return (self._codes().to(torch.int16) - half).to(torch.int8)

    def int8_zero_point(self) -> torch.Tensor:
        zp = self._zp({"shift": self.ckpt.get(self.plan.qw.keys["shift"]),
                       "scale": self.ckpt.get(self.plan.qw.keys["scale"])})
        return (zp.to(torch.int16) - 2 ** (self.plan.bits - 1)).to(torch.int8).contiguous()

    def packed(self) -> torch.Tensor:
        return pack_int32(self._codes(), self.plan.bits)

    def _codes(self) -> torch.Tensor:
        """The unsigned codes [out, in] (re-encoded where the plan says so), the exported weight recorded."""
        qw, plan = self.plan.qw, self.plan
        state = self._state()
        reference = dequantized(state, qw).reshape(qw.out_features, qw.in_features)
        zp = self._zp(state)
        if qw.weights.bits == 8:
            codes = (state["data"].to(torch.int16) + 128).to(torch.uint8).reshape(qw.out_features, -1)
        else:
            if plan.reencode is not None:
                # Same scales, the shift rounded to an integer zero-point: quanto's dequantized weight
                # quantized again (the weights layer's own quantization, zero-point variant).
                state = dict(zip(("data", "scale", "shift"),
                                 ops.weight_quantize(reference.reshape(qw.shape), qw.weights.name, qw.group_size,
                                                     state["scale"], zp.reshape(state["scale"].shape))))
            codes = codes_2d(state, qw)
        exported = _decode(codes, zp, params_2d(state["scale"], qw), plan.group_size)
        self._record(exported, reference)
        return codes

    def _fp8(self):
        qw, state = self.plan.qw, self._state()
        reference = dequantized(state, qw)
        if self.plan.reencode is not None:
            state = dict(zip(("data", "scale"), ops.weight_quantize(reference, "qfloat8_e4m3fn", None)))
        return state, reference

    def fp8_weight(self) -> torch.Tensor:
        state, reference = self._fp8()
        scale = state["scale"]
        self._record(state["data"].to(scale.dtype) * scale, reference)
        return state["data"].reshape(self.plan.qw.out_features, -1)

    def fp8_scale(self) -> torch.Tensor:
        state, _ = self._fp8() if self.plan.reencode is not None else (self._state(), None)
        return state["scale"].reshape(self.plan.qw.out_features, 1)

    def float_weight(self) -> torch.Tensor:
        qw = self.plan.qw
        w = dequantized(self._state(), qw)
        self._record(w, w)
        return w.t().contiguous() if qw.module_type == "Conv1D" else w

    def _record(self, exported: torch.Tensor, reference: torch.Tensor):
        err = float((exported.float() - reference.float()).abs().max()) if reference.numel() else 0.0
        p = self.plan
        self.report.layers.append(LayerReport(p.qw.name, p.source(), p.target(), err, err == 0.0, p.reencode or ""))


# --- the export -------------------------------------------------------------------------------------

def export_compressed_tensors(ckpt: QuantoCheckpoint, out_dir: Path, allow_reencode: bool,
                              report: ExportReport) -> ExportReport:
    """Writes the compressed-tensors folder for ``ckpt`` into ``out_dir`` (an empty, temporary folder)."""
    plans = _plan_modules(ckpt, allow_reencode)
    if not any(p.kind != "float" for p in plans):
        raise ExportRefused(f"cannot export {str(ckpt.folder)!r} to compressed-tensors: it has no quantized Linear "
                            "layer (compressed-tensors describes quantized Linear layers)")
    qconfig = _quantization_config(ckpt, plans)
    scale_dtype = ckpt.scale_dtype()

    # Each module's tensors go to the shard that held its data, float tensors stay where they were.
    per_shard: Dict[str, List[Tuple[str, torch.dtype, List[int], Callable[[], torch.Tensor]]]] = defaultdict(list)
    for plan in plans:
        for entry in _ModuleTensors(ckpt, plan, report).plan_entries():
            per_shard[ckpt.shard_of(plan.qw.keys["data"])].append(entry)
    for name in iter_float_tensors(ckpt):
        dtype, shape = _torch_dtype(ckpt.get_slice_info(name)[0]), ckpt.get_slice_info(name)[1]
        per_shard[ckpt.shard_of(name)].append((name, dtype, shape, lambda name=name: ckpt.get(name)))
        report.copied_tensors += 1

    shards = [s for s in ckpt.shards if per_shard.get(s)]
    names = [FILES.single] if len(shards) == 1 else [FILES.shard(i, len(shards)) for i in range(len(shards))]
    weight_map, total = {}, 0
    for shard, out_name in zip(shards, names):
        entries = per_shard[shard]
        producers = {n: produce for n, _, _, produce in entries}
        write_streaming(out_dir / out_name, [(n, d, s) for n, d, s, _ in entries],
                        lambda n: producers[n](), metadata={"format": "pt"})
        for n, d, s, _ in entries:
            weight_map[n] = out_name
            total += torch.Size(s).numel() * torch.empty((), dtype=d).element_size()
    if len(names) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        _write_json(out_dir / FILES.index, index)

    config = dict(ckpt.config_dict)
    config["quantization_config"] = qconfig
    if scale_dtype is not None:
        # compressed-tensors creates its scale parameters in the model's dtype: the scales' own keeps them exact.
        config["dtype"] = str(scale_dtype).removeprefix("torch.")
        if "torch_dtype" in config:
            config["torch_dtype"] = config["dtype"]
    _write_json(out_dir / "config.json", config)
    _copy_other_files(ckpt, out_dir)
    _serving_notes(plans, report)
    reencoded = [p.qw.name for p in plans if p.reencode]
    if reencoded:
        report.notes.append(f"{len(reencoded)} modules re-encoded (allow_reencode): their error is listed above")
    return report


# vLLM's kernels for pack-quantized weights (Marlin: its MARLIN_SUPPORTED_GROUP_SIZES and the bit
# widths of CompressedTensorsWNA16). The files are valid either way; these notes say what vLLM serves.
VLLM_GROUP_SIZES = (32, 64, 128)
VLLM_BITS = (4, 8)


def _serving_notes(plans: List[_ModulePlan], report: ExportReport):
    packed = [p for p in plans if p.kind == "pack"]
    odd = sorted({p.group_size for p in packed if p.group_size != p.qw.in_features
                  and p.group_size not in VLLM_GROUP_SIZES})
    if odd:
        report.notes.append(f"group sizes {odd}: vLLM's int4/int8 kernels take groups of 32, 64 or 128 (or one "
                            "scale per row); to serve this with vLLM, quantize with group_size=32, 64 or 128")
    if any(p.bits not in VLLM_BITS for p in packed):
        report.notes.append("2-bit weights: vLLM serves 4- and 8-bit pack-quantized weights; transformers and "
                            "compressed-tensors read these")


def _torch_dtype(name: str) -> torch.dtype:
    from ._safetensors_stream import DTYPE_NAMES

    for dtype, n in DTYPE_NAMES.items():
        if n == name:
            return dtype
    raise ValueError(f"export: safetensors dtype {name} is not supported")


def _write_json(path: Path, value):
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
    fsync_file(path)


def _copy_other_files(ckpt: QuantoCheckpoint, out_dir: Path):
    """Every other file of the checkpoint (generation config, tokenizer, ...) is copied as is."""
    skip = set(ckpt.source_files())
    for path in sorted(ckpt.folder.iterdir()):
        if path.name in skip or FILES.is_weights(path.name) or path.name.startswith("."):
            continue
        if path.is_dir():
            shutil.copytree(path, out_dir / path.name)
        elif path.is_file():
            shutil.copy2(path, out_dir / path.name)
            fsync_file(out_dir / path.name)
