"""Helpers for transformers models: quantized wrappers with save/load, packaged real models, and
the quality measures (perplexity, sentence embeddings) used to compare quantizations."""

from .evaluate import decode_tokens_per_second, perplexity, sentence_embeddings
from .packaged import load_minilm, load_smollm2, minilm_path, smollm2_gguf

# The wrappers import transformers (seconds): only when first used.
_LAZY = {"QuantizedTransformersModel", "QuantizedModelForCausalLM", "QMAP_NAME"}


def __getattr__(name):
    if name in _LAZY:
        from . import transformers_models

        return getattr(transformers_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "QuantizedTransformersModel",
    "QuantizedModelForCausalLM",
    "QMAP_NAME",
    "perplexity",
    "sentence_embeddings",
    "decode_tokens_per_second",
    "load_minilm",
    "load_smollm2",
    "minilm_path",
    "smollm2_gguf",
]
