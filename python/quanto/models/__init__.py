"""Helpers for transformers and diffusers models: quantized wrappers with save/load, packaged real models, and
the quality measures (perplexity, sentence embeddings) used to compare quantizations."""

from .evaluate import cached_perplexity, decode_tokens_per_second, perplexity, sentence_embeddings
from .packaged import load_minilm, load_smollm2, minilm_path, smollm2_gguf

# The wrappers import transformers (seconds): only when first used.
_LAZY = {"QuantizedTransformersModel", "QuantizedModelForCausalLM", "QMAP_NAME"}
# transformers' attention implementation for decode steps (imports transformers when used).
_LAZY_ATTENTION = {"DECODE_ATTENTION", "register_decode_attention", "use_decode_attention"}
# The diffusers wrappers import diffusers (seconds): only when first used.
_LAZY_DIFFUSERS = {"QuantizedDiffusersModel", "QuantizedUNet2DConditionModel", "QuantizedPixArtTransformer2DModel",
                   "QuantizedFluxTransformer2DModel"}


def __getattr__(name):
    if name in _LAZY:
        from . import transformers_models

        return getattr(transformers_models, name)
    if name in _LAZY_ATTENTION:
        from . import decode_attention

        return getattr(decode_attention, name)
    if name in _LAZY_DIFFUSERS:
        from . import diffusers_models

        return getattr(diffusers_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "QuantizedTransformersModel",
    "QuantizedModelForCausalLM",
    "QMAP_NAME",
    "DECODE_ATTENTION",
    "register_decode_attention",
    "use_decode_attention",
    "QuantizedDiffusersModel",
    "QuantizedUNet2DConditionModel",
    "QuantizedPixArtTransformer2DModel",
    "QuantizedFluxTransformer2DModel",
    "perplexity",
    "cached_perplexity",
    "sentence_embeddings",
    "decode_tokens_per_second",
    "load_minilm",
    "load_smollm2",
    "minilm_path",
    "smollm2_gguf",
]
