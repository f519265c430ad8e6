"""Helpers for transformers models: quantized wrappers with save/load, packaged real models, and
the quality measures (perplexity, sentence embeddings) used to compare quantizations."""

from .evaluate import decode_tokens_per_second, perplexity, sentence_embeddings
from .packaged import load_minilm, load_smollm2, minilm_path, smollm2_gguf

__all__ = [
    "perplexity",
    "sentence_embeddings",
    "decode_tokens_per_second",
    "load_minilm",
    "load_smollm2",
    "minilm_path",
    "smollm2_gguf",
]
