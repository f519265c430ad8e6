"""quanto checkpoints exported to compressed-tensors, checked with the real compressed-tensors package
(config schema, packing, its decompressor) and transformers' compressed-tensors loading."""

import json

import pytest
import torch
import transformers as tr
from compressed_tensors.compressors.format import infer_module_format
from compressed_tensors.compressors.pack_quantized.helpers import pack_to_int32
from compressed_tensors.quantization import QuantizationConfig
from export_helpers import (assert_bitwise_equal, ct_decompressed_weights, folder_digest, logits,
                            quanto_dequantized_weights, reference_model, save_quantized, tiny_llama)
from safetensors import safe_open

import quanto
from quanto.export import ExportRefused, export
from quanto.export.compressed_tensors import pack_int32
from quanto.models import QuantizedModelForCausalLM

IDS = torch.tensor([[5, 17, 200, 3, 99, 42, 7, 128, 64, 1, 250, 33]])

# (weights, optimizer, group size, dtype): every mapping, both float dtypes that matter.
CASES = [
    ("qint4", "symmetric", None, torch.float32),     # per-channel (in 128) + g128 (in 384): one "group 128" scheme
    ("qint4", "symmetric", 32, torch.bfloat16),
    ("qint4", "zeropoint", 64, torch.float32),       # asymmetric: weight_zero_point
    ("qint2", "zeropoint", None, torch.bfloat16),
    ("qint8", None, None, torch.bfloat16),
    ("qfloat8", None, None, torch.float32),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(quanto folder, its compressed-tensors export, report) per case, made once for the module's tests."""
    cache = {}

    def get(weights, optimizer, group_size, dtype):
        key = (weights, optimizer, group_size, dtype)
        if key not in cache:
            root = tmp_path_factory.mktemp("ct")
            src = save_quantized(tiny_llama(dtype=dtype), root / "q", weights=weights, optimizer=optimizer,
                                 group_size=group_size)
            digest = folder_digest(src)
            report = export(src, root / "ct")
            assert folder_digest(src) == digest  # the input is never written
            cache[key] = (src, root / "ct", report)
        return cache[key]

    return get


def _tensors(folder):
    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(f, framework="pt") as h:
            out.update({k: h.get_tensor(k) for k in h.keys()})
    return out


@pytest.mark.parametrize("weights,optimizer,group_size,dtype", CASES)
def test_decompressor_gives_back_quanto_weights_exactly(exported, weights, optimizer, group_size, dtype):
    src, out, report = exported(weights, optimizer, group_size, dtype)
    assert report.exact and len(report.layers) == 14 and all(r.max_abs_error == 0 for r in report.layers)

    config = json.loads((out / "config.json").read_text())
    qconfig = QuantizationConfig.model_validate(config["quantization_config"])  # compressed-tensors' schema
    assert qconfig.ignore == ["lm_head"] and config["dtype"] == str(dtype).removeprefix("torch.")
    for scheme in qconfig.config_groups.values():
        # The format is the one compressed-tensors itself infers for the scheme.
        assert infer_module_format(torch.nn.Linear, scheme).value == scheme.format
    assert any("2-bit" in n for n in report.notes) == (weights == "qint2")

    expected = quanto_dequantized_weights(src)
    got = ct_decompressed_weights(out)
    assert set(got) == set(expected)
    for name, w in expected.items():
        assert_bitwise_equal(got[name].to(w.dtype), w, name)
        assert got[name].dtype == w.dtype


def test_packing_matches_compressed_tensors(exported):
    """weight_packed / weight_zero_point equal compressed-tensors' own pack_to_int32 of the signed codes."""
    src, out, _ = exported("qint4", "zeropoint", 64, torch.float32)
    qmodel = QuantizedModelForCausalLM.from_pretrained(src).model
    tensors = _tensors(out)
    m = qmodel.model.layers[1].mlp.down_proj
    t = m.canonical_weight_tensors()
    codes = torch.ops.quanto.unpack_codes(t["data"], 4, t["scale"].shape[0]).reshape(128, 384)
    name = "model.layers.1.mlp.down_proj"
    assert torch.equal(tensors[f"{name}.weight_packed"], pack_to_int32((codes.to(torch.int16) - 8).to(torch.int8), 4))
    zp = (t["shift"].reshape(128, -1).to(torch.int16) - 8).to(torch.int8)
    assert torch.equal(tensors[f"{name}.weight_zero_point"], pack_to_int32(zp, 4, packed_dim=0))
    assert tensors[f"{name}.weight_shape"].tolist() == [128, 384]
    for bits in (2, 4, 8):  # odd widths are padded the same way
        c = torch.randint(0, 2 ** bits, (5, 37), dtype=torch.uint8)
        signed = (c.to(torch.int16) - 2 ** (bits - 1)).to(torch.int8)
        assert torch.equal(pack_int32(c, bits), pack_to_int32(signed, bits))


@pytest.mark.parametrize("weights,optimizer,group_size,dtype,dequantize", [
    ("qint4", "symmetric", None, torch.float32, False),   # compressed on load, decompressed by compressed-tensors
    ("qint4", "symmetric", 32, torch.bfloat16, True),     # transformers' own dequantize-on-load path
    ("qint4", "zeropoint", 64, torch.float32, True),
    ("qint8", None, None, torch.bfloat16, False),
    ("qfloat8", None, None, torch.float32, False),
])
def test_transformers_loads_export_with_quanto_logits(tmp_path, exported, weights, optimizer, group_size, dtype,
                                                     dequantize):
    src, out, _ = exported(weights, optimizer, group_size, dtype)
    # transformers 5.24 loads asymmetric (zero-point) exports with dequantize=True only: its compressed path
    # builds unpacked zero-points on the meta device (a transformers / compressed-tensors limitation).
    model = tr.AutoModelForCausalLM.from_pretrained(
        out, quantization_config=tr.CompressedTensorsConfig(dequantize=dequantize)).eval()
    assert model.dtype == dtype
    got = logits(model, IDS)
    want = logits(reference_model(src, tmp_path / "ref"), IDS)
    assert torch.equal(got, want), (got - want).abs().max()  # same weights, same float model: same logits
    quanto_logits = logits(QuantizedModelForCausalLM.from_pretrained(src).model, IDS)
    tol = 1e-4 if dtype == torch.float32 else 2e-2  # quanto's fused kernels accumulate in another order
    torch.testing.assert_close(got, quanto_logits, atol=tol, rtol=tol)


def test_float_shift_is_refused_naming_the_alternatives(tmp_path):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights="qint4")  # quanto's default: a float shift
    with pytest.raises(ExportRefused) as e:
        export(src, tmp_path / "ct")
    msg = str(e.value)
    for words in ("float shift", "optimizer=\"zeropoint\"", "optimizer=\"symmetric\"", "allow_reencode",
                  "model.layers.0.self_attn.q_proj"):
        assert words in msg, msg
    assert not (tmp_path / "ct").exists() and not list(tmp_path.glob(".ct.tmp-*"))


def test_float_shift_reencoded_on_request_reports_the_error(tmp_path):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights="qint4", group_size=32)
    report = export(src, tmp_path / "ct", allow_reencode=True)
    expected = quanto_dequantized_weights(src)
    got = ct_decompressed_weights(tmp_path / "ct")
    assert not report.exact and {r.name for r in report.layers} == set(expected)
    scales = {n: m.weight_scale for n, m in QuantizedModelForCausalLM.from_pretrained(src).model.named_modules()
              if isinstance(m, quanto.QModuleMixin)}
    for r in report.layers:
        actual = float((got[r.name] - expected[r.name]).abs().max())
        assert r.max_abs_error == actual > 0 and "zero-point" in r.note
        # Rounding the shift to a multiple of the scale moves a value by at most one step.
        assert actual <= float(scales[r.name].max()) * 1.0001
    assert json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]["config_groups"][
        "group_0"]["weights"]["symmetric"] is False


def test_float8_e5m2_refused_then_reencoded(tmp_path):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights="qfloat8_e5m2")
    with pytest.raises(ExportRefused, match="qfloat8_e5m2.*float8 e4m3fn only"):
        export(src, tmp_path / "ct")
    report = export(src, tmp_path / "ct", allow_reencode=True)
    expected, got = quanto_dequantized_weights(src), ct_decompressed_weights(tmp_path / "ct")
    for r in report.layers:
        assert r.max_abs_error == float((got[r.name] - expected[r.name]).abs().max())
        assert r.target.startswith("naive-quantized float8_e4m3fn")


def test_static_activations_are_refused(tmp_path):
    model = tiny_llama()
    qmodel = QuantizedModelForCausalLM.quantize(model, weights="qint8", activations="qint8")
    with quanto.Calibration():
        qmodel(IDS)
    qmodel.save_pretrained(tmp_path / "q")
    for allow in (False, True):
        with pytest.raises(ExportRefused, match="static per-tensor activation scales"):
            export(tmp_path / "q", tmp_path / "ct", allow_reencode=allow)


@pytest.mark.parametrize("weights,activations,optimizer,group_size,fmt", [
    ("qint8", "qint8", None, None, "int-quantized"),          # vLLM's W8A8 int8 dynamic
    ("qint4", "qint8", "symmetric", 32, "int-quantized"),     # W4A8
    ("qint4", "qint8", "zeropoint", 64, "int-quantized"),     # asymmetric: an int8 weight_zero_point
    ("qfloat8", "qfloat8", None, None, "float-quantized"),    # FP8 dynamic
])
def test_dynamic_activations_export_as_per_token_schemes(tmp_path, weights, activations, optimizer, group_size, fmt):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights=weights, activations=activations,
                         dynamic_activations=True, optimizer=optimizer, group_size=group_size)
    report = export(src, tmp_path / "ct")
    assert report.exact
    config = json.loads((tmp_path / "ct" / "config.json").read_text())["quantization_config"]
    assert config["format"] == fmt
    schemes = QuantizationConfig.model_validate(config).config_groups.values()
    for scheme in schemes:
        a = scheme.input_activations
        assert (a.num_bits, a.strategy, a.dynamic, a.symmetric) == (8, "token", True, True)
        assert a.type == ("float" if weights == "qfloat8" else "int")
        assert infer_module_format(torch.nn.Linear, scheme).value == fmt  # what compressed-tensors would write
    tensors = _tensors(tmp_path / "ct")
    name = "model.layers.0.mlp.up_proj"
    assert tensors[f"{name}.weight"].dtype == (torch.float8_e4m3fn if weights == "qfloat8" else torch.int8)
    assert (f"{name}.weight_zero_point" in tensors) == (optimizer == "zeropoint")
    expected, got = quanto_dequantized_weights(src), ct_decompressed_weights(tmp_path / "ct")
    assert set(got) == set(expected)
    for n in expected:
        assert_bitwise_equal(got[n], expected[n], n)
    # transformers runs the scheme with compressed-tensors' own per-token fake quantization. float8: the
    # same scales as quanto (absmax / 448); int8: compressed-tensors divides by 127.5 where quanto (and
    # vLLM's kernels) divide by 127, so the roundings differ slightly.
    model = tr.AutoModelForCausalLM.from_pretrained(tmp_path / "ct").eval()
    got_logits = logits(model, IDS)
    quanto_logits = logits(QuantizedModelForCausalLM.from_pretrained(src).model, IDS)
    float_acts = logits(reference_model(src, tmp_path / "ref"), IDS)
    tol = 1e-5 if weights == "qfloat8" else 3e-2
    torch.testing.assert_close(got_logits, quanto_logits, atol=tol, rtol=0)
    assert not torch.equal(got_logits, float_acts)  # the activations are quantized on load


def test_dynamic_activations_without_a_matching_scheme_are_refused(tmp_path):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights="qint8", activations="qfloat8",
                         dynamic_activations=True)
    with pytest.raises(ExportRefused, match="int8 activations with integer weights"):
        export(src, tmp_path / "ct")


def test_embeddings_refused_or_stored_dequantized(tmp_path):
    model = tiny_llama()
    qmodel = quanto.quantize(model, weights="qint8", embeddings=True, exclude="lm_head")
    quanto.freeze(qmodel)
    QuantizedModelForCausalLM(qmodel).save_pretrained(tmp_path / "q")
    with pytest.raises(ExportRefused, match=r"model.embed_tokens \(Embedding\)"):
        export(tmp_path / "q", tmp_path / "ct")
    report = export(tmp_path / "q", tmp_path / "ct", allow_reencode=True)
    assert report.exact  # the dequantized table itself: exact, uncompressed
    table = _tensors(tmp_path / "ct")["model.embed_tokens.weight"]
    assert_bitwise_equal(table, quanto_dequantized_weights(tmp_path / "q")["model.embed_tokens"])


def test_output_rules(tmp_path):
    src = save_quantized(tiny_llama(), tmp_path / "q", weights="qint8")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError, match="force=True"):
        export(src, tmp_path / "exists")
    quanto.export(src, tmp_path / "exists", force=True)  # the package is callable: quanto.export(...)
    assert (tmp_path / "exists" / "model.safetensors").is_file() and not list(tmp_path.glob(".exists.*"))
    with pytest.raises(ValueError, match="is a folder; gguf writes a file"):
        export(src, tmp_path / "exists", format="gguf", force=True)
    assert (tmp_path / "exists" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="inside it"):
        export(src, src / "ct")
    with pytest.raises(ValueError, match="unknown format 'onnx'; valid formats: compressed-tensors, gguf"):
        export(src, tmp_path / "x", format="onnx")
    with pytest.raises(FileNotFoundError, match="quanto_qmap.json"):
        tiny_llama().save_pretrained(tmp_path / "float")
        export(tmp_path / "float", tmp_path / "y")
