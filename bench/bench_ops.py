"""Weight quantization throughput: quanto's ops against optimum-quanto 0.2.7 on the same
tensors, measured in the same run. Prints ratios (>1 means quanto is faster).

Run: make bench
"""

import time

import torch
from optimum.quanto import qtypes as oq_qtypes
from optimum.quanto.tensor.optimizers import AbsmaxOptimizer, MaxOptimizer
from optimum.quanto.tensor.packed import pack_weights

import quanto  # noqa: F401

ops = torch.ops.quanto


def best_of(fn, repeat=5):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def quanto_int8(w):
    s = ops.absmax_scale(w, "qint8", 0)
    return ops.symmetric_quantize(w, s, "qint8", 0)


def optimum_int8(w):
    s = AbsmaxOptimizer()(w, oq_qtypes["qint8"], 0)
    return torch.ops.quanto.quantize_symmetric(w, torch.int8, 0, s)


def quanto_int4(w):
    s, z = ops.minmax_scale_shift(w, "qint4", 0, 128)
    return ops.pack_codes(ops.affine_quantize(w, s, z, "qint4", 0, 128), 4)


def optimum_int4(w):
    s, z = MaxOptimizer()(w, oq_qtypes["qint4"], 0, 128)
    return pack_weights(torch.ops.quanto.quantize_affine(w, 4, 0, 128, s, z), 4)


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, quanto CPU ISA: {ops.cpu_isa()}")
    print(f"{'case':52s} {'quanto ms':>10s} {'optimum ms':>11s} {'speed-up':>9s}")
    for dtype in (torch.float32, torch.bfloat16):
        w = torch.randn(4096, 4096).to(dtype)
        for name, ours, theirs in (("int8 per-channel", quanto_int8, optimum_int8),
                                   ("int4 group 128 + pack", quanto_int4, optimum_int4)):
            assert torch.equal(ours(w), theirs(w)), name  # same bytes, or the timing means nothing
            a, b = best_of(lambda: ours(w)), best_of(lambda: theirs(w))
            label = f"quantize 4096x4096 {str(dtype)[6:]} {name}"
            print(f"{label:52s} {a * 1e3:10.1f} {b * 1e3:11.1f} {b / a:8.2f}x")


if __name__ == "__main__":
    main()
