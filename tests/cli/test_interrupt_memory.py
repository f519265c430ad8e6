"""Atomicity (a run killed mid-way leaves no OUTPUT) and bounded memory (peak RSS of a run on a
~600 MB sharded fp32 checkpoint stays well below the checkpoint size, since tensors stream from
mmap one at a time)."""

import json
import os
import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import save_file

from conftest import CLI


def make_checkpoint(folder, shards, layers_per_shard, rows, cols, seed=0):
    folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(seed)
    weight_map, layer = {}, 0
    names = [f"model-{i + 1:05d}-of-{shards:05d}.safetensors" for i in range(shards)]
    for name in names:
        ts = {}
        for _ in range(layers_per_shard):
            ts[f"layers.{layer}.proj.weight"] = torch.randn(rows, cols, generator=g)
            ts[f"layers.{layer}.norm.weight"] = torch.ones(cols)
            layer += 1
        save_file(ts, str(folder / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in ts})
        del ts
    total = sum(os.path.getsize(folder / n) for n in names)
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"model_type": "synthetic"}))
    return total


@pytest.fixture(scope="module")
def big_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("big") / "in"
    # 6 shards x 4 layers x 2048 x 3072 fp32 (24 MiB each): ~604 MB.
    total = make_checkpoint(folder, shards=6, layers_per_shard=4, rows=2048, cols=3072)
    return folder, total


def test_peak_rss_well_below_checkpoint(cli, big_checkpoint, tmp_path):
    folder, total = big_checkpoint
    for weights in ("int8", "int4"):
        out = tmp_path / f"out-{weights}"
        # GNU time execs the CLI from a small process: the fork of this (large) Python process
        # would otherwise count in the child's maximum RSS.
        rss_file = tmp_path / f"rss-{weights}"
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss_file), CLI, "quantize", str(folder), "-o",
                            str(out), "--weights", weights, "--json"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        rss = int(rss_file.read_text().split()[-1]) * 1024  # KiB
        summary = json.loads(p.stdout)
        print(f"{weights}: checkpoint {total / 2**20:.0f} MiB, peak RSS {rss / 2**20:.0f} MiB "
              f"({100 * rss / total:.0f}%), {summary['seconds']:.1f} s, {summary['threads']} threads")
        assert summary["tensors_quantized"] == 24
        assert rss < 0.4 * total, (rss, total)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_interrupted_run_leaves_no_output(cli, big_checkpoint, tmp_path, sig):
    folder, _ = big_checkpoint
    out = tmp_path / "out"
    proc = subprocess.Popen([CLI, "quantize", str(folder), "-o", str(out), "--weights", "int4",
                             "--optimizer", "hqq"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()  # one tensor done: the run is mid-way
    assert line.startswith("[ 1/48]"), line
    time.sleep(0.2)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not out.exists()
    temps = [p for p in os.listdir(tmp_path) if p.startswith("out.tmp-")]
    if sig == signal.SIGKILL:
        assert temps == [f"out.tmp-{proc.pid}"]  # clearly named; removed by the next run
        subprocess.run([CLI, "quantize", str(folder), "-o", str(out), "--dry-run"], check=True,
                       capture_output=True)
        subprocess.run([CLI, "inspect", str(folder)], check=True, capture_output=True)
        small = tmp_path / "small"
        make_checkpoint(small, shards=1, layers_per_shard=1, rows=8, cols=8)
        subprocess.run([CLI, "quantize", str(small), "-o", str(out)], check=True, capture_output=True)
        assert sorted(os.listdir(tmp_path)) == ["out", "small"]
    else:
        assert temps == []  # removed by the signal handler
