"""Refusals: each exits non-zero with one line naming the problem, and writes nothing."""

import os
import struct

import pytest
import torch
from safetensors.torch import save_file

from conftest import run_cli, tiny_llama


@pytest.fixture
def model_dir(tmp_path):
    tiny_llama(hidden=64, layers=1).save_pretrained(tmp_path / "in")
    return tmp_path / "in"


def assert_error(p, status, *words):
    assert p.returncode == status, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quanto: error: "), p.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert "Traceback" not in p.stderr and "terminate called" not in p.stderr


def test_pickle_file_and_folder(cli, tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "pytorch_model.bin")
    assert_error(run_cli("quantize", tmp_path / "pytorch_model.bin", "-o", tmp_path / "out"), 1,
                 "pickle", "safetensors", "save_pretrained")
    assert_error(run_cli("quantize", tmp_path, "-o", tmp_path.parent / "out-pkl"), 1, "pickle")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "out-pkl").exists()


def test_missing_input(cli, tmp_path):
    assert_error(run_cli("quantize", tmp_path / "nope", "-o", tmp_path / "out"), 1, "does not exist")


def test_existing_output_and_force(cli, model_dir, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out/keep.txt").write_text("x")
    assert_error(run_cli("quantize", model_dir, "-o", tmp_path / "out"), 1, "already exists", "--force")
    assert (tmp_path / "out/keep.txt").exists()
    before = {f: (model_dir / f).read_bytes() for f in os.listdir(model_dir)}
    run_cli("quantize", model_dir, "-o", tmp_path / "out", "--force", check=0)
    assert not (tmp_path / "out/keep.txt").exists() and (tmp_path / "out/quanto_qmap.json").exists()
    assert {f: (model_dir / f).read_bytes() for f in os.listdir(model_dir)} == before
    assert sorted(os.listdir(tmp_path)) == ["in", "out"]  # no temporaries or old copies left


@pytest.mark.parametrize("where", ["inside", "same", "parent"])
def test_output_in_or_around_input(cli, model_dir, where):
    out = {"inside": model_dir / "q", "same": model_dir, "parent": model_dir.parent}[where]
    p = run_cli("quantize", model_dir, "-o", out, "--force")
    assert_error(p, 1, "refusing")
    assert sorted(os.listdir(model_dir)) == ["config.json", "generation_config.json", "model.safetensors"]


@pytest.mark.parametrize("args,words", [
    (["--weights", "int3"], ["--weights", "int3"]),
    (["--optimizer", "gptq"], ["--optimizer", "gptq"]),
    (["--dtype", "float64"], ["--dtype", "float64"]),
    (["--group-size", "0"], ["--group-size"]),
    (["--threads", "-1"], ["--threads"]),
    (["--bogus"], ["--bogus"]),
])
def test_bad_option_values(cli, model_dir, tmp_path, args, words):
    assert_error(run_cli("quantize", model_dir, "-o", tmp_path / "out", *args), 2, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args,words", [
    (["--weights", "int4", "--group-size", "48"], ["--group-size 48", "does not divide", "input features"]),
    (["--weights", "int8", "--group-size", "32"], ["--group-size", "2/4-bit"]),
    (["--weights", "int4", "--optimizer", "absmax"], ["absmax", "8-bit"]),
    (["--weights", "int8", "--optimizer", "hqq"], ["hqq", "2/4-bit"]),
])
def test_bad_combinations(cli, model_dir, tmp_path, args, words):
    assert_error(run_cli("quantize", model_dir, "-o", tmp_path / "out", *args), 1, *words)
    assert not (tmp_path / "out").exists()


def test_malformed_safetensors(cli, tmp_path):
    save_file({"a.weight": torch.randn(8, 8)}, str(tmp_path / "ok.safetensors"))
    raw = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "trunc.safetensors").write_bytes(raw[:-5])
    (tmp_path / "huge.safetensors").write_bytes(struct.pack("<Q", 10**12) + raw[8:])
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    for name in ("trunc", "huge", "tiny"):
        for cmd in (["quantize", tmp_path / f"{name}.safetensors", "-o", tmp_path / f"out-{name}"],
                    ["inspect", tmp_path / f"{name}.safetensors"]):
            assert_error(run_cli(*cmd), 1, f"{name}.safetensors", "not a valid safetensors file")
        assert not (tmp_path / f"out-{name}").exists()


def test_already_quantized_input(cli, model_dir, tmp_path):
    run_cli("quantize", model_dir, "-o", tmp_path / "q", check=0)
    assert_error(run_cli("quantize", tmp_path / "q", "-o", tmp_path / "qq"), 1, "already quantized")


def test_help_documents_rules(cli):
    p = run_cli("quantize", "--help", check=0)
    for w in ("--include-lm-head", "embed", "lm_head", "tied", "norms, biases", "--group-size", "OUTPUT.tmp-<pid>"):
        assert w in p.stdout, w
    assert run_cli().returncode != 0
