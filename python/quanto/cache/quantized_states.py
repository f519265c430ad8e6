"""Keys or values of one attention layer held as packed 2/4-bit codes, grouped per token or per channel.

The states are ``[batch, heads, tokens, head_dim]`` and grow along the tokens. Each appended block
is laid out as a 2-D "weight" whose rows are quantization groups and quantized by the weights
layer (``torch.ops.quanto.weight_quantize`` / ``weight_dequantize``: affine min/max codes packed
two or four per byte, a scale and a shift per group), so the KV cache and the quantized weights
share one format, one set of kernels and one packing:

- axis 0 ("per token", like transformers' quantized cache with ``axis=0``): a group is
  ``group_size`` consecutive channels of one token; the weight is ``[tokens * batch * heads, head_dim]``.
- axis -1 ("per channel", KIVI's choice for keys): a group is ``group_size`` consecutive tokens of
  one channel; the weight is ``[blocks * batch * heads * head_dim, group_size]``, so tokens are
  appended ``group_size`` at a time.

In both the rows are token-major (tokens, or blocks of them, then batch, heads), so appending
tokens appends groups, and selecting a batch entry selects groups: both are exact operations on
the codes, never a dequantize/requantize round trip.
"""

from typing import List, Optional

import torch

from .. import _library

_library.load()
_ops = torch.ops.quanto

__all__ = ["QuantizedStates", "AXES", "NBITS"]

# Valid settings, with the name each one goes by in messages.
NBITS = {4: "qint4", 2: "qint2"}
AXES = {0: "per-token groups (along head_dim)", -1: "per-channel groups (along the tokens)"}


def check_settings(nbits, axis, group_size, what: str = "states") -> None:
    """ValueError/TypeError naming the bad argument and the valid values."""
    if isinstance(nbits, bool) or nbits not in NBITS:
        raise ValueError(f"{what}: nbits must be one of {sorted(NBITS)} (int4 or int2 codes), got {nbits!r}")
    if isinstance(axis, bool) or axis not in AXES:
        valid = ", ".join(f"{a} ({name})" for a, name in AXES.items())
        raise ValueError(f"{what}: axis must be one of {valid}, got {axis!r}")
    if isinstance(group_size, bool) or not isinstance(group_size, int):
        raise TypeError(f"{what}: q_group_size must be a positive int, got {type(group_size).__name__}")
    if group_size < 1:
        raise ValueError(f"{what}: q_group_size must be a positive int, got {group_size}")


def check_head_dim(head_dim: int, axis: int, group_size: int, what: str = "states") -> None:
    """Per-token groups split head_dim, so they must divide it."""
    if axis == 0 and head_dim % group_size != 0:
        divisors = [d for d in range(1, head_dim + 1) if head_dim % d == 0]
        raise ValueError(
            f"{what}: per-token groups (axis 0) split head_dim={head_dim} into groups of q_group_size, "
            f"which must divide it; got q_group_size={group_size} (valid: {divisors})"
        )


class QuantizedStates:
    """Growing ``[batch, heads, tokens, head_dim]`` states as packed 2/4-bit codes (see the module doc)."""

    def __init__(self, nbits: int = 4, axis: int = 0, group_size: int = 64):
        check_settings(nbits, axis, group_size)
        self.nbits, self.axis, self.group_size = nbits, axis, group_size
        self.qtype = NBITS[nbits]
        # The weights layer's canonical qbits tensors: packed codes [ceil(groups / (8 / bits)), group_size],
        # scale [groups, 1], shift [groups, 1] (scale and shift in the states' dtype).
        self.state: Optional[List[torch.Tensor]] = None
        self.tokens = 0
        self.batch = self.heads = self.head_dim = None
        self.dtype = None

    @property
    def block_tokens(self) -> int:
        """Appends hold a multiple of this many tokens (a per-channel group spans group_size tokens)."""
        return self.group_size if self.axis == -1 else 1

    def _weight_shape(self, tokens: int) -> List[int]:
        b, h, d, g = self.batch, self.heads, self.head_dim, self.group_size
        return [tokens * b * h, d] if self.axis == 0 else [tokens // g * b * h * d, g]

    def _as_weight(self, states: torch.Tensor) -> torch.Tensor:
        b, h, t, d = states.shape
        if self.axis == 0:
            return states.permute(2, 0, 1, 3).reshape(t * b * h, d)
        g = self.group_size
        return states.reshape(b, h, t // g, g, d).permute(2, 0, 1, 4, 3).reshape(t // g * b * h * d, g)

    def _check_append(self, states: torch.Tensor) -> None:
        if not isinstance(states, torch.Tensor) or states.dim() != 4:
            shape = tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__
            raise ValueError(f"QuantizedStates: expected [batch, heads, tokens, head_dim] states, got {shape}")
        if not states.is_floating_point():
            raise TypeError(f"QuantizedStates: states must be floating point, got {states.dtype}")
        b, h, t, d = states.shape
        if t % self.block_tokens != 0:
            raise ValueError(
                f"QuantizedStates: per-channel groups take tokens {self.block_tokens} at a time, got {t} tokens"
            )
        if self.batch is None:
            check_head_dim(d, self.axis, self.group_size, "QuantizedStates")
            self.batch, self.heads, self.head_dim, self.dtype = b, h, d, states.dtype
        elif (b, h, d, states.dtype) != (self.batch, self.heads, self.head_dim, self.dtype):
            raise ValueError(
                f"QuantizedStates: states of batch {b}, heads {h}, head_dim {d}, {states.dtype} do not match the "
                f"held ones (batch {self.batch}, heads {self.heads}, head_dim {self.head_dim}, {self.dtype})"
            )

    def _codes(self) -> torch.Tensor:
        """The held codes unpacked, one row per group (exact)."""
        return _ops.unpack_codes(self.state[0], self.nbits, self.state[1].shape[0])

    def _set(self, codes: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> None:
        self.state = [_ops.pack_codes(codes.contiguous(), self.nbits), scale.contiguous(), shift.contiguous()]

    def append(self, states: torch.Tensor) -> None:
        """Quantizes ``states`` [batch, heads, tokens, head_dim] and appends them after the held tokens."""
        self._check_append(states)
        t = states.shape[2]
        if t == 0:
            return
        new = _ops.weight_quantize(self._as_weight(states), self.qtype, self.group_size)
        if self.state is None:
            self.state = list(new)
        else:
            # Packing interleaves the halves (quarters) of the rows, so packed blocks do not
            # concatenate: unpack, concatenate the groups, repack. Amortised: one append per block.
            new_codes = _ops.unpack_codes(new[0], self.nbits, new[1].shape[0])
            self._set(torch.cat([self._codes(), new_codes]), torch.cat([self.state[1], new[1]]),
                      torch.cat([self.state[2], new[2]]))
        self.tokens += t

    def dequantize(self, out: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The held states [batch, heads, tokens, head_dim] in their dtype; written into ``out`` (a
        tensor or view of that shape, e.g. the front of a larger buffer) when given, saving a copy."""
        if self.state is None:
            raise ValueError("QuantizedStates: nothing appended yet")
        b, h, d, s, g = self.batch, self.heads, self.head_dim, self.tokens, self.group_size
        w = _ops.weight_dequantize(self.state, self.qtype, self._weight_shape(s), g)
        if self.axis == 0:
            states = w.view(s, b, h, d).permute(1, 2, 0, 3)
        else:
            states = w.view(s // g, b, h, d, g).permute(1, 2, 0, 4, 3)  # [b, h, blocks, g, d]
        if out is None:
            return states.reshape(b, h, s, d)
        if tuple(out.shape) != (b, h, s, d):
            raise ValueError(f"QuantizedStates.dequantize: out must be {[b, h, s, d]}, got {list(out.shape)}")
        # Splitting the tokens dimension into [blocks, g] is a view of any such `out`.
        out.view(states.shape).copy_(states)
        return out

    def index_batch(self, index: torch.Tensor) -> None:
        """Keeps (reorders, repeats) batch entries ``index`` (1-D int64), exactly, on the codes."""
        if self.state is None:
            return
        index = index.to(device=self.state[0].device, dtype=torch.long)
        outer = self.tokens if self.axis == 0 else self.tokens // self.group_size
        codes = self._codes().view(outer, self.batch, -1, self.group_size).index_select(1, index)
        scale, shift = (t.view(outer, self.batch, -1).index_select(1, index).reshape(-1, 1) for t in self.state[1:])
        self._set(codes.reshape(-1, self.group_size), scale, shift)
        self.batch = index.numel()

    def nbytes(self) -> int:
        """Bytes held: packed codes, scales and shifts."""
        return 0 if self.state is None else sum(t.nbytes for t in self.state)
