"""Scale folding (quanto.folding), through SmoothQuant's calibration scope: which predecessor each
group of linear layers gets on real transformers architectures, that folding keeps the float model's
outputs (within float rounding), and that unsafe folds are refused with a reason."""

import copy

import pytest
import torch
from outlier_models import llama_groups, mlp_batches, outlier_mlp, tiny_bert, tiny_gemma, tiny_llama, token_batches

import quanto
from quanto.folding import FoldGroup, fold_scales


def outputs(model, x):
    with torch.no_grad():
        out = model(x)
    for key in ("logits", "last_hidden_state"):
        if hasattr(out, key):
            return getattr(out, key)
    return out


def smooth(model, batches, alpha=0.5, **kwargs):
    with torch.no_grad(), quanto.SmoothQuant(model, alpha=alpha, **kwargs) as sq:
        for b in batches:
            model(b)
    return sq


def assert_same_function(a, b, x, rtol=1e-5):
    ya, yb = outputs(a, x), outputs(b, x)
    assert (ya - yb).abs().max() <= rtol * ya.abs().max(), float((ya - yb).abs().max())


def test_llama_groups_and_exact_fold():
    model = tiny_llama()
    original = copy.deepcopy(model)
    batches = token_batches()
    sq = smooth(model, batches, alpha=0.6)
    assert sq.smoothed == llama_groups()  # incl. v_proj -> o_proj across grouped-query heads
    assert set(sq.skipped) == {"lm_head"}
    for x in batches + [torch.tensor([[1, 2, 3, 200]])]:
        assert_same_function(original, model, x)
    # The weights did change: outliers moved from the norms into the weights.
    norm, w = model.model.layers[0].input_layernorm.weight, model.model.layers[0].self_attn.q_proj.weight
    assert norm.max() < 0.5 * original.model.layers[0].input_layernorm.weight.max()
    assert not torch.equal(w, original.model.layers[0].self_attn.q_proj.weight)


def test_bert_post_norm_outputs_feed_residuals_and_are_refused():
    model = tiny_bert()
    original = copy.deepcopy(model)
    batches = token_batches(vocab=256)
    sq = smooth(model, batches)
    # Only value -> attention.output.dense folds (through softmax(QK^T) V); every LayerNorm output
    # also feeds a residual add, and GELU does not commute with a factor.
    assert sq.smoothed == {f"encoder.layer.{i}.attention.self.value": [f"encoder.layer.{i}.attention.output.dense"]
                           for i in range(2)}
    assert "residual" in sq.skipped["encoder.layer.0.intermediate.dense"]
    assert "residual" in sq.skipped["encoder.layer.1.attention.self.query,encoder.layer.1.attention.self.key,"
                                    "encoder.layer.1.attention.self.value"]
    assert "GELU" in sq.skipped["encoder.layer.0.output.dense"]
    assert_same_function(original, model, batches[0])


def test_gemma_one_plus_w_norm_is_refused():
    model = tiny_gemma()
    original = copy.deepcopy(model)
    sq = smooth(model, token_batches())
    assert sorted(sq.smoothed) == sorted(f"model.layers.{i}.{p}" for i in range(2)
                                         for p in ("self_attn.v_proj", "mlp.up_proj"))
    reason = sq.skipped["model.layers.0.mlp.gate_proj,model.layers.0.mlp.up_proj"]
    assert "does not scale its output with its weight" in reason
    assert_same_function(original, model, token_batches()[0])


def test_tied_weights_are_not_folded():
    """Two layers sharing one weight: scaling it for one would scale the other."""
    model = outlier_mlp()
    model.fc2 = torch.nn.Linear(256, 64)
    model.extra = torch.nn.Linear(256, 64)
    model.extra.weight = model.fc2.weight  # tied
    sq = smooth(model, mlp_batches())
    assert "fc1" not in sq.smoothed and "ties" in sq.skipped["fc2"]
    assert sq.smoothed == {"norm": ["fc1"]}


def test_excluded_reader_still_gets_the_factor():
    """A group is one input: excluding k_proj keeps q/v smoothed, and k_proj gets the factor too
    (exact in float), or the float function would change."""
    model = tiny_llama()
    original = copy.deepcopy(model)
    sq = smooth(model, token_batches(), exclude=["*.k_proj", "*mlp*"])
    assert sq.smoothed == {k: v for k, v in llama_groups().items() if not all("mlp" in r for r in v)}
    assert_same_function(original, model, token_batches()[0])
    smooth(model2 := tiny_llama(), token_batches(), include="*.down_proj")
    assert not torch.equal(model2.model.layers[0].mlp.up_proj.weight, original.model.layers[0].mlp.up_proj.weight)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fold_in_half_precision_stays_close(dtype):
    model = tiny_llama().to(dtype)
    original = copy.deepcopy(model)
    sq = smooth(model, token_batches())
    assert sq.smoothed == llama_groups()
    x = token_batches()[0]
    ya, yb = outputs(original, x).float(), outputs(model, x).float()
    assert (ya - yb).abs().max() <= 0.05 * ya.abs().max()


def test_fold_scales_errors():
    model = outlier_mlp()
    with pytest.raises(ValueError, match="no predecessor"):
        fold_scales(model, FoldGroup(["fc1"], reason="test"), torch.ones(128))
    with pytest.raises(ValueError, match="positive"):
        fold_scales(model, FoldGroup(["fc1"], predecessor="norm"), -torch.ones(128))
    with pytest.raises(ValueError, match="positive"):
        fold_scales(model, FoldGroup(["fc1"], predecessor="norm"), torch.full((128,), float("nan")))


def test_gpt2_conv1d_layers_fold():
    """transformers' Conv1D stores weights [in, out]: pre-norm GPT-2 folds ln_1 -> c_attn, ln_2 -> c_fc."""
    import transformers as tr

    torch.manual_seed(0)
    model = tr.GPT2LMHeadModel(tr.GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=2, n_head=2)).eval()
    original = copy.deepcopy(model)
    sq = smooth(model, token_batches())
    assert sq.smoothed == {f"transformer.h.{i}.ln_{j}": [f"transformer.h.{i}.{r}"]
                           for i in range(2) for j, r in ((1, "attn.c_attn"), (2, "mlp.c_fc"))}
    assert_same_function(original, model, token_batches()[0])
    # and AWQ on the same layers
    q = quanto.quantize(copy.deepcopy(original), weights="qint4", optimizer="awq", exclude="lm_head")
    with torch.no_grad(), quanto.Calibration():
        for b in token_batches():
            q(b)
    quanto.freeze(q)
    assert {e["predecessor"] for e in q.transformer.h[0].attn.c_attn.optimizer.report} >= set(sq.smoothed)
