"""Shared pieces of the export tests: tiny random Llama checkpoints saved by quanto, a small real BPE
tokenizer trained on a repository text, quanto's dequantized float model as the reference, and
compressed-tensors' own decompressor applied to an exported folder."""

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Optional

import torch
import transformers as tr

import quanto
from quanto.models import QuantizedModelForCausalLM

ROOT = Path(__file__).resolve().parents[3]
TEXT = ROOT / "tests" / "data" / "declaration_of_independence.txt"
CLI = os.environ.get("QUANTO_CLI", str(ROOT / "build" / "quanto"))


def bpe_tokenizer(vocab_size: int = 320) -> tr.PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2 style, like SmolLM2's) trained on a public-domain text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train([str(TEXT)], trainer)
    return tr.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|endoftext|>")


def tiny_llama(vocab_size: int = 256, dtype=torch.float32, seed: int = 0, tie: bool = False, hidden: int = 128,
               intermediate: int = 384) -> tr.LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = tr.LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie,
                         max_position_embeddings=256)
    return tr.LlamaForCausalLM(cfg).to(dtype).eval()


def save_quantized(model, folder: Path, tokenizer=None, **settings) -> Path:
    """quanto's checkpoint folder of ``model`` quantized with ``settings`` (QuantizedModelForCausalLM)."""
    QuantizedModelForCausalLM.quantize(model, **settings).save_pretrained(folder)
    if tokenizer is not None:
        tokenizer.save_pretrained(folder)
    return folder


def quanto_dequantized_weights(folder: Path) -> Dict[str, torch.Tensor]:
    """Module name -> quanto's dequantized (out-first) weight of every quantized module of the folder."""
    model = QuantizedModelForCausalLM.from_pretrained(folder).model
    return {n: m.dequantized_weight() for n, m in model.named_modules() if isinstance(m, quanto.QModuleMixin)}


def reference_model(folder: Path, scratch: Path) -> tr.PreTrainedModel:
    """The float model whose quantized layers hold quanto's dequantized weights, saved and reloaded by
    transformers like any float checkpoint (what an exact export must reproduce)."""
    qmodel = QuantizedModelForCausalLM.from_pretrained(folder).model
    config = tr.AutoConfig.from_pretrained(folder)
    float_model = tr.AutoModelForCausalLM.from_config(config, dtype=qmodel.dtype)
    state = {k: v for k, v in qmodel.state_dict().items() if not any(s in k for s in ("weight._", "_scale"))}
    state.update({f"{n}.weight": m.weight.detach().clone() for n, m in qmodel.named_modules()
                  if isinstance(m, quanto.QModuleMixin)})
    missing, unexpected = float_model.load_state_dict(state, strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    float_model.save_pretrained(scratch)
    return tr.AutoModelForCausalLM.from_pretrained(scratch, dtype=qmodel.dtype).eval()


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


def ct_decompressed_weights(out: Path) -> Dict[str, torch.Tensor]:
    """Every quantized module's weight as compressed-tensors' own decompressor gives it back from the
    exported folder (the scheme of a module: the config group whose targets match it)."""
    from compressed_tensors.compressors import BaseCompressor
    from compressed_tensors.quantization import QuantizationConfig
    from compressed_tensors.utils.match import match_name
    from safetensors import safe_open

    config = json.loads((out / "config.json").read_text())
    qconfig = QuantizationConfig.model_validate(config["quantization_config"])
    tensors = {}
    for f in sorted(out.glob("*.safetensors")):
        with safe_open(f, framework="pt") as h:
            tensors.update({k: h.get_tensor(k) for k in h.keys()})
    modules = sorted({k.rsplit(".", 1)[0] for k in tensors if k.endswith((".weight_scale"))})
    weights = {}
    for name in modules:
        assert not any(match_name(name, ig) for ig in qconfig.ignore), name
        schemes = [s for s in qconfig.config_groups.values() if any(match_name(name, t) for t in s.targets)]
        assert len(schemes) == 1, (name, schemes)
        local = {k[len(name) + 1:]: v for k, v in tensors.items() if k.rsplit(".", 1)[0] == name}
        compressor = BaseCompressor.get_value_from_registry(schemes[0].format)
        weights[name] = compressor.decompress(local, schemes[0])["weight"]
    return weights


def folder_digest(folder: Path) -> str:
    """A digest of every file's name and bytes (to check an input is left untouched)."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def assert_bitwise_equal(got: torch.Tensor, want: torch.Tensor, what: str = ""):
    assert got.dtype == want.dtype and got.shape == want.shape, (what, got.dtype, want.dtype, got.shape, want.shape)
    view = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[got.element_size()]
    diff = (got.contiguous().view(view) != want.contiguous().view(view))
    assert not diff.any(), f"{what}: {int(diff.sum())} of {got.numel()} differ"


def q4_1_grid_weights(model: torch.nn.Module, seed: int = 1, names: Optional[set] = None):
    """Replaces each Linear weight by values on a Q4_1 grid: per 32 consecutive inputs, fp16 d and m
    and codes 0..15 including both ends, so quanto's min/max int4 (groups of 32) recovers d, -m and
    the codes exactly (what SmolLM2's packaged weights are)."""
    g = torch.Generator().manual_seed(seed)
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and (names is None or name in names):
            out, cols = m.weight.shape
            blocks = cols // 32
            d = (torch.rand(out, blocks, 1, generator=g) * 0.01 + 0.002).half().float()
            lo = (-(torch.rand(out, blocks, 1, generator=g) * 0.05 + 0.02)).half().float()
            q = torch.randint(0, 16, (out, blocks, 32), generator=g).float()
            q[..., 0], q[..., 1] = 0, 15
            with torch.no_grad():
                m.weight.copy_((d * q + lo).reshape(out, cols))
