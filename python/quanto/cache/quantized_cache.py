"""A transformers KV cache whose keys and values are held as int4 or int2 codes by quanto.

``QuantizedKVCache`` is a ``transformers.Cache`` of ``QuantizedKVLayer``s. Each layer keeps the
``residual_length`` most recent tokens in float (the "residual window", as in KIVI and in
transformers' ``QuantizedCache``) and older tokens as packed 2/4-bit codes
(``quantized_states.QuantizedStates``). Differences from transformers' ``QuantizedLayer``:

- the residual window is a guarantee: the ``residual_length`` most recent tokens are always float
  (transformers' window empties when it fills, so right after that no token is float);
- tokens leave the window ``q_group_size`` at a time and are quantized once: held codes are never
  dequantized and quantized again (transformers re-quantizes the whole cache every
  ``residual_length`` tokens, compounding the error and costing O(length) each time);
- per-channel groups (axis -1) are ``q_group_size`` consecutive tokens of one channel (KIVI).

Use: ``model.generate(..., past_key_values=QuantizedKVCache(model.config, nbits=4))`` (``cache=``
in transformers 5.x). ``cache_implementation=`` cannot select it: transformers' ``generate()``
builds caches only from its own list of names, and ``cache_implementation="quantized"`` only from
its hard-wired backends ("quanto" meaning optimum-quanto, "hqq", "fp8"), with no registration hook.
"""

import functools
from typing import Optional

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .quantized_states import QuantizedStates, check_head_dim, check_settings

__all__ = ["QuantizedKVCache", "QuantizedKVLayer"]


def _check_residual_length(residual_length) -> None:
    if isinstance(residual_length, bool) or not isinstance(residual_length, int):
        raise TypeError(f"QuantizedKVCache: residual_length must be an int >= 0, "
                        f"got {type(residual_length).__name__}")
    if residual_length < 0:
        raise ValueError(f"QuantizedKVCache: residual_length must be an int >= 0, got {residual_length}")


class QuantizedKVLayer(DynamicLayer):
    """One attention layer's cache: quantized older tokens + a float window of the recent ones.

    ``self.keys`` / ``self.values`` hold the float window, ``quantized_keys`` / ``quantized_values``
    the rest; ``update`` returns the whole sequence in float (dequantized codes, then the window).
    """

    is_compileable = False
    # Cropping would cut into quantized blocks; generate() does not crop caches that say no.
    is_croppable = False

    def __init__(self, nbits: int = 4, axis_key: int = -1, axis_value: int = 0, q_group_size: int = 64,
                 residual_length: int = 128):
        super().__init__()
        check_settings(nbits, axis_key, q_group_size, "QuantizedKVCache (keys)")
        check_settings(nbits, axis_value, q_group_size, "QuantizedKVCache (values)")
        _check_residual_length(residual_length)
        self.nbits, self.axis_key, self.axis_value = nbits, axis_key, axis_value
        self.q_group_size, self.residual_length = q_group_size, residual_length
        self.cumulative_length = 0
        self._new_quantized_states()

    def _new_quantized_states(self) -> None:
        self.quantized_keys = QuantizedStates(self.nbits, self.axis_key, self.q_group_size)
        self.quantized_values = QuantizedStates(self.nbits, self.axis_value, self.q_group_size)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        for name, states, axis in (("keys", key_states, self.axis_key), ("values", value_states, self.axis_value)):
            check_head_dim(states.shape[-1], axis, self.q_group_size, f"QuantizedKVCache ({name})")
        self.device = key_states.device
        self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        """Appends the new states; returns all keys and values so far ([batch, heads, tokens, head_dim])."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        self.cumulative_length += key_states.shape[-2]
        held = self.quantized_keys.tokens
        out = []
        for window, new, quantized in ((self.keys, key_states, self.quantized_keys),
                                       (self.values, value_states, self.quantized_values)):
            b, h, w, d = window.shape
            t = new.shape[-2]
            # One buffer for the returned sequence: codes dequantized straight into its front.
            full = torch.empty(b, h, held + w + t, d, dtype=new.dtype, device=new.device)
            if held:
                quantized.dequantize(out=full[..., :held, :])
            full[..., held:held + w, :].copy_(window)
            full[..., held + w:, :].copy_(new)
            out.append(full)
        keys, values = out
        # Tokens beyond the float window leave it whole blocks at a time (a per-channel group
        # spans q_group_size tokens); the same block size for per-token groups keeps keys and
        # values in step and repacks the codes once per block, not per token.
        window = keys.shape[-2] - held
        flush = max(window - self.residual_length, 0) // self.q_group_size * self.q_group_size
        if flush:
            self.quantized_keys.append(keys[..., held:held + flush, :])
            self.quantized_values.append(values[..., held:held + flush, :])
        # clone(): a slice would keep the whole returned buffer alive.
        self.keys = keys[..., held + flush:, :].clone()
        self.values = values[..., held + flush:, :].clone()
        return keys, values

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def nbytes(self) -> int:
        """Bytes held: codes, scales and shifts of the quantized tokens, and the float window."""
        window = self.keys.nbytes + self.values.nbytes if self.is_initialized else 0
        return self.quantized_keys.nbytes() + self.quantized_values.nbytes() + window

    def reset(self) -> None:
        super().reset()
        self.cumulative_length = 0
        self._new_quantized_states()

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("QuantizedKVCache cannot be cropped (its older tokens are quantized in blocks); "
                         "use a DynamicCache for assisted generation")

    def _index_batch(self, index: torch.Tensor) -> None:
        # Exact on the codes: no dequantize/quantize round trip (beam search reorders every step).
        if not self.is_initialized:
            return
        self.quantized_keys.index_batch(index)
        self.quantized_values.index_batch(index)
        index = index.to(self.keys.device)
        self.keys, self.values = self.keys.index_select(0, index), self.values.index_select(0, index)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._index_batch(beam_idx)

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._index_batch(torch.arange(self.keys.shape[0]).repeat_interleave(repeats))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            indices = torch.as_tensor(indices)
            self._index_batch(indices.nonzero().flatten() if indices.dtype == torch.bool else indices)


class QuantizedKVCache(Cache):
    """A ``transformers.Cache`` holding keys and values as int4 or int2 codes (quanto's weights layer).

    Args:
        config: the model's config (``model.config``): one layer per decoder layer, and the settings
            are checked against its head_dim up front. None: layers are added as the model calls them.
        nbits: 4 or 2.
        axis_key, axis_value: 0 for per-token groups (``q_group_size`` channels of one token),
            -1 for per-channel groups (``q_group_size`` consecutive tokens of one channel). The
            default, per-channel keys and per-token values, is KIVI's (keys have outlier channels).
        q_group_size: the group size; must divide head_dim for per-token groups. Tokens move from the
            float window to the codes this many at a time.
        residual_length: how many of the most recent tokens always stay in float (>= 0).

    ``nbytes()`` is the memory the cache holds. Not supported: cropping (assisted generation),
    ``torch.compile`` of the cache, models with sliding-window or other non-full attention layers.
    """

    def __init__(self, config=None, nbits: int = 4, axis_key: int = -1, axis_value: int = 0,
                 q_group_size: int = 64, residual_length: int = 128):
        settings = dict(nbits=nbits, axis_key=axis_key, axis_value=axis_value, q_group_size=q_group_size,
                        residual_length=residual_length)
        QuantizedKVLayer(**settings)  # bad settings fail here, not in the middle of generate()
        if config is None:
            super().__init__(layer_class_to_replicate=functools.partial(QuantizedKVLayer, **settings))
            return
        from transformers.cache_utils import get_layer_types_and_kwargs

        text_config = config.get_text_config(decoder=True)
        layer_types, _ = get_layer_types_and_kwargs(text_config)
        other = sorted(set(layer_types) - {"full_attention"})
        if other:
            raise ValueError(f"QuantizedKVCache holds full-attention layers only; this model also has {other}")
        head_dim = _head_dim(text_config)
        if head_dim is not None:
            for name, axis in (("keys", axis_key), ("values", axis_value)):
                check_head_dim(head_dim, axis, q_group_size, f"QuantizedKVCache ({name})")
        super().__init__(layers=[QuantizedKVLayer(**settings) for _ in layer_types])

    def nbytes(self) -> int:
        """Bytes held by every layer (codes, scales, shifts and float windows)."""
        return sum(layer.nbytes() for layer in self.layers)


def _head_dim(config) -> Optional[int]:
    head_dim = getattr(config, "head_dim", None)
    if head_dim is None and getattr(config, "hidden_size", None) and getattr(config, "num_attention_heads", None):
        head_dim = config.hidden_size // config.num_attention_heads
    return head_dim
