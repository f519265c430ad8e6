"""Export a quanto checkpoint of a Llama-family model to one GGUF file (llama.cpp), written with the
``gguf`` package's ``GGUFWriter`` tensor by tensor.

GGUF stores weights in blocks of 32 consecutive input features of one row, each with fp16
parameters; llama.cpp dequantizes them in float32:

| quanto weight | GGUF | one block (32 values) | exact when |
| --- | --- | --- | --- |
| qint8, per output channel | Q8_0 | ``d * q``, q int8, d fp16 | the row's scale is an fp16 value |
| qint4, groups of 32·k, float shift | Q4_1 | ``d * q + m``, q 0..15, d, m fp16 | scale and -shift are fp16 values |
| qint4, zero-point all 8 (``optimizer="symmetric"``) | Q4_0 | ``d * (q - 8)`` | the scale is an fp16 value |
| qint4, other integer zero-points | Q4_1 | ``m = -zp * d`` | scale and zp * scale are fp16 values |

A quanto group of ``gs`` features (or one row) gives ``gs / 32`` blocks with the same parameters,
and quanto's codes are the blocks' codes. quanto computes ``code * scale - shift`` in the scales'
dtype T and llama.cpp in float32, so "exact" above is for T = float32; with T = bfloat16/float16,
quanto's own rounding of that product makes the two differ by at most T's rounding. Whatever the
case, the report lists, per tensor, the largest difference between the GGUF weight (as llama.cpp
computes it) and quanto's dequantized weight, and the parameters that fp16 rounded; a scale or
shift that overflows fp16 is refused.

Other quantized weights (qint2, float8, qint4 whose groups are not a multiple of 32, quantized
non-Linear modules) have no GGUF block equivalent: refused, or with ``allow_reencode`` stored as
their dequantized weight in T (F32/F16/BF16: exact, uncompressed). Static activation quantization
is refused. Float tensors keep their dtype (F32/F16/BF16); 1-D ones (norms) become F32, as llama.cpp
wants.

Names, hyper-parameters and tokenizer follow llama.cpp's converter: the ``gguf`` package's tensor
name map for ``llama`` (``token_embd``, ``blk.N.attn_q``, ..., ``output``), and the rows of
``q_proj`` / ``k_proj`` reordered because llama.cpp's rotary embedding rotates adjacent pairs of a
head's features while transformers' Llama rotates its two halves: within each head, row
``h * D + 2 * i + t`` of the GGUF tensor is row ``h * D + t * D / 2 + i`` of transformers'
(``D`` the head size, ``t`` in {0, 1}; ``k_proj`` counts the key/value heads). Rows move whole,
with their blocks, so this changes nothing numerically.
"""

from collections import Counter
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch

from ._checkpoint import QuantizedWeight, QuantoCheckpoint, codes_2d, dequantized, iter_float_tensors, params_2d
from ._gguf_vocab import add_tokenizer
from ._output import fsync_file
from ._report import ExportRefused, ExportReport, LayerReport

__all__ = ["export_gguf", "rope_row_order"]

BLOCK = 32
_FP16_MAX = 65504.0


def rope_row_order(rows: int, heads: int) -> torch.Tensor:
    """Row order of a GGUF q/k tensor: entry ``r`` is the transformers row that goes to GGUF row ``r``."""
    head_dim = rows // heads
    return torch.arange(rows).reshape(heads, 2, head_dim // 2).transpose(1, 2).reshape(rows)


class _Hyper:
    """The Llama hyper-parameters llama.cpp reads, from config.json."""

    def __init__(self, config: dict):
        if config.get("model_type") != "llama":
            raise ExportRefused(f"gguf export supports Llama-family checkpoints (config.json model_type 'llama': "
                                f"Llama, SmolLM2, TinyLlama ...), got model_type {config.get('model_type')!r}")
        for key in ("attention_bias", "mlp_bias"):
            if config.get(key):
                raise ExportRefused(f"gguf export: config.json sets {key}: biases are not supported by this exporter")
        rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
        rope_type = rope.get("rope_type", rope.get("type", "default"))
        if rope_type not in (None, "default"):
            raise ExportRefused(f"gguf export: rope scaling {rope_type!r} is not supported by this exporter "
                                "(only the default rotary embedding)")
        self.rope_theta = float(rope.get("rope_theta", config.get("rope_theta", 10000.0)))
        self.hidden = int(config["hidden_size"])
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.kv_heads = int(config.get("num_key_value_heads") or self.heads)
        self.head_dim = int(config.get("head_dim") or self.hidden // self.heads)
        self.ffn = int(config["intermediate_size"])
        self.context = int(config.get("max_position_embeddings", 2048))
        self.eps = float(config.get("rms_norm_eps", 1e-6))
        self.vocab = int(config["vocab_size"])

    def write(self, w):
        w.add_context_length(self.context)
        w.add_embedding_length(self.hidden)
        w.add_block_count(self.layers)
        w.add_feed_forward_length(self.ffn)
        w.add_rope_dimension_count(self.head_dim)
        w.add_head_count(self.heads)
        w.add_head_count_kv(self.kv_heads)
        w.add_layer_norm_rms_eps(self.eps)
        w.add_rope_freq_base(self.rope_theta)
        w.add_vocab_size(self.vocab)
        if self.head_dim != self.hidden // self.heads:
            w.add_key_length(self.head_dim)
            w.add_value_length(self.head_dim)


# --- quantized weights -------------------------------------------------------------------------------

class _QuantizedTensor:
    """One quantized module written as GGUF blocks (or, re-encoded, as its dequantized float weight)."""

    def __init__(self, ckpt: QuantoCheckpoint, qw: QuantizedWeight, gguf_name: str, row_order: Optional[torch.Tensor],
                 report: ExportReport):
        self.ckpt, self.qw, self.name, self.row_order, self.report = ckpt, qw, gguf_name, row_order, report
        self.encoding = self._choose()

    def _choose(self) -> Optional[str]:
        qw = self.qw
        gs = qw.group_size or qw.in_features
        if not self._block_layout():
            return None
        if qw.weights.name == "qint8" and qw.in_features % BLOCK == 0:
            return "Q8_0"
        if qw.weights.name == "qint4" and gs % BLOCK == 0:
            if qw.zero_point and bool((self.ckpt.get(qw.keys["shift"]) == 8).all()):
                return "Q4_0"
            return "Q4_1"
        return None

    def _block_layout(self) -> bool:
        """Rows of input features, as GGUF blocks are: Linear weights, and embedding tables (llama.cpp
        reads token_embd rows from quantized blocks too)."""
        return self.qw.module_type in ("Linear", "Embedding") and len(self.qw.shape) == 2

    def why_not(self) -> str:
        qw = self.qw
        if not self._block_layout():
            return f"a quantized {qw.module_type} (only Linear and Embedding weights map to GGUF blocks)"
        if qw.weights.bits == 8 and qw.weights.name != "qint8":
            return f"{qw.weights.name} (GGUF has no float8 type)"
        if qw.weights.name == "qint2":
            return "qint2 (GGUF's 2-bit types are K-quants with 4-bit sub-scales over 256 values: no exact equivalent)"
        return (f"{qw.weights.name} with {qw.group_size or qw.in_features} features per scale (GGUF blocks hold 32: "
                "quantize with a group size that is a multiple of 32)")

    def check_fp16(self):
        """Refuses parameters that overflow fp16 (GGUF stores them as fp16)."""
        if self.encoding is None:
            return
        for part in ("scale", "shift"):
            if part in self.qw.keys:
                t = self.ckpt.get(self.qw.keys[part])
                if t.is_floating_point() and bool((t.float().abs() > _FP16_MAX).any()):
                    raise ExportRefused(f"gguf export: {self.qw.name!r} has a {part} beyond fp16's range "
                                        f"(|{part}| > 65504), which GGUF cannot store; pass allow_reencode=True to "
                                        "store this weight as float")

    def info(self, dtype: torch.dtype) -> Tuple[str, List[int], int, "object"]:
        """(name, byte shape, nbytes, GGML type) for the writer's tensor table."""
        import gguf

        out, cols = self.qw.out_features, self.qw.in_features
        if self.encoding is None:
            ggml = {torch.float32: gguf.GGMLQuantizationType.F32, torch.float16: gguf.GGMLQuantizationType.F16,
                    torch.bfloat16: gguf.GGMLQuantizationType.BF16}[dtype]
            size = torch.empty((), dtype=dtype).element_size()
            return self.name, [out, cols * size], out * cols * size, ggml
        ggml = getattr(gguf.GGMLQuantizationType, self.encoding)
        block_bytes = gguf.GGML_QUANT_SIZES[ggml][1]
        row = cols // BLOCK * block_bytes
        return self.name, [out, row], out * row, ggml

    def produce(self) -> np.ndarray:
        qw = self.qw
        state = self.ckpt.weight_state(qw)
        reference = dequantized(state, qw).reshape(qw.out_features, qw.in_features)
        rows = self.row_order if self.row_order is not None else slice(None)
        reference = reference[rows]
        if self.encoding is None:
            self._record(reference, reference, "stored as float (allow_reencode): no GGUF block equivalent")
            return reference.contiguous().view(torch.uint8).numpy()
        scale = params_2d(state["scale"], qw)[rows]
        gs = qw.group_size or qw.in_features
        d = scale.to(torch.float16).repeat_interleave(gs // BLOCK, dim=1)  # one fp16 scale per block
        if self.encoding == "Q8_0":
            q = state["data"].reshape(qw.out_features, qw.in_features)[rows]
            blocks = q.reshape(q.shape[0], -1, BLOCK)
            exported = (blocks.float() * d.float().unsqueeze(-1)).reshape(q.shape)
            payload = [d.view(torch.uint8).reshape(*d.shape, 2), blocks.view(torch.uint8)]
            rounded = bool((d.float() != scale.repeat_interleave(gs // BLOCK, dim=1).float()).any())
        else:
            codes = codes_2d(state, qw)[rows]
            blocks = codes.reshape(codes.shape[0], -1, BLOCK)
            nibbles = blocks[..., :BLOCK // 2] | (blocks[..., BLOCK // 2:] << 4)  # byte i: codes i and i + 16
            scale_b = scale.repeat_interleave(gs // BLOCK, dim=1)
            rounded = bool((d.float() != scale_b.float()).any())
            if self.encoding == "Q4_0":
                exported = (d.float().unsqueeze(-1) * (blocks.float() - 8)).reshape(codes.shape)
                payload = [d.view(torch.uint8).reshape(*d.shape, 2), nibbles]
            else:
                shift = params_2d(state["shift"], qw)[rows].repeat_interleave(gs // BLOCK, dim=1)
                # float32 holds both exactly: -shift (at most bfloat16/float32 bits), and zp * d (4 + 11 bits).
                if shift.dtype == torch.uint8:  # integer zero-point: d * (q - zp) = d * q - zp * d
                    m_exact = -(shift.float() * d.float())
                else:
                    m_exact = -shift.float()
                m = m_exact.to(torch.float16)
                rounded = rounded or bool((m.float() != m_exact).any())
                exported = (d.float().unsqueeze(-1) * blocks.float() + m.float().unsqueeze(-1)).reshape(codes.shape)
                payload = [d.view(torch.uint8).reshape(*d.shape, 2), m.view(torch.uint8).reshape(*m.shape, 2), nibbles]
        note = ("fp16 rounding of the scales" + (" and shifts" if self.encoding == "Q4_1" else "")) if rounded else ""
        self._record(exported, reference, note)
        return torch.cat(payload, dim=-1).reshape(qw.out_features, -1).contiguous().numpy()

    def _record(self, exported: torch.Tensor, reference: torch.Tensor, note: str):
        err = float((exported.float() - reference.float()).abs().max()) if reference.numel() else 0.0
        qw = self.qw
        g = f"g{qw.group_size}" if qw.group_size else "per-channel"
        source = qw.weights.name if qw.weights.bits == 8 else \
            f"{qw.weights.name} {g} {'zero-point' if qw.zero_point else 'float shift'}"
        if err != 0.0 and not note:
            note = "quanto rounds code * scale to its scale dtype, llama.cpp computes in float32"
        self.report.layers.append(LayerReport(self.name, source, self.encoding or "float", err, err == 0.0, note))


# --- the export -------------------------------------------------------------------------------------

def _float_entry(ckpt: QuantoCheckpoint, hf_name: str, gguf_name: str, row_order: Optional[torch.Tensor]):
    """(name, byte shape, nbytes, GGML type, producer) of a float tensor."""
    import gguf

    dtype_name, shape = ckpt.get_slice_info(hf_name)
    types = {"F32": (torch.float32, gguf.GGMLQuantizationType.F32),
             "F16": (torch.float16, gguf.GGMLQuantizationType.F16),
             "BF16": (torch.bfloat16, gguf.GGMLQuantizationType.BF16)}
    if dtype_name not in types:
        raise ExportRefused(f"gguf export: tensor {hf_name!r} has dtype {dtype_name}; expected F32, F16 or BF16")
    dtype, ggml = types[dtype_name]
    if len(shape) == 1:  # norms: llama.cpp wants F32 (widening is exact)
        dtype, ggml = torch.float32, gguf.GGMLQuantizationType.F32
    size = torch.empty((), dtype=dtype).element_size()
    cols = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    byte_shape = [shape[0], cols * size] if len(shape) > 1 else [shape[0] * size]

    def produce():
        t = ckpt.get(hf_name).to(dtype)
        if row_order is not None:
            t = t[row_order]
        return t.contiguous().view(torch.uint8).reshape(byte_shape).numpy()

    return gguf_name, byte_shape, int(np.prod(byte_shape)), ggml, produce


def export_gguf(ckpt: QuantoCheckpoint, out_file: Path, allow_reencode: bool, report: ExportReport,
                tokenizer_pre: Optional[str] = None) -> ExportReport:
    """Writes the GGUF file for ``ckpt`` to ``out_file`` (a temporary path)."""
    import gguf

    hp = _Hyper(ckpt.config_dict)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, hp.layers)

    def gguf_name(hf: str) -> str:
        name = names.get_name(hf, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportRefused(f"gguf export: tensor {hf!r} has no llama.cpp name; is this a plain Llama checkpoint?")
        return name

    def row_order(hf_module: str) -> Optional[torch.Tensor]:
        if hf_module.endswith("self_attn.q_proj"):
            return rope_row_order(hp.heads * hp.head_dim, hp.heads)
        if hf_module.endswith("self_attn.k_proj"):
            return rope_row_order(hp.kv_heads * hp.head_dim, hp.kv_heads)
        return None

    # Plan every tensor (and refuse) before writing anything.
    problems = []
    quantized: List[_QuantizedTensor] = []
    dynamic_noted = False
    for qw in ckpt.modules.values():
        if qw.activations is not None:
            problems.append(f"{qw.name}: static activation quantization (llama.cpp quantizes activations its own "
                            "way); quantize the weights only to export")
            continue
        if qw.dynamic_activations is not None and not dynamic_noted:
            # Not an error: llama.cpp always quantizes activations at run time (blocks of 32, Q8_0 / Q8_K).
            report.notes.append(f"dynamic per-token {qw.dynamic_activations.name} activations are not stored: "
                                "llama.cpp quantizes the activations of its quantized matmuls itself, per block of 32")
            dynamic_noted = True
        qt = _QuantizedTensor(ckpt, qw, gguf_name(qw.name + ".weight"), row_order(qw.name), report)
        if qt.encoding is None and not allow_reencode:
            problems.append(f"{qw.name}: {qt.why_not()}; or pass allow_reencode=True (--allow-reencode) to store it "
                            "as float")
        elif allow_reencode and qt.encoding is not None:
            try:
                qt.check_fp16()
            except ExportRefused:
                qt.encoding = None
        else:
            qt.check_fp16()
        quantized.append(qt)
    if problems:
        shown = problems[:8] + ([f"... ({len(problems)} modules)"] if len(problems) > 8 else [])
        raise ExportRefused("cannot export to GGUF exactly:\n  - " + "\n  - ".join(shown))

    scale_dtype = ckpt.scale_dtype() or torch.float32
    entries: List[Tuple[str, List[int], int, object, Callable[[], np.ndarray]]] = []
    for hf in iter_float_tensors(ckpt):
        if hf.endswith("rotary_emb.inv_freq"):
            continue  # recomputed by llama.cpp
        module = hf.rsplit(".", 1)[0]
        entries.append(_float_entry(ckpt, hf, gguf_name(hf), row_order(module) if hf.endswith(".weight") else None))
        report.copied_tensors += 1
    for qt in quantized:
        name, shape, nbytes, ggml = qt.info(scale_dtype)
        entries.append((name, shape, nbytes, ggml, qt.produce))
    entries.sort(key=lambda e: _tensor_order(e[0]))

    writer = gguf.GGUFWriter(None, "llama")
    try:
        writer.add_name(ckpt.config_dict.get("_name_or_path") or ckpt.folder.name)
        hp.write(writer)
        writer.add_file_type(_file_type(quantized, scale_dtype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        add_tokenizer(writer, ckpt.folder, hp.vocab, tokenizer_pre or "default")
        for name, shape, nbytes, ggml, _ in entries:
            writer.add_tensor_info(name, shape, np.dtype(np.uint8), nbytes, raw_dtype=ggml)
        writer.write_header_to_file(out_file)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for _, _, _, _, produce in entries:
            writer.write_tensor_data(produce())
        writer.flush()
    finally:
        writer.close()
    fsync_file(out_file)
    if any(not qt.encoding for qt in quantized):
        report.notes.append("some quantized weights were stored as float (allow_reencode): exact but uncompressed")
    if tokenizer_pre is None:
        report.notes.append("tokenizer.ggml.pre = 'default' (llama.cpp's generic pre-tokenizer); pass tokenizer_pre "
                            "(--tokenizer-pre) with the model's name in llama.cpp, e.g. 'smollm' or 'llama-bpe'")
    return report


def _tensor_order(name: str):
    """token_embd, the blocks in order, then output_norm and output (llama.cpp's converters' order)."""
    if name.startswith("blk."):
        return (1, int(name.split(".")[1]), name)
    return (0 if name.startswith("token_embd") else 2, 0, name)


def _file_type(quantized: List[_QuantizedTensor], scale_dtype: torch.dtype) -> int:
    import gguf

    counts = Counter(qt.encoding for qt in quantized if qt.encoding)
    if counts:
        return int(getattr(gguf.LlamaFileType, "MOSTLY_" + counts.most_common(1)[0][0]))
    return int({torch.float32: gguf.LlamaFileType.ALL_F32, torch.float16: gguf.LlamaFileType.MOSTLY_F16,
                torch.bfloat16: gguf.LlamaFileType.MOSTLY_BF16}[scale_dtype])
