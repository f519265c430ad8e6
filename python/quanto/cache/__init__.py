"""Quantized KV caches for transformers' ``generate()`` (imports transformers)."""

from .quantized_cache import QuantizedKVCache, QuantizedKVLayer
from .quantized_states import QuantizedStates

__all__ = ["QuantizedKVCache", "QuantizedKVLayer", "QuantizedStates"]
