"""A transformers attention implementation whose decode steps run ``torch.ops.quanto.decode_attention``.

One query position per head (every step of ``generate`` after the prompt) is the case where
PyTorch's CPU ``scaled_dot_product_attention`` is slowest: on bf16 it costs several times the
float32 kernel, and with a static KV cache it computes every cached position, masked or not.
``decode_attention`` reads the cache in place, shares each key/value head between its
grouped-query heads without copies, skips masked positions and computes in float32. Everything
else (prompts, training, dropout, soft-capping, attention sinks, position biases, float16 on CPU)
goes to transformers' own ``sdpa`` function unchanged.

Use::

    quanto.models.use_decode_attention(model)     # on a loaded model
    # or, once registered, at load time:
    AutoModelForCausalLM.from_pretrained(..., attn_implementation=quanto.models.DECODE_ATTENTION)

It works under ``torch.compile`` (the op has a shape-only kernel) and on every device (elsewhere
than the CPU the op runs ATen's ``scaled_dot_product_attention``).
"""

import torch

__all__ = ["DECODE_ATTENTION", "register_decode_attention", "use_decode_attention"]

DECODE_ATTENTION = "quanto_sdpa"

# Arguments that change the attention's math beyond a mask; with any of them set, transformers' sdpa runs.
_UNSUPPORTED_KWARGS = ("softcap", "s_aux", "sinks", "position_bias")


def _decode_step(module, query, key, value, dropout, kwargs) -> bool:
    if query.shape[2] != 1 or dropout != 0.0 or key.shape[-1] != query.shape[-1]:
        return False
    if query.dtype == torch.float16 and query.device.type == "cpu":  # the op would only forward to ATen's SDPA
        return False
    if kwargs.get("output_attentions") or any(kwargs.get(name) is not None for name in _UNSUPPORTED_KWARGS):
        return False
    return not (torch.is_grad_enabled() and (query.requires_grad or key.requires_grad or value.requires_grad))


def sdpa_decode_forward(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None,
                        **kwargs):
    """transformers' attention-function contract: query [B, H, q_len, D], key/value [B, Hkv, L, D]; returns
    (output [B, q_len, H, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if not _decode_step(module, query, key, value, dropout, kwargs):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    out = torch.ops.quanto.decode_attention(query, key, value, attention_mask, float(scale))
    return out.transpose(1, 2), None


def register_decode_attention() -> str:
    """Registers the implementation (and its masks: sdpa's boolean ones) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(DECODE_ATTENTION, sdpa_decode_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(DECODE_ATTENTION, sdpa_mask)
    return DECODE_ATTENTION


def use_decode_attention(model):
    """Switches a transformers model (quantized or not) to the decode-attention implementation; returns it."""
    if not hasattr(model, "set_attn_implementation"):
        raise TypeError(f"use_decode_attention: expected a transformers PreTrainedModel, got {type(model).__name__}")
    model.set_attn_implementation(register_decode_attention())
    return model
