"""Per-channel scale folding, shared by SmoothQuant (quanto.smoothquant) and AWQ (quanto.awq).

Both methods give the input channels of linear layers positive factors ``s``: the layers' weights
become ``W diag(s)`` and their input is divided by ``s`` upstream, inside the operation that
produces it (its *predecessor*): a norm's weight and bias, or a linear layer's output rows (and
bias). The float model computes the same function (up to float rounding), and a folded model is
just a float model with other weights, so its quantized files keep the standard format.

A fold group is the set of linear layers that read one tensor (Llama's q/k/v_proj read the output
of input_layernorm): they share one ``s``. Predecessors are found from the model itself:

- while calibrating, forward hooks (:class:`InputRecorder`) note which module produced the very
  tensor each linear layer reads, and which linear layers read the same tensor;
- :data:`KNOWN_PATHS` adds linear -> linear paths through operations that commute with a positive
  per-channel factor: attention (``softmax(QK^T) V`` is linear in V), ``act(gate) * up`` and ReLU.
  With grouped-query attention (fewer key/value heads), one factor per value channel is shared by
  the query heads that read it;
- every candidate is then checked on the first calibration batch (:func:`check_groups`): hooks
  multiply the predecessor's output by random positive factors and divide the readers' inputs by
  them, and the fold is kept only if the model's outputs do not move. An output that also feeds
  something else (a residual connection, as after BERT's post-norm LayerNorms, or an excluded
  layer) is rejected that way. A norm's own fold is checked on the norm alone (a Gemma-style
  ``(1 + w)`` RMSNorm fails it), and tied or already-frozen weights are never folded.
"""

import copy
import functools
import weakref
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch.utils._pytree import tree_flatten

from .nn import QModuleMixin
from .nn.qnorm import is_rmsnorm

__all__ = ["FoldGroup", "InputRecorder", "KNOWN_PATHS", "check_groups", "fold_scales", "is_linear",
           "out_first_weight"]

# (predecessor, reader) name suffixes under one parent: paths whose intermediate operations commute
# with a positive per-channel factor, so the reader's input factor can live in the predecessor.
KNOWN_PATHS: List[Tuple[str, str]] = [
    ("self_attn.v_proj", "self_attn.o_proj"),          # Llama, Mistral, Qwen2, Gemma (attention)
    ("self_attn.v_proj", "self_attn.out_proj"),        # OPT, BART, Whisper
    ("mlp.up_proj", "mlp.down_proj"),                  # Llama-style gated MLPs: act(gate) * up
    ("attention.self.value", "attention.output.dense"),  # BERT family
    ("fc1", "fc2"),                                    # OPT (ReLU; a GELU MLP fails the check)
]

_MIXED = "<mixed>"  # a linear layer read different producers (or groups) in different passes


def is_linear(m: torch.nn.Module) -> bool:
    """torch Linear (quantized or not) or transformers' GPT-2 Conv1D (weight stored [in, out])."""
    w = m._parameters.get("weight")
    return w is not None and w.dim() == 2 and (
        isinstance(m, torch.nn.Linear) or (type(m).__name__.endswith("Conv1D") and hasattr(m, "nf")))


def _is_conv1d(m: torch.nn.Module) -> bool:
    return not isinstance(m, torch.nn.Linear)


def out_first_weight(m: torch.nn.Module) -> torch.Tensor:
    """The float weight of a linear layer as [out, in] (a view for Conv1D)."""
    w = m._parameters["weight"]
    return w.t() if _is_conv1d(m) else w


def _is_norm(m: torch.nn.Module) -> bool:
    w = m._parameters.get("weight")
    return w is not None and w.dim() == 1 and (isinstance(m, torch.nn.LayerNorm) or is_rmsnorm(m))


def _in_features(m: torch.nn.Module) -> int:
    return out_first_weight(m).shape[1]


def _out_features(m: torch.nn.Module) -> int:
    return m._parameters["weight"].shape[0] if _is_norm(m) else out_first_weight(m).shape[0]


@dataclass
class FoldGroup:
    """Linear layers reading one tensor, and the module that tensor is folded into (if any).

    ``repeat > 1``: grouped-query attention; the predecessor's channels are the reader's in blocks
    of ``head_dim``, each block repeated ``repeat`` times (Llama's repeat_kv)."""

    readers: List[str]
    predecessor: Optional[str] = None
    repeat: int = 1
    head_dim: int = 0
    reason: str = ""  # why there is no predecessor (for reports)

    def expand(self, t: torch.Tensor) -> torch.Tensor:
        """Predecessor channels -> reader channels."""
        if self.repeat == 1:
            return t
        kv = t.numel() // self.head_dim
        return t.view(kv, 1, self.head_dim).expand(kv, self.repeat, self.head_dim).reshape(-1)

    def reduce(self, x: torch.Tensor, how: str) -> torch.Tensor:
        """Reader channels -> predecessor channels (``how``: "amax" or "mean" over the repeats)."""
        if self.repeat == 1:
            return x
        v = x.view(-1, self.repeat, self.head_dim)
        return (v.amax(1) if how == "amax" else v.mean(1)).reshape(-1)


class InputRecorder:
    """Forward hooks that note, while ``active()``, which module produced each linear layer's input
    and which linear layers read the same tensor; ``on_input(name, x)`` sees every input. The
    first forward of the model itself is kept (``first_inputs``) to check folds on. ``close()``
    removes the hooks."""

    def __init__(self, model: torch.nn.Module, active: Callable[[], bool],
                 on_input: Optional[Callable[[str, torch.Tensor], None]] = None):
        self.active = active
        self.on_input = on_input
        self.producer: Dict[str, str] = {}  # linear -> module whose output it reads ("" unknown, _MIXED)
        self.shared: Dict[str, object] = {}  # linear -> tuple of linears reading that tensor (or _MIXED)
        self.order: List[str] = []  # linears in first-run order
        self.first_inputs = None  # (args, kwargs) of the first recorded forward of the model
        self._outputs = {}  # id(tensor) -> (module name, weakref): this forward's module outputs
        self._readers = {}  # id(tensor) -> (weakref, [linear names]): this forward's shared inputs
        self._pass_groups: List[List[str]] = []  # every list of _readers (an id may be reused)
        self._handles = [model.register_forward_pre_hook(self._model_pre, with_kwargs=True),
                         model.register_forward_hook(self._model_post)]
        for name, m in model.named_modules():
            if m is model:
                continue
            self._handles.append(m.register_forward_hook(functools.partial(self._record_output, name)))
            if is_linear(m):
                self._handles.append(m.register_forward_pre_hook(functools.partial(self._record_input, name)))

    def close(self):
        for h in self._handles:
            h.remove()
        self._handles = []
        self._outputs, self._readers, self._pass_groups = {}, {}, []

    def _model_pre(self, module, args, kwargs):
        if not self.active():
            return
        self._finish_pass()
        if self.first_inputs is None:
            self.first_inputs = _detached_copy((args, kwargs))

    def _model_post(self, module, args, output):
        if self.active():
            self._finish_pass()

    def _record_output(self, name, module, args, output):
        if not self.active() or not isinstance(output, torch.Tensor):
            return
        entry = self._outputs.get(id(output))
        if entry is None or entry[1]() is not output:  # the innermost module producing a tensor wins
            self._outputs[id(output)] = (name, weakref.ref(output))

    def _record_input(self, name, module, args):
        if not self.active() or not args or not isinstance(args[0], torch.Tensor):
            return
        x = args[0]
        entry = self._outputs.get(id(x))
        producer = entry[0] if entry is not None and entry[1]() is x else ""
        if name not in self.producer:
            self.producer[name] = producer
            self.order.append(name)
        elif self.producer[name] != producer:
            self.producer[name] = _MIXED
        readers = self._readers.get(id(x))
        if readers is None or readers[0]() is not x:
            readers = (weakref.ref(x), [])
            self._readers[id(x)] = readers
            self._pass_groups.append(readers[1])
        readers[1].append(name)
        if self.on_input is not None:
            self.on_input(name, x)

    def _finish_pass(self):
        for names in self._pass_groups:
            group = tuple(dict.fromkeys(names))
            for n in group:
                known = self.shared.get(n)
                if known is None:
                    self.shared[n] = group
                elif known != group:
                    self.shared[n] = _MIXED
        self._outputs, self._readers, self._pass_groups = {}, {}, []

    def groups(self, model: torch.nn.Module) -> List[FoldGroup]:
        """The fold groups seen so far, in first-run order, with their candidate predecessors."""
        self._finish_pass()
        modules = dict(model.named_modules())
        groups, seen = [], set()
        for name in self.order:
            shared = self.shared.get(name)
            members = (name,) if shared in (None, _MIXED) else shared
            if members in seen:
                continue
            seen.add(members)
            group = FoldGroup(list(members))
            producers = {self.producer.get(n, "") for n in members}
            if shared == _MIXED or _MIXED in producers or len(producers) != 1:
                group.reason = "its input changed between calibration batches"
            else:
                _find_predecessor(group, producers.pop(), modules)
            groups.append(group)
        return groups


def _detached_copy(obj):
    def detach(t):
        return t.detach() if isinstance(t, torch.Tensor) else t
    return copy.deepcopy(torch.utils._pytree.tree_map(detach, obj))


def _find_predecessor(group: FoldGroup, producer: str, modules: Dict[str, torch.nn.Module]):
    n = _in_features(modules[group.readers[0]])
    if producer:
        p = modules[producer]
        if (_is_norm(p) or is_linear(p)) and _out_features(p) == n:
            group.predecessor = producer
        else:
            group.reason = f"its input comes from {producer!r} ({type(p).__name__}), which cannot hold a factor"
        return
    if len(group.readers) == 1:
        reader = group.readers[0]
        for pred_suffix, reader_suffix in KNOWN_PATHS:
            if reader == reader_suffix or reader.endswith("." + reader_suffix):
                pred = reader[:len(reader) - len(reader_suffix)] + pred_suffix
                p = modules.get(pred)
                if p is None or not is_linear(p):
                    continue
                out = _out_features(p)
                if out == n:
                    group.predecessor = pred
                    return
                # Grouped-query attention: the reader's channels repeat the value heads.
                parent = modules.get(reader.rsplit(".", 1)[0]) if "." in reader else None
                head_dim = getattr(parent, "head_dim", None)
                if isinstance(head_dim, int) and head_dim > 0 and n % out == 0 and out % head_dim == 0:
                    group.predecessor, group.repeat, group.head_dim = pred, n // out, head_dim
                    return
    group.reason = "no module output reaches it through operations that commute with a per-channel factor"


# --- checks ---------------------------------------------------------------------------------------

def _shared_parameters(model: torch.nn.Module) -> set:
    """ids of parameters owned by more than one module (tied weights)."""
    owners: Dict[int, int] = {}
    for m in model.modules():
        for p in m._parameters.values():
            if p is not None:
                owners[id(p)] = owners.get(id(p), 0) + 1
    return {k for k, v in owners.items() if v > 1}


def _fixed_reason(m: torch.nn.Module, name: str, shared: set) -> str:
    """Why this module's float parameters cannot take a factor ("" when they can)."""
    if isinstance(m, QModuleMixin):
        if m.frozen:
            return f"{name!r} is already frozen"
        if m.activation_qtype is not None:
            return f"{name!r} quantizes activations (its calibrated scales would no longer fit)"
    for p in m._parameters.values():
        if p is not None and id(p) in shared:
            return f"{name!r} shares (ties) a weight with another module"
    return ""


@torch.no_grad()
def _norm_folds(norm: torch.nn.Module) -> bool:
    """Whether dividing a norm's weight (and bias) by t divides its output by t (on the norm alone)."""
    hooks = (norm._forward_hooks, norm._forward_pre_hooks)
    norm._forward_hooks, norm._forward_pre_hooks = type(hooks[0])(), type(hooks[1])()
    try:  # a copy without the recorder's hooks
        probe = copy.deepcopy(norm).float()
    finally:
        norm._forward_hooks, norm._forward_pre_hooks = hooks
    g = torch.Generator().manual_seed(0)
    n = probe._parameters["weight"].numel()
    z = torch.randn(4, n, generator=g) * 3
    t = torch.exp(torch.rand(n, generator=g) * 2 - 1)
    want = probe(z) / t
    _fold_predecessor(probe, t)
    got = probe(z)
    return bool(torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max())))


def _model_outputs(model, inputs) -> List[torch.Tensor]:
    args, kwargs = _detached_copy(inputs)
    out, _ = tree_flatten(model(*args, **kwargs))
    return [t.float() for t in out if isinstance(t, torch.Tensor) and t.is_floating_point()]


def _perturbed(model, inputs, modules, groups: Sequence[FoldGroup], seed: int) -> List[torch.Tensor]:
    """Model outputs with each group's predecessor output times random factors, undone in its readers."""
    g = torch.Generator().manual_seed(seed)
    handles = []
    try:
        for group in groups:
            pred = modules[group.predecessor]
            r = torch.exp(torch.rand(_out_features(pred), generator=g) * 1.4 - 0.7)  # in [0.5, 2]
            rin = group.expand(r)
            handles.append(pred.register_forward_hook(lambda m, a, y, r=r: y * r.to(y.device, y.dtype)))
            for name in group.readers:
                handles.append(modules[name].register_forward_pre_hook(
                    lambda m, a, rin=rin: (a[0] / rin.to(a[0].device, a[0].dtype),) + tuple(a[1:])))
        return _model_outputs(model, inputs)
    finally:
        for h in handles:
            h.remove()


def _same(a: List[torch.Tensor], b: List[torch.Tensor], tol: float) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if x.shape != y.shape:
            return False
        scale = float(x.abs().max()) if x.numel() else 0.0
        if x.numel() and float((x - y).abs().max()) > tol * max(scale, 1e-6):
            return False
    return True


@torch.no_grad()
def check_groups(model: torch.nn.Module, groups: List[FoldGroup], inputs, movable: Callable[[str], bool] = None
                 ) -> List[FoldGroup]:
    """Drops the predecessor (with a reason) of every group whose fold would change the model:
    tied/frozen weights, a norm that does not fold, or outputs that move when the predecessor's
    output is scaled and its readers' inputs are scaled back (see the module doc). ``movable(name)``
    may refuse more modules. Returns the groups that keep a predecessor."""
    modules = dict(model.named_modules())
    shared = _shared_parameters(model)
    candidates = []
    for group in groups:
        if group.predecessor is None:
            continue
        reason = ""
        for name in [group.predecessor] + group.readers:
            reason = reason or _fixed_reason(modules[name], name, shared)
            if not reason and movable is not None and not movable(name):
                reason = f"{name!r} cannot be changed here"
        pred = modules[group.predecessor]
        if not reason and _is_norm(pred) and not _norm_folds(pred):
            reason = f"{group.predecessor!r} ({type(pred).__name__}) does not scale its output with its weight"
        if reason:
            group.predecessor, group.reason = None, reason
        else:
            candidates.append(group)
    if not candidates:
        return []
    if inputs is None:
        for group in candidates:
            group.predecessor, group.reason = None, "no forward of the whole model was seen to check the fold on"
        return []
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    tol = 1e-3 if dtype in (torch.float32, torch.float64) else 3e-2
    was_training = model.training
    model.eval()  # dropout would make two runs differ
    try:
        reference = _model_outputs(model, inputs)

        def valid(subset, seed=[0]):
            seed[0] += 1
            return _same(reference, _perturbed(model, inputs, modules, subset, seed[0]), tol)

        def bisect(subset):  # folds of distinct groups are independent: test all, then halves
            if valid(subset):
                return
            if len(subset) == 1:
                subset[0].reason = (f"scaling the output of {subset[0].predecessor!r} changes the model beyond "
                                    f"these layers (e.g. a residual connection reads it)")
                subset[0].predecessor = None
                return
            half = len(subset) // 2
            bisect(subset[:half])
            bisect(subset[half:])

        bisect(candidates)
    finally:
        model.train(was_training)
    return [g for g in candidates if g.predecessor is not None]


# --- folding --------------------------------------------------------------------------------------

def _fold_predecessor(p: torch.nn.Module, t: torch.Tensor):
    """Divides p's output channels by t (norm weight/bias, or linear output rows/bias)."""
    w, b = p._parameters["weight"], p._parameters.get("bias")
    if w.dim() == 1:
        w.copy_((w.float() / t).to(w.dtype))
    elif _is_conv1d(p):
        w.copy_((w.float() / t[None, :]).to(w.dtype))
    else:
        w.copy_((w.float() / t[:, None]).to(w.dtype))
    if b is not None:
        b.copy_((b.float() / t).to(b.dtype))


@torch.no_grad()
def fold_scales(model: torch.nn.Module, group: FoldGroup, t: torch.Tensor, modules=None):
    """Folds factors ``t`` (predecessor channels) into the group: the predecessor's output is
    divided by t and each reader's weight columns multiplied by ``group.expand(t)``."""
    if group.predecessor is None:
        raise ValueError(f"fold_scales: the group {group.readers} has no predecessor ({group.reason})")
    modules = modules if modules is not None else dict(model.named_modules())
    t = t.detach().float().cpu()
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError(f"fold_scales: factors must be finite and positive, got min {float(t.min())}")
    pred = modules[group.predecessor]
    _fold_predecessor(pred, t.to(pred._parameters["weight"].device))
    s = group.expand(t)
    for name in group.readers:
        w = modules[name]._parameters["weight"]
        sd = s.to(w.device)
        w.copy_((w.float() * (sd[:, None] if _is_conv1d(modules[name]) else sd[None, :])).to(w.dtype))

