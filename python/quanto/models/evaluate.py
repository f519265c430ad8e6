"""Model-level quality measures used by the tests and examples: perplexity of a causal LM on a
text, and mean-pooled sentence embeddings (sentence-transformers' recipe for MiniLM)."""

import math
import statistics
import time
from typing import Optional

import torch
import torch.nn.functional as F

__all__ = ["perplexity", "cached_perplexity", "sentence_embeddings", "decode_tokens_per_second"]

@torch.no_grad()
def perplexity(model, input_ids: torch.Tensor, context_length: int = 512, stride: Optional[int] = None) -> float:
    """exp(mean negative log-likelihood) of ``input_ids`` ([n] or [1, n]) under ``model``.

    Windows of ``context_length`` tokens start every ``stride`` tokens (default: the context length,
    i.e. disjoint windows); each token is scored once, in the first window that predicts it with
    the most context (the usual sliding-window recipe). A token with no context in its window (the
    first one, and with disjoint windows the first of each window) is not scored.
    """
    if input_ids.dim() == 2:
        if input_ids.shape[0] != 1:
            raise ValueError(f"perplexity: input_ids must hold one sequence, got shape {tuple(input_ids.shape)}")
        input_ids = input_ids[0]
    if input_ids.dim() != 1 or input_ids.numel() < 2:
        raise ValueError(f"perplexity: input_ids must be a 1-D sequence of 2+ tokens, got {tuple(input_ids.shape)}")
    stride = context_length if stride is None else stride
    if not 0 < stride <= context_length:
        raise ValueError(f"perplexity: need 0 < stride <= context_length, got stride={stride}, "
                         f"context_length={context_length}")
    device = next(model.parameters()).device
    n = input_ids.numel()
    nll, count, scored_until = 0.0, 0, 1  # tokens [1, scored_until) are scored
    begin = 0
    while scored_until < n:
        end = min(begin + context_length, n)
        window = input_ids[begin:end].to(device).unsqueeze(0)
        logits = model(window, use_cache=False).logits[0, :-1].float()
        targets = window[0, 1:]
        # Position p of logits predicts token begin + p + 1; score only tokens not scored yet (with
        # disjoint windows, a window's first token has no context in it and stays unscored).
        first = max(scored_until - (begin + 1), 0)
        nll += F.cross_entropy(logits[first:], targets[first:], reduction="sum").item()
        count += targets.numel() - first
        scored_until = end
        begin += stride
    return math.exp(nll / count)


@torch.no_grad()
def cached_perplexity(model, input_ids: torch.Tensor, cache, chunk_size: int = 32):
    """(perplexity, top-1 predictions) of ``input_ids`` ([n] or [1, n]) read through a KV ``cache``.

    The sequence is fed ``chunk_size`` tokens at a time, so each chunk attends to the earlier tokens
    as the cache holds them (quantized, for a quantized cache) — what decoding sees — rather than
    to exact float states as a single forward pass would. ``cache`` is a fresh ``transformers.Cache``.
    Returns exp(mean NLL) of tokens 1..n-1 and the argmax prediction for each of them ([n-1]), so
    two caches can be compared token by token.
    """
    ids = input_ids if input_ids.dim() == 2 else input_ids.unsqueeze(0)
    if ids.shape[0] != 1 or ids.shape[1] < 2:
        raise ValueError(f"cached_perplexity: input_ids must be one sequence of 2+ tokens, got {tuple(input_ids.shape)}")
    if chunk_size < 1:
        raise ValueError(f"cached_perplexity: chunk_size must be >= 1, got {chunk_size}")
    ids = ids.to(next(model.parameters()).device)
    nll, predictions = 0.0, []
    n = ids.shape[1]
    for begin in range(0, n - 1, chunk_size):
        chunk = ids[:, begin:min(begin + chunk_size, n - 1)]
        logits = model(chunk, cache=cache, use_cache=True).logits[0].float()
        targets = ids[0, begin + 1:begin + 1 + chunk.shape[1]]
        nll += F.cross_entropy(logits, targets, reduction="sum").item()
        predictions.append(logits.argmax(-1))
    return math.exp(nll / (n - 1)), torch.cat(predictions)


@torch.no_grad()
def sentence_embeddings(model, batch) -> torch.Tensor:
    """Mean-pooled, L2-normalised last hidden states ([sentences, hidden], float32)."""
    hidden = model(**batch).last_hidden_state.float()
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return F.normalize(pooled, dim=-1)


@torch.no_grad()
def decode_tokens_per_second(model, input_ids: torch.Tensor, new_tokens: int = 32, warmup: int = 4) -> float:
    """Greedy decode speed (tokens/s) after a prompt: one over the median time of a decode step
    (the prompt's forward pass and ``warmup`` steps excluded; the median resists a busy machine)."""
    ids = input_ids.to(next(model.parameters()).device)
    if ids.dim() == 1:
        ids = ids.unsqueeze(0)
    out = model(ids, use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
    steps = []
    for i in range(warmup + new_tokens):
        start = time.perf_counter()
        out = model(token, past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1:].argmax(-1)
        if i >= warmup:
            steps.append(time.perf_counter() - start)
    return 1.0 / statistics.median(steps)
