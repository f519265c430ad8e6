"""Shared helpers of the CLI tests: the binary (QUANTO_CLI, default build/quanto), running it,
and small generated Hugging Face checkpoints."""

import os
import subprocess
from pathlib import Path

import pytest
import torch
import transformers as tr

ROOT = Path(__file__).resolve().parents[2]
CLI = os.environ.get("QUANTO_CLI", str(ROOT / "build" / "quanto"))


def run_cli(*args, check=None, env=None):
    """Run the CLI; returns CompletedProcess. check=0 asserts success, check=N asserts status N."""
    p = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, env=env, timeout=600)
    if check is not None:
        assert p.returncode == check, f"status {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p


def tiny_llama(tie=False, dtype=torch.float32, seed=0, hidden=128, layers=2):
    torch.manual_seed(seed)
    cfg = tr.LlamaConfig(vocab_size=256, hidden_size=hidden, intermediate_size=384, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tie)
    return tr.LlamaForCausalLM(cfg).to(dtype).eval()


IDS = torch.tensor([[5, 17, 200, 3, 99, 42, 7, 128, 64, 1, 250, 33]])


def logits(model, ids=IDS):
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="session")
def cli():
    if not os.path.isfile(CLI):
        pytest.fail(f"the quanto CLI is not built at {CLI} (make build, or set QUANTO_CLI)")
    return CLI
