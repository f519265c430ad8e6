"""GGUF tokenizer metadata (``tokenizer.ggml.*``) from a checkpoint folder's tokenizer files, read with
the ``gguf`` package's vocabulary classes.

- ``tokenizer.json`` with a byte-level BPE model (GPT-2 style: SmolLM2, Llama 3, ...) -> ``gpt2``
  with its merges;
- ``tokenizer.json`` with a byte-fallback BPE (SentencePiece-converted: Llama 2, Mistral) -> ``llama``
  with scores;
- ``tokenizer.model`` (SentencePiece, needs the ``sentencepiece`` package) -> ``llama``.

Special tokens (BOS/EOS/PAD/..., whether to add BOS) and the chat template come from
``tokenizer_config.json`` / ``config.json`` (``gguf.SpecialVocab``). Tokens that ``tokenizer.json``
marks as special are CONTROL tokens (llama.cpp never produces them from text), other added
tokens USER_DEFINED. When the model's vocabulary is larger than the tokenizer's (padded embedding
rows), the missing ids are filled with ``[PAD<id>]`` tokens of type UNUSED, as llama.cpp expects one
token per embedding row.

llama.cpp also needs the pre-tokenizer's name (``tokenizer.ggml.pre``), which no tokenizer file
states; llama.cpp's own converter recognises it by fingerprinting the tokenizer. Give it with
``tokenizer_pre`` (e.g. "smollm", "llama-bpe"); the default, "default", is llama.cpp's generic
GPT-2 pre-tokenizer.
"""

import json
from pathlib import Path
from typing import List

from ._report import ExportRefused

__all__ = ["add_tokenizer"]


def add_tokenizer(writer, folder: Path, vocab_size: int, tokenizer_pre: str):
    import gguf

    tokenizer_json = folder / "tokenizer.json"
    if tokenizer_json.is_file():
        data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
        model = data.get("model", {})
        if model.get("type") != "BPE":
            raise ExportRefused(f"gguf export: {str(tokenizer_json)!r} holds a {model.get('type')!r} tokenizer; this "
                                "exporter writes BPE tokenizers (byte-level or byte-fallback) and SentencePiece models")
        if model.get("byte_fallback", False):
            vocab, kind = gguf.vocab.LlamaHfVocab(folder), "llama"
        else:
            vocab, kind = gguf.vocab.BpeVocab(folder), "gpt2"
        specials = {t["id"]: bool(t.get("special")) for t in data.get("added_tokens", [])}
    elif (folder / "tokenizer.model").is_file():
        try:
            vocab, kind = gguf.vocab.SentencePieceVocab(folder), "llama"
        except ImportError:
            raise ExportRefused("gguf export: reading tokenizer.model needs the sentencepiece package "
                                "(pip install sentencepiece), or a tokenizer.json in the folder") from None
        specials = {}
    else:
        raise ExportRefused(f"gguf export: no tokenizer.json nor tokenizer.model in {str(folder)!r}: llama.cpp needs "
                            "the vocabulary; copy the model's tokenizer files into the checkpoint folder")

    tokens: List[bytes] = []
    scores: List[float] = []
    types: List[int] = []
    for text, score, token_type in vocab.all_tokens():
        tokens.append(text if isinstance(text, bytes) else str(text).encode("utf-8"))
        scores.append(float(score))
        types.append(int(token_type))
    for token_id, special in specials.items():
        if token_id < len(types):
            types[token_id] = int(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
    if len(tokens) > vocab_size:
        raise ExportRefused(f"gguf export: the tokenizer has {len(tokens)} tokens but the model's vocab_size is "
                            f"{vocab_size}")
    for i in range(len(tokens), vocab_size):
        tokens.append(f"[PAD{i}]".encode("utf-8"))
        scores.append(-1000.0)
        types.append(int(gguf.TokenType.UNUSED))

    writer.add_tokenizer_model(kind)
    writer.add_tokenizer_pre(tokenizer_pre)
    writer.add_token_list(tokens)
    if kind == "llama":
        writer.add_token_scores(scores)
    writer.add_token_types(types)
    gguf.SpecialVocab(folder, load_merges=kind == "gpt2", n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
