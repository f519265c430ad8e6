"""AWQ (Lin et al., activation-aware weight quantization) for 2/4-bit weights, with quanto's optimizers.

A weight's input channels do not matter equally: those that see large activations carry most of
the layer's output. AWQ multiplies the weight's input channels by factors ``s`` before rounding
(``W diag(s)``: salient channels get more of the quantization grid) and divides the layer's input
by ``s``, folded into the operation that produces it (quanto.folding: Llama's input_layernorm for
q/k/v_proj, post_attention_layernorm for gate/up_proj, up_proj for down_proj, v_proj for o_proj,
BERT's value for attention.output.dense). The folded model is a float model with other weights, so
the quantized file keeps the standard format (optimum-quanto reads it).

Per group of layers reading one input, ``s = x ** a / w ** (1 - a)`` (x: the input channels' RMS
on the calibration data, w: the weight columns' mean magnitude relative to their quantization
group), normalised, for ``a`` on a grid of ``grid`` points in [0, 1) (every second point, then the
neighbours of the best) plus ``s = 1``; the chosen ``a`` minimises the layers' output error
``sum ||X (W - Q(W s) / s)^T||^2`` (on ``search_rows`` evenly spaced rows per layer), computed from
the Hessian ``X^T X`` that calibration accumulates (the same statistic as GPTQ), with Q the base
optimizer's rounding (min/max for GPTQ, which runs once on the result, with the Hessian of the
scaled inputs). Then, optionally, AWQ's
clipping search: per output row and group, the weight is clamped to ``r * [min, max]`` with ``r``
in [1 - max_shrink, 1] minimising that group's output error. Every candidate costs a few native
calls (``minmax_scale_shift`` or ``hqq_scale_shift``, ``affine_quantize``, ``affine_dequantize``)
and one float32 matmul, all multi-threaded by torch.

Groups without a foldable predecessor (BERT's query/key/value and intermediate layers read a
LayerNorm output that also feeds a residual connection; a GELU MLP's second layer) get no factor,
only the clipping search. The search is per layer's output (not AutoAWQ's whole block), and the
activation magnitude is the RMS (from the Hessian's diagonal) rather than the mean absolute value.
"""

import math
import warnings
from typing import Dict, List, Optional, Tuple

import torch

from .calibrate import calibration_momentum
from .folding import FoldGroup, InputRecorder, check_groups, fold_scales, out_first_weight
from .nn import QModuleMixin
from .optimizers import GptqOptimizer, HqqOptimizer, MaxOptimizer, Optimizer
from .qtypes import qtype

__all__ = ["AwqOptimizer", "attach_awq", "apply_awq"]

ops = torch.ops.quanto
_BASES = {"minmax": MaxOptimizer, "max": MaxOptimizer, "hqq": HqqOptimizer, "gptq": GptqOptimizer}
_RECORDER = "_quanto_awq"


class AwqOptimizer(Optimizer):
    """AWQ scaling (and clipping) then a base optimizer's rounding; needs calibration, like GPTQ.

    ```python
    quantize(model, weights=qint4, optimizer="awq")            # or "awq+hqq", "awq+gptq", AwqOptimizer(...)
    with Calibration():
        for batch in calibration_batches:
            model(batch)
    freeze(model)        # searches the factors, folds them into the preceding layers, then rounds
    ```

    Args:
        base: the rounding after scaling: "minmax" (default), "hqq", "gptq" (GPTQ on the scaled
            weight with the correspondingly scaled Hessian), or a MaxOptimizer / HqqOptimizer /
            GptqOptimizer instance.
        grid: points of the scale exponent grid in [0, 1) (AWQ's default 20); 0 disables scaling.
        duo_scaling: factors from activations and weights (``x**a / w**(1-a)``, AutoAWQ's default)
            instead of activations only (``x**a``, the paper's).
        clip: run the clipping search after scaling (default True).
        clip_grid, max_shrink: the clipping ratios ``1 - i / clip_grid`` down to ``1 - max_shrink``.
        search_rows: output rows per layer (evenly spaced) on which the exponent search measures the
            error (None: all). The exponent is one number per group: a sample of rows ranks the
            candidates as well as all of them, at a fraction of the cost.

    ``freeze`` must be the model-level ``quanto.freeze(model)`` (the factors live in other modules);
    ``report`` then lists, per group, its layers, predecessor, chosen exponent and output errors.
    """

    needs_calibration = True

    def __init__(self, base="minmax", grid: int = 20, duo_scaling: bool = True, clip: bool = True,
                 clip_grid: int = 20, max_shrink: float = 0.5, search_rows: Optional[int] = 256):
        if isinstance(base, str):
            cls = _BASES.get(base.lower())
            if cls is None:
                raise ValueError(f"AwqOptimizer: unknown base optimizer {base!r}; known: {', '.join(sorted(_BASES))}")
            base = cls()
        if not isinstance(base, (MaxOptimizer, HqqOptimizer, GptqOptimizer)):
            raise TypeError(f"AwqOptimizer: base must be 'minmax', 'hqq', 'gptq' or one of their optimizer instances, "
                            f"got {type(base).__name__}")
        for name, value in (("grid", grid), ("clip_grid", clip_grid)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AwqOptimizer: {name} must be an int >= 0, got {value!r}")
        if search_rows is not None and (isinstance(search_rows, bool) or not isinstance(search_rows, int)
                                        or search_rows < 1):
            raise ValueError(f"AwqOptimizer: search_rows must be an int >= 1 or None, got {search_rows!r}")
        if isinstance(max_shrink, bool) or not isinstance(max_shrink, (int, float)) or not 0 <= max_shrink < 1:
            raise ValueError(f"AwqOptimizer: max_shrink must be in [0, 1), got {max_shrink!r}")
        self.base, self.grid, self.duo_scaling = base, grid, bool(duo_scaling)
        self.clip, self.clip_grid, self.max_shrink = bool(clip), clip_grid, float(max_shrink)
        self.search_rows = search_rows
        self.report: List[Dict] = []

    def __repr__(self):
        return (f"AwqOptimizer(base={type(self.base).__name__}, grid={self.grid}, duo_scaling={self.duo_scaling}, "
                f"clip={self.clip})")

    def __call__(self, base, qtype, axis=0, group_size=None) -> Tuple[torch.Tensor, torch.Tensor]:
        # Before freeze (QAT forward) and inside the searches: the base's grid (min/max for GPTQ).
        return self.base(base, qtype=qtype, axis=axis, group_size=group_size)

    def quantize(self, base: torch.Tensor, hessian: torch.Tensor, qtype: qtype, group_size: Optional[int]):
        """(codes, scale, shift) of the (already scaled and clipped) out-first weight."""
        if isinstance(self.base, GptqOptimizer):
            return self.base.quantize(base, hessian, qtype, group_size)
        scale, shift = self.base(base, qtype=qtype, axis=0, group_size=group_size)
        return ops.affine_quantize(base, scale, shift, qtype.name, 0, group_size), scale, shift

    def check_ready(self, module: QModuleMixin):
        """Refuses a module-level freeze before the model-level search."""
        if not module.__dict__.get("_quanto_awq_ready", False):
            raise ValueError(
                f"freeze: module {module.name!r} uses AWQ, whose factors are searched across layers and folded into "
                "the preceding ones: call quanto.freeze(model) on the model given to quantize(), after calibration")

    def rounded(self, w: torch.Tensor, wtype: qtype, group_size: Optional[int]) -> torch.Tensor:
        """w quantized with the base's grid and dequantized (float32, w's shape)."""
        scale, shift = self(w, wtype, 0, group_size)
        codes = ops.affine_quantize(w, scale, shift, wtype.name, 0, group_size)
        return ops.affine_dequantize(codes, scale, shift, list(w.shape), 0, group_size)


# --- model level ----------------------------------------------------------------------------------

def attach_awq(model: torch.nn.Module):
    """Called by quantize(optimizer=AWQ): records, while calibrating, which module produces each
    linear layer's input (quanto.folding.InputRecorder)."""
    if _RECORDER not in model.__dict__:
        model.__dict__[_RECORDER] = InputRecorder(model, active=_calibrating)


def _calibrating() -> bool:
    return calibration_momentum() is not None


def apply_awq(model: torch.nn.Module) -> List[Dict]:
    """Called by freeze(model) before the layers freeze: searches and folds the factors, clips the
    weights, and transforms each layer's Hessian for a GPTQ base. Returns the report."""
    recorder = model.__dict__.get(_RECORDER)
    if recorder is None:
        return []
    modules = dict(model.named_modules())
    awq = {n: m for n, m in modules.items()
           if isinstance(m, QModuleMixin) and isinstance(m.optimizer, AwqOptimizer) and not m.frozen}
    if not awq:
        recorder.close()
        del model.__dict__[_RECORDER]
        return []
    missing = [n for n, m in awq.items() if m.__dict__.get("_quanto_hessian") is None]
    if missing:
        raise ValueError(f"freeze: {len(missing)} module(s) use AWQ, which needs calibration data, and saw none "
                         f"(e.g. {missing[0]!r}): run sample batches through the model inside "
                         "`with quanto.Calibration():` before freeze")
    groups = [g for g in recorder.groups(model) if any(n in awq for n in g.readers)]
    grouped = {n for g in groups for n in g.readers}
    groups += [FoldGroup([n], reason="no input was recorded") for n in awq if n not in grouped]
    if recorder.first_inputs is None:
        warnings.warn("AWQ: no forward of the model given to quantize() ran during calibration (was a submodule "
                      "called instead?), so no fold could be checked: the weights are only clipped, not scaled")
    check_groups(model, groups, recorder.first_inputs)
    report = []
    with torch.no_grad():
        # Later groups first: a fold into a linear predecessor (up_proj, v_proj) changes its
        # weight before its own group is searched.
        for group in reversed(groups):
            report.append(_apply_group(model, modules, group, awq))
    for m in awq.values():
        m.__dict__["_quanto_awq_ready"] = True
    recorder.close()
    del model.__dict__[_RECORDER]
    report.reverse()
    clean = []
    for entry in report:
        opt = entry.pop("optimizer")
        opt.report.append(entry)
        clean.append(entry)
    return clean


def _hessian(m: QModuleMixin) -> torch.Tensor:
    """The layer's mean X^T X as float32 (its scale does not matter to the searches)."""
    return (m.__dict__["_quanto_hessian"] / max(m.__dict__["_quanto_hessian_rows"], 1)).float()


def _group_size(m: QModuleMixin, in_features: int) -> int:
    return m.weight_group_size or in_features


def _apply_group(model, modules, group: FoldGroup, awq: Dict[str, QModuleMixin]) -> Dict:
    members = [n for n in group.readers if n in awq]
    opt = awq[members[0]].optimizer
    entry = {"layers": list(group.readers), "predecessor": group.predecessor, "exponent": None,
             "error": None, "error_unscaled": None, "clip_ratio": None, "optimizer": opt}
    if group.predecessor is None:
        entry["reason"] = group.reason
    H = _hessian(awq[members[0]])
    if group.predecessor is not None and opt.grid > 0:
        t, exponent, err, err0 = _search_scales(group, [awq[n] for n in members], H, opt)
        entry.update(exponent=exponent, error=err, error_unscaled=err0)
        if exponent is not None:
            fold_scales(model, group, t, modules)
            s = group.expand(t).double()
            for name in group.readers:  # X' = X / s for every layer holding statistics of this input
                h = modules[name].__dict__.get("_quanto_hessian")
                if h is not None:  # not in place: layers reading one input may share the tensor
                    sd = s.to(h.device)
                    modules[name].__dict__["_quanto_hessian"] = h / (sd[:, None] * sd[None, :])
            H = _hessian(awq[members[0]])
    ratios = []
    for name in members:
        m = awq[name]
        if m.optimizer.clip and m.optimizer.clip_grid > 0 and m.optimizer.max_shrink > 0:
            ratios.append(_clip(m, H))
    if ratios:
        entry["clip_ratio"] = sum(ratios) / len(ratios)
    return entry


def _search_scales(group: FoldGroup, members: List[QModuleMixin], H: torch.Tensor, opt: AwqOptimizer):
    """(factors in predecessor channels, exponent or None for s = 1, error, error with s = 1)."""
    weights = [out_first_weight(m).detach().float() for m in members]
    n = weights[0].shape[1]
    x = H.diagonal().clamp(min=0).sqrt()
    # Dead channels (never active in calibration) keep factor 1: their share of the error is nil.
    x = torch.where(x > 0, x, x[x > 0].median() if bool((x > 0).any()) else torch.ones_like(x))
    rel = []
    for m, w in zip(members, weights):
        gs = _group_size(m, n)
        a = w.abs().view(w.shape[0], n // gs, gs)
        rel.append((a / a.amax(-1, keepdim=True).clamp(min=1e-12)).view(w.shape[0], n))
    wmag = torch.cat(rel).mean(0).clamp(min=1e-12)
    x, wmag = group.reduce(x, "mean"), group.reduce(wmag, "mean")
    if opt.search_rows is not None:  # evenly spaced rows (the rounding is per row, so exact on them)
        weights = [w if w.shape[0] <= opt.search_rows else
                   w[torch.linspace(0, w.shape[0] - 1, opt.search_rows).round().long()] for w in weights]

    def error(t):
        s = group.expand(t).to(weights[0].device)
        total = 0.0
        for m, w in zip(members, weights):
            d = w - m.optimizer.rounded(w * s, m.weight_qtype, m.weight_group_size) / s
            total += float(((d @ H) * d).sum())
        return total

    def factors(i):
        a = i / opt.grid
        t = x.pow(a) / wmag.pow(1.0 - a) if opt.duo_scaling else x.pow(a)
        return (t / math.sqrt(float(t.max()) * float(t.min()))).clamp(1e-4, 1e4)

    errors = {}

    def tried(i):
        if i not in errors:
            errors[i] = error(factors(i))
        return errors[i]

    # Coarse to fine: every second exponent, then the neighbours of the best (the error is smooth in it).
    for i in range(0, opt.grid, 2):
        tried(i)
    if errors:
        best = min(errors, key=errors.get)
        for i in (best - 1, best + 1):
            if 0 <= i < opt.grid:
                tried(i)
    unscaled = error(torch.ones_like(x))
    best = min(errors, key=errors.get) if errors else None
    if best is None or errors[best] >= unscaled:
        return None, None, unscaled, unscaled
    return factors(best), best / opt.grid, errors[best], unscaled


def _clip(m: QModuleMixin, H: torch.Tensor) -> float:
    """AWQ's clipping search on the layer's (scaled) weight, in place; returns the mean ratio."""
    opt = m.optimizer
    w = out_first_weight(m)
    wf = w.detach().float()
    rows, n = wf.shape
    gs = _group_size(m, n)
    groups = n // gs
    wg = wf.view(rows, groups, gs)
    lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
    # The diagonal blocks of H: a group's share of the output error, groups taken one at a time.
    blocks = H.view(groups, gs, groups, gs).diagonal(dim1=0, dim2=2).permute(2, 0, 1).contiguous()
    best_err = torch.full((rows, groups), float("inf"), device=wf.device)
    best_ratio = torch.ones(rows, groups, 1, device=wf.device)
    steps = int(opt.max_shrink * opt.clip_grid)
    for i in range(steps + 1):
        r = 1.0 - i / opt.clip_grid
        clipped = torch.minimum(torch.maximum(wg, lo * r), hi * r).view(rows, n)
        d = (wf - opt.rounded(clipped, m.weight_qtype, m.weight_group_size)).view(rows, groups, gs)
        err = torch.einsum("rgi,gij,rgj->rg", d, blocks, d)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_ratio = torch.where(better[..., None], torch.full_like(best_ratio, r), best_ratio)
    clipped = torch.minimum(torch.maximum(wg, lo * best_ratio), hi * best_ratio).view(rows, n)
    w.copy_(clipped.to(w.dtype))
    return float(best_ratio.mean())
