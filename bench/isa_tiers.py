"""quanto's CPU ISA tiers for the benchmarks: how to run a measurement as one tier.

A child process gets QUANTO_CPU_ISA (quanto's kernels) and torch's own CPU kernels held to the
same instruction set (ATen's vectorized ops, MKL's sgemm, oneDNN's matmuls: without AVX-512 BF16
oneDNN emulates bf16, slowly), so an AVX-512 machine also shows what an AVX2-only one gets.
"""
import argparse
import os
import subprocess
import sys

import torch

import quanto  # noqa: F401

TORCH_ISA_ENV = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx2vnni": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2_VNNI"},
    "avx512": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx512vnni": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                   "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"},
    "avx512bf16": {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                   "ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"},
}


def parse_choices(text, allowed, what):
    """A comma-separated command-line list whose items must all be in allowed (what: their name)."""
    items = text.split(",")
    unknown = [i for i in items if i not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return items


def parse_isas(text):
    return parse_choices(text, TORCH_ISA_ENV, "ISA tier(s)")


def supported_tiers():
    """The SIMD tiers this CPU supports, least capable first (the last one is its default)."""
    return [i for i in torch.ops.quanto.supported_cpu_isas() if i in TORCH_ISA_ENV]


def checked_tiers(requested):
    """requested (or every supported tier), after checking this CPU supports them."""
    supported = supported_tiers()
    isas = requested or supported
    missing = [i for i in isas if i not in supported]
    if missing:
        raise SystemExit(f"this CPU does not support {missing}; it supports {supported}")
    return isas


def run_as_tier(isa, script, args, extra_env=None):
    """Runs `python script *args` with the tier's environment (and extra_env); exits if it fails."""
    env = dict(os.environ, QUANTO_CPU_ISA=isa, **TORCH_ISA_ENV[isa], **(extra_env or {}))
    sys.stdout.flush()
    if subprocess.run([sys.executable, os.path.abspath(script), *args], env=env).returncode != 0:
        raise SystemExit(f"{os.path.basename(script)} failed on the {isa} tier")
