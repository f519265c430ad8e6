"""Fixtures for the real-model tests: every packaged model is loaded once per test session."""

import json
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "data"

# A fixed sentence set for the MiniLM embedding measures.
SENTENCES = json.loads((DATA / "minilm_sentences.json").read_text())["models"]


@pytest.fixture(scope="session")
def minilm():
    """(float model, tokenizer, batch, float embeddings) of all-MiniLM-L6-v2."""
    from quanto.models import load_minilm, sentence_embeddings

    model, tokenizer = load_minilm()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    return model, tokenizer, batch, sentence_embeddings(model, batch)


@pytest.fixture(scope="session")
def smollm2():
    """(float model, tokenizer) of SmolLM2-135M-Instruct from its packaged GGUF (~30 s: once)."""
    from quanto.models import load_smollm2

    return load_smollm2()


@pytest.fixture(scope="session")
def smollm2_text_ids(smollm2):
    """The first 1024 tokens of the perplexity text (two 512-token windows)."""
    _, tokenizer = smollm2
    text = (DATA / "declaration_of_independence.txt").read_text(encoding="utf-8")
    return tokenizer(text, return_tensors="pt").input_ids[0, :1024]
