"""quanto checkpoints of tiny Llama models exported to GGUF, read back with the gguf package's reader
and dequantizer (llama.cpp's block formats) and loaded by transformers' GGUF support."""

import gguf
import numpy as np
import pytest
import torch
import transformers as tr
from export_helpers import (bpe_tokenizer, logits, q4_1_grid_weights, quanto_dequantized_weights, reference_model,
                            save_quantized, tiny_llama)

from quanto.export import ExportRefused, export
from quanto.export.gguf_export import rope_row_order
from quanto.models import QuantizedModelForCausalLM

HEADS, KV_HEADS = 4, 2


@pytest.fixture(scope="module")
def tokenizer():
    return bpe_tokenizer()


def _gguf_names(n_layers=2):
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    return lambda hf: names.get_name(hf, try_suffixes=(".weight",))


def _rows(module: str, rows: int):
    """The GGUF row order of a transformers weight (llama.cpp's rotary layout for q/k)."""
    if module.endswith("q_proj"):
        return rope_row_order(rows, HEADS)
    if module.endswith("k_proj"):
        return rope_row_order(rows, KV_HEADS)
    return torch.arange(rows)


def _read(path):
    reader = gguf.GGUFReader(path)
    return reader, {t.name: t for t in reader.tensors}


def _dequantized(t) -> torch.Tensor:
    """A GGUF tensor as llama.cpp computes it (the gguf package's reference dequantization, float32)."""
    if t.tensor_type == gguf.GGMLQuantizationType.F32:
        return torch.from_numpy(np.array(t.data, dtype=np.float32))
    return torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32))


def test_q4_1_blocks_are_quanto_codes_scales_and_shifts(tmp_path, tokenizer):
    """Weights on a Q4_1 grid (as SmolLM2's are): quanto's int4 min/max with groups of 32 recovers the grid,
    and the GGUF file holds exactly quanto's codes, scales and -shifts: every weight exact."""
    model = tiny_llama(vocab_size=len(tokenizer))
    q4_1_grid_weights(model)
    src = save_quantized(model, tmp_path / "q", tokenizer, weights="qint4", group_size=32)
    report = export(src, tmp_path / "m.gguf", format="gguf", tokenizer_pre="smollm")
    assert report.exact and {r.target for r in report.layers} == {"Q4_1"} and len(report.layers) == 14

    qmodel = QuantizedModelForCausalLM.from_pretrained(src).model
    _, tensors = _read(tmp_path / "m.gguf")
    name_of = _gguf_names()
    for name, m in qmodel.named_modules():
        if not hasattr(m, "canonical_weight_tensors"):
            continue
        t = m.canonical_weight_tensors()
        out, cols = m._quanto_qshape
        rows = _rows(name, out)
        codes = torch.ops.quanto.unpack_codes(t["data"], 4, t["scale"].shape[0]).reshape(out, cols)[rows]
        blocks = np.array(tensors[name_of(name + ".weight")].data).reshape(out, cols // 32, 20)
        d = torch.from_numpy(blocks[..., 0:2].copy().view(np.float16)).squeeze(-1)
        mins = torch.from_numpy(blocks[..., 2:4].copy().view(np.float16)).squeeze(-1)
        qs = torch.from_numpy(blocks[..., 4:].copy())
        got_codes = torch.cat([qs & 0xF, qs >> 4], dim=-1).reshape(out, cols)
        assert torch.equal(got_codes, codes), name
        assert torch.equal(d.float(), t["scale"].reshape(out, -1)[rows]), name
        assert torch.equal(mins.float(), -t["shift"].reshape(out, -1)[rows]), name
        w = _dequantized(tensors[name_of(name + ".weight")]).reshape(out, cols)
        assert torch.equal(w, m.dequantized_weight()[rows]), name


@pytest.mark.parametrize("weights,optimizer,group_size,encoding", [
    ("qint8", None, None, "Q8_0"),
    ("qint4", "symmetric", 64, "Q4_0"),
    ("qint4", "zeropoint", 32, "Q4_1"),
    ("qint4", None, None, "Q4_1"),  # per channel (in 128) and g128 (in 384): both multiples of 32
])
def test_fp16_checkpoints_map_within_fp16_rounding(tmp_path, tokenizer, weights, optimizer, group_size, encoding):
    """float16 scales are GGUF's own: the blocks hold them as they are, and the only difference left is
    quanto's fp16 rounding of code * scale (llama.cpp computes it in float32)."""
    src = save_quantized(tiny_llama(vocab_size=len(tokenizer), dtype=torch.float16), tmp_path / "q", tokenizer,
                         weights=weights, optimizer=optimizer, group_size=group_size)
    report = export(src, tmp_path / "m.gguf", format="gguf")
    assert {r.target for r in report.layers} == {encoding}
    _, tensors = _read(tmp_path / "m.gguf")
    name_of = _gguf_names()
    qmodel = QuantizedModelForCausalLM.from_pretrained(src).model
    for name, m in qmodel.named_modules():
        if not hasattr(m, "canonical_weight_tensors"):
            continue
        w, t = m.dequantized_weight(), m.canonical_weight_tensors()
        out, cols = w.shape
        g = tensors[name_of(name + ".weight")]
        assert g.tensor_type == getattr(gguf.GGMLQuantizationType, encoding)
        got = _dequantized(g).reshape(w.shape)
        want = w[_rows(name, out)].float()
        err = (got - want).abs()
        # quanto rounds code * scale (and, with a float shift, the difference) to fp16, whose results
        # are within 2^-11 of the magnitudes involved: |code * scale| and |shift| (or zp * scale).
        scale = t["scale"].reshape(out, -1).float()
        offset = (t["shift"].reshape(out, -1).float() * (scale if t["shift"].dtype == torch.uint8 else 1)).abs() \
            if "shift" in t else torch.zeros_like(scale)
        codes_max = 15 if "shift" in t else 128
        bound = ((codes_max * scale + offset) * 2 ** -10 + 2 ** -24).repeat_interleave(cols // scale.shape[1], dim=1)
        assert (err <= bound[_rows(name, out)]).all(), name
        layer = next(r for r in report.layers if r.name == name_of(name + ".weight"))
        assert layer.max_abs_error == float(err.max()) and (layer.exact == (layer.max_abs_error == 0))


def test_transformers_loads_gguf_with_quanto_logits(tmp_path, tokenizer):
    model = tiny_llama(vocab_size=len(tokenizer))
    q4_1_grid_weights(model)
    src = save_quantized(model, tmp_path / "q", tokenizer, weights="qint4", group_size=32)
    export(src, tmp_path / "m.gguf", format="gguf", tokenizer_pre="smollm")
    ids = torch.tensor([tokenizer("When in the course of human events")["input_ids"]])
    loaded = tr.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()
    want = logits(reference_model(src, tmp_path / "ref"), ids)
    # Exact weights; GGUF keeps rms_norm_eps and rope_theta as float32, hence not bit-identical.
    torch.testing.assert_close(logits(loaded, ids), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits(loaded, ids), logits(QuantizedModelForCausalLM.from_pretrained(src).model, ids),
                               atol=1e-4, rtol=1e-4)
    # The tokenizer transformers rebuilds from the GGUF metadata tokenizes like the original.
    gguf_tok = tr.AutoTokenizer.from_pretrained(tmp_path, gguf_file="m.gguf")
    text = "We hold these truths to be self-evident, that all men are created equal"
    assert gguf_tok(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_metadata(tmp_path, tokenizer):
    model = tiny_llama(vocab_size=len(tokenizer) + 4, tie=True)  # embedding rows past the tokenizer's tokens
    src = save_quantized(model, tmp_path / "q", tokenizer, weights="qint8")
    export(src, tmp_path / "m.gguf", format="gguf", tokenizer_pre="smollm")
    reader, tensors = _read(tmp_path / "m.gguf")
    f = {k: v.contents() for k, v in reader.fields.items() if not k.startswith("tokenizer.ggml.merges")}
    config = tr.AutoConfig.from_pretrained(src)
    assert f["general.architecture"] == "llama" and f["general.file_type"] == gguf.LlamaFileType.MOSTLY_Q8_0
    assert (f["llama.block_count"], f["llama.embedding_length"], f["llama.feed_forward_length"]) == (2, 128, 384)
    assert (f["llama.attention.head_count"], f["llama.attention.head_count_kv"], f["llama.rope.dimension_count"]) == \
        (HEADS, KV_HEADS, 32)
    assert f["llama.context_length"] == 256 and f["llama.vocab_size"] == config.vocab_size
    assert np.float32(f["llama.rope.freq_base"]) == np.float32(config.rope_parameters["rope_theta"])
    assert np.float32(f["llama.attention.layer_norm_rms_epsilon"]) == np.float32(config.rms_norm_eps)
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    vocab = {i: t for t, i in tokenizer.get_vocab().items()}
    tokens = f["tokenizer.ggml.tokens"]
    assert len(tokens) == config.vocab_size  # padded to the embedding's rows
    assert tokens[:len(vocab)] == [vocab[i] for i in range(len(vocab))]
    assert tokens[-1] == f"[PAD{config.vocab_size - 1}]"
    assert f["tokenizer.ggml.token_type"][0] == gguf.TokenType.CONTROL  # <|endoftext|> is special
    assert f["tokenizer.ggml.eos_token_id"] == tokenizer.eos_token_id
    assert f["tokenizer.ggml.bos_token_id"] == tokenizer.bos_token_id
    assert len(reader.fields["tokenizer.ggml.merges"].data) > 0
    # Tied embeddings: no output.weight (llama.cpp then reads token_embd); norms in F32.
    assert "output.weight" not in tensors and tensors["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


def test_refusals_and_reencoding(tmp_path, tokenizer):
    src = save_quantized(tiny_llama(vocab_size=len(tokenizer)), tmp_path / "q2", tokenizer, weights="qint2")
    with pytest.raises(ExportRefused, match="qint2 .*K-quants"):
        export(src, tmp_path / "a.gguf", format="gguf")
    report = export(src, tmp_path / "a.gguf", format="gguf", allow_reencode=True)
    assert report.exact and {r.target for r in report.layers} == {"float"}
    _, tensors = _read(tmp_path / "a.gguf")
    for name, w in quanto_dequantized_weights(src).items():
        got = _dequantized(tensors[_gguf_names()(name + ".weight")]).reshape(w.shape)
        assert torch.equal(got, w[_rows(name, w.shape[0])])

    # int4 groups that are not a multiple of 32
    src = save_quantized(tiny_llama(vocab_size=len(tokenizer)), tmp_path / "g16", tokenizer, weights="qint4",
                         group_size=16)
    with pytest.raises(ExportRefused, match="16 features per scale"):
        export(src, tmp_path / "b.gguf", format="gguf")
    # no tokenizer files
    src = save_quantized(tiny_llama(), tmp_path / "notok", weights="qint8")
    with pytest.raises(ExportRefused, match="no tokenizer.json nor tokenizer.model"):
        export(src, tmp_path / "c.gguf", format="gguf")
    assert not list(tmp_path.glob(".c.gguf.tmp-*")) and not (tmp_path / "c.gguf").exists()
    # not a Llama
    gpt2 = tr.GPT2LMHeadModel(tr.GPT2Config(n_layer=1, n_embd=64, n_head=2, vocab_size=len(tokenizer)))
    src = save_quantized(gpt2, tmp_path / "gpt2", tokenizer, weights="qint8")
    with pytest.raises(ExportRefused, match="model_type 'llama'.*got model_type 'gpt2'"):
        export(src, tmp_path / "d.gguf", format="gguf")


def test_dynamic_activations_export_with_a_note(tmp_path, tokenizer):
    """llama.cpp quantizes the activations of its quantized matmuls itself: the weights export as
    they would weight-only, and the report says the per-token activation setting is not stored."""
    kw = dict(weights="qint4", optimizer="symmetric", group_size=32)
    plain = save_quantized(tiny_llama(vocab_size=len(tokenizer), dtype=torch.float16), tmp_path / "w" / "q", tokenizer, **kw)
    dynamic = save_quantized(tiny_llama(vocab_size=len(tokenizer), dtype=torch.float16), tmp_path / "d" / "q", tokenizer,
                             activations="qint8", dynamic_activations=True, **kw)
    export(plain, tmp_path / "w.gguf", format="gguf")
    report = export(dynamic, tmp_path / "d.gguf", format="gguf")
    assert any("llama.cpp quantizes the activations" in n for n in report.notes), report.notes
    assert (tmp_path / "w.gguf").read_bytes() == (tmp_path / "d.gguf").read_bytes()  # (same folder name)
