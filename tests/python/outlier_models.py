"""Tiny models with outlier activation channels for the SmoothQuant / AWQ tests (fixed seeds).

LLM activations have a few input channels far larger than the rest, mostly because norm weights
amplify them: these models get that by giving a few norm weights (and a few first-layer rows) large
values, so per-tensor activation scales and per-group weight rounding both suffer as in real models.
"""

import torch
import transformers as tr
from torch import nn


class OutlierMLP(nn.Module):
    """LayerNorm -> fc1 -> ReLU -> fc2: both linear layers have a foldable predecessor (the norm,
    and fc1 through the ReLU, which commutes with positive factors)."""

    def __init__(self, d=128, hidden=256, out=64):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.norm(x))))


def outlier_mlp(seed=0) -> OutlierMLP:
    torch.manual_seed(seed)
    m = OutlierMLP().eval()
    with torch.no_grad():
        m.norm.weight[torch.randperm(128)[:6]] = 25.0
        m.fc1.weight[torch.randperm(256)[:8]] *= 8
    return m


def mlp_batches(n=4, tokens=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(tokens, 128, generator=g) for _ in range(n)]


def _amplify(model, factor=20.0, channels=4):
    """A few large norm weights (outliers in q/k/v and gate/up inputs) and up_proj rows (in down_proj's)."""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, m in model.named_modules():
            if name.endswith("layernorm") or name.endswith("LayerNorm"):
                m.weight[torch.randperm(m.weight.numel(), generator=g)[:channels]] *= factor
            if name.endswith("up_proj"):
                m.weight[torch.randperm(m.weight.shape[0], generator=g)[:channels]] *= factor


def tiny_llama(tie=True, outliers=True, seed=0):
    """2-layer Llama with grouped-query attention (4 heads, 2 key/value heads)."""
    torch.manual_seed(seed)
    cfg = tr.LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    model = tr.LlamaForCausalLM(cfg).eval()
    if outliers:
        _amplify(model)
    return model


def tiny_bert(seed=0):
    """2-layer BERT: post-norm, so its LayerNorm outputs also feed residual connections."""
    torch.manual_seed(seed)
    cfg = tr.BertConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=64)
    return tr.BertModel(cfg).eval()


def tiny_gemma(seed=0):
    """2-layer Gemma: its RMSNorm computes norm(x) * (1 + w), so dividing w does not fold."""
    torch.manual_seed(seed)
    cfg = tr.GemmaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=32)
    return tr.GemmaForCausalLM(cfg).eval()


def token_batches(n=3, length=24, vocab=256, seed=3):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (1, length), generator=g) for _ in range(n)]


LLAMA_GROUPS = {  # predecessor -> readers, per layer (v_proj -> o_proj shares factors across GQA heads)
    "input_layernorm": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"],
    "self_attn.v_proj": ["self_attn.o_proj"],
    "post_attention_layernorm": ["mlp.gate_proj", "mlp.up_proj"],
    "mlp.up_proj": ["mlp.down_proj"],
}


def llama_groups(layers=2):
    return {f"model.layers.{i}.{p}": [f"model.layers.{i}.{r}" for r in readers]
            for i in range(layers) for p, readers in LLAMA_GROUPS.items()}


def relative_error(model, reference, x) -> float:
    """Mean squared output error of ``model`` relative to ``reference``'s mean square, on ``x``."""
    with torch.no_grad():
        y, want = model(x), reference(x)
    if hasattr(y, "logits"):
        y, want = y.logits, want.logits
    return float((y - want).pow(2).mean() / want.pow(2).mean())
