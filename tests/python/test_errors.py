"""Bad input gets a clear error naming the argument and what is accepted, never a crash."""

import os
import subprocess
import sys

import pytest
import torch

ops = torch.ops.quanto


@pytest.mark.parametrize(
    "call,exc,pattern",
    [
        (lambda: ops.absmax_scale(torch.ones(4, 4, dtype=torch.int32), "qint8"), TypeError,
         "absmax_scale: x must be float32, bfloat16 or float16, got Int"),
        (lambda: ops.absmax_scale(torch.ones(4, 4, dtype=torch.float64), "qint8"), TypeError, "got Double"),
        (lambda: ops.absmax_scale(torch.ones(0, 4), "qint8"), ValueError, r"x is empty \(shape \[0, 4\]\)"),
        (lambda: ops.absmax_scale(torch.ones(4, 4, 4), "qint8", 1), ValueError,
         "axis must be 0 \\(first dim\\) or -1 \\(last dim\\), got 1 for a 3-d tensor"),
        (lambda: ops.absmax_scale(torch.ones(4), "qint8", 0), ValueError, "needs a tensor of 2 or more dims"),
        (lambda: ops.minmax_scale_shift(torch.ones(4, 64), "qint4", 0, 48), ValueError,
         r"group_size 48 does not divide the 64 elements per index along axis 0 \(shape \[4, 64\]\)"),
        (lambda: ops.minmax_scale_shift(torch.ones(4, 64), "qint4", 0, 0), ValueError, "group_size must be positive"),
        (lambda: ops.minmax_scale_shift(torch.ones(4, 64), "qint8", 0), ValueError,
         "affine quantization needs qint2 or qint4, got qint8"),
        (lambda: ops.symmetric_quantize(torch.ones(4, 8), torch.ones(8, 1), "qint8", 0), ValueError,
         r"scale must have shape \[4, 1\] for per-axis quantization, got \[8, 1\]"),
        (lambda: ops.symmetric_quantize(torch.ones(4, 8), torch.ones(4), "qint8", -1), ValueError,
         r"scale must have shape \[1, 8\]"),
        (lambda: ops.symmetric_quantize(torch.ones(4, 8), torch.ones(4, 1), "qint8"), ValueError,
         "per-tensor quantization \\(axis=None\\) needs a scale with one value"),
        (lambda: ops.symmetric_dequantize(torch.ones(4, 8), torch.ones(4, 1)), TypeError,
         "data must be int8 or a float8 dtype"),
        (lambda: ops.symmetric_dequantize(torch.ones(4, 8, dtype=torch.int8), torch.ones(3, 1)), ValueError,
         "must hold one value or broadcast along the first or last dim"),
        (lambda: ops.affine_quantize(torch.ones(4, 64), torch.ones(8, 1), torch.ones(8, 1), "qint4", 0, 16),
         ValueError, r"affine_quantize: scale must have shape \[16, 1\] for group-wise quantization, got \[8, 1\]"),
        (lambda: ops.affine_quantize(torch.ones(4, 64), torch.ones(8, 1), torch.ones(8, 1, dtype=torch.int32),
                                     "qint4", 0, 32), TypeError, "shift must be a float tensor .* or uint8"),
        (lambda: ops.affine_dequantize(torch.zeros(8, 32, dtype=torch.uint8), torch.ones(8, 1), torch.ones(8, 1),
                                       [4, 32], 0, 32), ValueError,
         r"codes must have shape \[4, 32\] for this shape and grouping"),
        (lambda: ops.linear_w8a8(torch.zeros(2, 8, dtype=torch.int8), torch.ones(3), torch.zeros(4, 8, dtype=torch.int8),
                                 torch.ones(4, 1), None, torch.float32), ValueError, "x_scale must hold one value .* or one per row of x"),
        (lambda: ops.linear_w8a8(torch.zeros(2, 8, dtype=torch.int8), torch.ones(()), torch.zeros(4, 8, dtype=torch.int8),
                                 torch.ones(4, 1), None, torch.int32), TypeError, "out_dtype must be float32"),
    ],
)
def test_error_messages(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def run_with_isa(isa):
    code = "import quanto, torch; print(torch.ops.quanto.cpu_isa())"
    env = dict(os.environ, QUANTO_CPU_ISA=isa)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("isa", torch.ops.quanto.supported_cpu_isas())
def test_isa_override_selects_each_supported_isa(isa):
    r = run_with_isa(isa)
    assert r.returncode == 0 and r.stdout.strip() == isa, r.stderr


def test_supported_isas_start_with_generic_and_default_to_the_best():
    isas = torch.ops.quanto.supported_cpu_isas()
    assert isas[0] == "generic"
    assert run_with_isa("").stdout.strip() == isas[-1]


def test_unknown_isa_override_is_a_clear_error():
    r = run_with_isa("sse9")
    assert r.returncode != 0
    assert "QUANTO_CPU_ISA=sse9 is unknown; accepted values: generic, avx2, avx2vnni, avx512, avx512vnni, avx512bf16" in r.stderr
