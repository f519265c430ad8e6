"""SmoothQuant (Xiao et al.): moves activation outliers into the weights before W8A8 quantization.

Per-tensor int8 activations lose the small channels of an input whose few outlier channels set
the scale. SmoothQuant divides each input channel j of a linear layer by

    s_j = max|X_j| ** alpha / max|W_j| ** (1 - alpha)

(max over calibration tokens, and over the rows of every layer reading that input) and multiplies
the weight's column j by s_j: the product is unchanged, the activations are flatter, and the
weights (quantized per output channel) absorb the difference. ``alpha`` (the migration strength)
moves difficulty from activations (alpha = 1) to weights (alpha = 0).

The division is folded into the operation producing the input (quanto.folding: a norm, or a
linear layer such as v_proj before o_proj and up_proj before down_proj), so the smoothed model is a
float model with other weights: quantize it as usual (``quantize(model, weights=qint8,
activations=qint8)``, then ``Calibration``), and its files are standard — optimum-quanto reads
them. Layers whose input has no foldable predecessor (BERT's post-norm LayerNorms also feed a
residual connection) are left unsmoothed and listed in ``skipped``: quanto does not carry a
per-channel input factor inside a quantized layer (that would need a file-format extension that
optimum-quanto and quanto's C++ reader do not have).
"""

from fnmatch import fnmatch
from typing import Dict, List, Optional, Union

import torch

from .folding import InputRecorder, check_groups, fold_scales, out_first_weight
from .nn import QModuleMixin

__all__ = ["SmoothQuant"]


class SmoothQuant:
    """Context manager: calibrate, then smooth a float model in place on exit.

    ```python
    with quanto.SmoothQuant(model, alpha=0.5):
        for batch in calibration_batches:
            model(batch)
    quantize(model, weights=qint8, activations=qint8)   # then Calibration() and freeze() as usual
    ```

    Args:
        model: the float model (not quantized yet).
        alpha: migration strength in [0, 1] (the paper's default 0.5; LLMs with strong outliers
            often prefer 0.7-0.8: SmolLM2-135M measured best at 0.75).
        include, exclude: fnmatch patterns on linear-layer names, as in ``quanto.quantize``: only
            groups with at least one selected reader are smoothed (every reader of a smoothed
            input gets the factor, so the float model stays exact).
        group_size: one factor per block of ``group_size`` consecutive input channels (from the
            block's max|X| and max|W|) instead of one per channel. A 2/4-bit weight quantized
            with that group size then has each group scaled as a whole, so its rounding is the
            same as before smoothing: W4A8 keeps the weights' grid (SmolLM2's float weights are
            its GGUF's groups of 32 exactly) while its activations are smoothed.

    After the scope: ``smoothed`` maps each predecessor to the linear layers it was folded into,
    ``skipped`` maps each unsmoothed group (readers joined by ",") to the reason.
    """

    def __init__(self, model: torch.nn.Module, alpha: float = 0.5,
                 include: Optional[Union[str, List[str]]] = None, exclude: Optional[Union[str, List[str]]] = None,
                 group_size: Optional[int] = None):
        from .quantize import _patterns  # quantize's pattern checks (import here: quantize imports us)

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"SmoothQuant: model must be a torch.nn.Module, got {type(model).__name__}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"SmoothQuant: alpha (migration strength) must be a number in [0, 1], got {alpha!r}")
        if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                       or group_size < 1):
            raise ValueError(f"SmoothQuant: group_size must be a positive int or None, got {group_size!r}")
        quantized = [n for n, m in model.named_modules() if isinstance(m, QModuleMixin)]
        if quantized:
            raise ValueError(f"SmoothQuant: the model is already quantized ({quantized[0]!r}, ...): smooth the float "
                             "model first, then quantize it")
        self.model = model
        self.alpha = float(alpha)
        self.group_size = group_size
        self.include, self.exclude = _patterns(include, "include"), _patterns(exclude, "exclude")
        self.smoothed: Dict[str, List[str]] = {}
        self.skipped: Dict[str, str] = {}
        self._amax: Dict[str, torch.Tensor] = {}
        self._recorder = None

    def _selected(self, name: str) -> bool:
        if self.include is not None and not any(fnmatch(name, p) for p in self.include):
            return False
        return self.exclude is None or not any(fnmatch(name, p) for p in self.exclude)

    def _note_input(self, name: str, x: torch.Tensor):
        with torch.no_grad():
            a = x.detach().reshape(-1, x.shape[-1]).abs().amax(0).float()
        old = self._amax.get(name)
        self._amax[name] = a if old is None else torch.maximum(old, a)

    def __enter__(self):
        if self._recorder is not None:
            raise RuntimeError("SmoothQuant: this scope is already open")
        self._amax = {}
        self._recorder = InputRecorder(self.model, active=lambda: True, on_input=self._note_input)
        return self

    def __exit__(self, exc_type, exc, tb):
        recorder, self._recorder = self._recorder, None
        recorder.close()
        if exc_type is not None:
            return False  # an interrupted calibration changes nothing
        if not self._amax:
            raise ValueError("SmoothQuant: no linear layer ran inside the scope: run calibration batches through the "
                             "model inside `with SmoothQuant(model):`")
        if recorder.first_inputs is None:
            raise ValueError("SmoothQuant: only submodules of the model ran inside the scope: call the model given to "
                             "SmoothQuant itself, whose outputs check that each fold keeps the model's function")
        groups = [g for g in recorder.groups(self.model) if any(self._selected(n) for n in g.readers)]
        check_groups(self.model, groups, recorder.first_inputs)
        modules = dict(self.model.named_modules())
        for g in groups:  # before any fold, so a bad group size leaves the model as it was
            if g.predecessor is not None:
                self._check_blocks(g, modules)
        # Later groups first: a fold into a linear predecessor (up_proj) changes that layer's
        # weight, which the group reading the same input as it (gate/up) then sees.
        for g in reversed(groups):
            if g.predecessor is None:
                self.skipped[",".join(g.readers)] = g.reason
                continue
            fold_scales(self.model, g, self._factors(g, modules), modules)
            self.smoothed[g.predecessor] = list(g.readers)
        self._amax = {}
        return False

    def _check_blocks(self, group, modules):
        """group_size must cut the predecessor's channels into whole blocks, inside each head under
        grouped-query attention (each head_dim block of the predecessor is repeated for the readers)."""
        g = self.group_size
        if g is None:
            return
        channels = out_first_weight(modules[group.readers[0]]).shape[1] // group.repeat
        if channels % g or (group.repeat > 1 and group.head_dim % g):
            where = f" (head_dim {group.head_dim})" if group.repeat > 1 else ""
            raise ValueError(f"SmoothQuant: group_size {g} does not divide the {channels} channels{where} that "
                             f"{group.predecessor} passes to {', '.join(group.readers)}; use a divisor, or "
                             "group_size=None (one factor per channel)")

    def _factors(self, group, modules) -> torch.Tensor:
        """s = max|X| ** alpha / max|W| ** (1 - alpha), per predecessor channel."""
        x = self._amax[group.readers[0]]
        for name in group.readers[1:]:  # the same tensor: equal, unless a reader ran on fewer batches
            x = torch.maximum(x, self._amax[name])
        w = torch.stack([out_first_weight(modules[n]).detach().abs().amax(0).float().cpu()
                         for n in group.readers]).amax(0)
        x, w = group.reduce(x.cpu(), "amax"), group.reduce(w, "amax")
        g = self.group_size
        if g is not None:
            # Blocks of predecessor channels are blocks of reader channels when they fit in a head
            # (grouped-query attention repeats each head_dim block of the predecessor).
            x = x.view(-1, g).amax(1, keepdim=True).expand(-1, g).reshape(-1)
            w = w.view(-1, g).amax(1, keepdim=True).expand(-1, g).reshape(-1)
        s = x.clamp(min=1e-5).pow(self.alpha) / w.clamp(min=1e-5).pow(1.0 - self.alpha)
        # A channel that never fired, or whose weights are all zero, keeps its scale.
        return torch.where((x > 0) & (w > 0), s, torch.ones_like(s))
