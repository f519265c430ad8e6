"""Weight-only quantized linear layers against their peers, measured in one run on one machine.

For each weight shape (out x in) and batch M, times y = x @ W^T with bfloat16 activations:
  torch fp32 / bf16 linear (dense baselines), torch._weight_int8pack_mm (int8),
  torch._weight_int4pack_mm_for_cpu (int4, group 128), optimum-quanto 0.2.7's frozen QLinear
  (qint8 / qint4 group 128 / qfloat8), and quanto's fused kernels (linear_qbytes int8 and
  float8 e4m3fn, linear_qbits_tiled int4 group 128).
At batch 1 the layer is bandwidth bound: the table adds quanto's effective GB/s (bytes of packed
weights + scales + shifts read per call / time) and its fraction of the read bandwidth this
script measures first. Speed-ups are ratios of times measured in this run.

A second table puts 2-bit weights (int2, group 128) side by side: quanto's frozen QLinear (tiled
2-bit kernel) and optimum-quanto's frozen qint2 QLinear against torch fp32 / bf16 linear. The
W8A8 table compares quanto's linear_w8a8 (canonical int8 weight) and linear_w8a8_packed (the
VNNI layout frozen layers hold) with torch fp32 linear and torch._int_mm.

The "isa" table (first by default) runs quanto's weight-only kernels once per CPU ISA tier this
machine supports (avx2, avx2vnni, avx512, avx512vnni, avx512bf16), each in a child process with QUANTO_CPU_ISA set and
torch's own kernels held to the same instruction set (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS,
ONEDNN_MAX_CPU_ISA), so an AVX-512 machine also shows what an AVX2-only one gets. Each tier's table
starts with its measured read bandwidth, and gives W8, W4 (groups of 128 and 32), W2 and FP8
(e4m3fn) times, and W4A8 (int4 group 128) and W8A8 with dynamic per-token int8 activations (the
quantization of x included), against torch fp32 / bf16 linear, as speed-ups over the fastest of the two and, for
batches up to 8, as GB/s of codes + scales (+ shifts) read and their fraction of that bandwidth.
Each of its layers cycles over copies of its weights (512 MiB in all), so every call reads them
from memory rather than from a cache that still holds part of the last call's.

Run: make bench            (QUANTO_BENCH_QUICK=1 for one shape and fewer batches)
     python bench/bench_linear.py --shapes 14336x4096 --batches 1,128 [--tables isa,main,w2,w8a8]
                          [--isas avx2,avx512bf16] [--threads 1 [--cpu-time]]
"""

import argparse
import itertools
import os
import time

import torch
import torch.nn.functional as F

import quanto  # noqa: F401
from isa_tiers import checked_tiers, parse_choices, parse_isas, run_as_tier

ops = torch.ops.quanto
GROUP = 128
QUICK = os.environ.get("QUANTO_BENCH_QUICK") == "1"
MAIN_SHAPES = [(4096, 4096)] if QUICK else [(4096, 4096), (14336, 4096), (4096, 14336), (8192, 8192)]
MAIN_BATCHES = [1, 8, 128] if QUICK else [1, 8, 32, 128, 512]
SHAPES, BATCHES = MAIN_SHAPES, MAIN_BATCHES  # what the tables run (set from the command line)
TABLES = ("isa", "main", "w2", "w8a8")
# The isa table: weights larger than the LLC (batch 1 is then a bandwidth measurement).
ISA_SHAPES = [(14336, 4096)] if QUICK else [(14336, 4096), (4096, 14336)]
ISA_BATCHES = [1, 8, 128] if QUICK else [1, 2, 8, 32, 128]
def parse_shapes(text):
    shapes = []
    for item in text.split(","):
        try:
            n, k = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"shape {item!r} is not OUTxIN (e.g. 4096x4096)") from None
        if n <= 0 or k <= 0 or k % GROUP:
            raise argparse.ArgumentTypeError(f"shape {item!r}: sizes must be positive and IN a multiple of {GROUP}")
        shapes.append((n, k))
    return shapes


def parse_batches(text):
    try:
        batches = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batches {text!r} are not comma-separated integers") from None
    if any(m <= 0 for m in batches):
        raise argparse.ArgumentTypeError(f"batches {text!r} must be positive")
    return batches


def parse_tables(text):
    return parse_choices(text, TABLES, "table(s)")


CLOCK = time.perf_counter  # --cpu-time: time.process_time
# Bytes of the bandwidth probe and of each layer's copies in the isa table: far past the LLC the
# OS reports (on one virtual machine a 59 MB weight cycled over 2 copies still read 25% faster than
# over 4 or more, with a "32 MiB" L3).
COLD_MIB = 512


def timeit(fn, min_time=0.3, min_reps=3):
    fn()
    best, total, reps = float("inf"), 0.0, 0
    while reps < min_reps or total < min_time:
        t = CLOCK()
        fn()
        dt = CLOCK() - t
        best, total, reps = min(best, dt), total + dt, reps + 1
    return best


def read_bandwidth_gbs(mib=COLD_MIB, min_time=1.0):
    """Read bandwidth of this machine with every intra-op thread: the faster of two reads of a
    random buffer far larger than any cache, a sum and a dot product (best of ~min_time seconds
    each). Random, because a buffer of ones read at 55 GB/s where memory gives 34 on one virtual
    machine, as if its identical pages were one."""
    t = torch.rand(mib * 1024 * 1024 // 4, generator=torch.Generator().manual_seed(0))
    return max(t.numel() * 4 / timeit(fn, min_time=min_time) / 1e9 for fn in (t.sum, lambda: torch.dot(t, t)))


def last_level_cache_bytes():
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip()
        return int(text[:-1]) * {"K": 1024, "M": 1024**2}[text[-1]]
    except (OSError, ValueError, KeyError):
        return 32 * 1024**2


def nbytes(*ts):
    return sum(t.numel() * t.element_size() for t in ts)


def prepare(N, K):
    torch.manual_seed(0)
    w = torch.randn(N, K) * 0.02
    layers = {}
    # quanto int8: per-channel scales, fused kernel.
    s8 = ops.absmax_scale(w, "qint8", 0)
    q8 = ops.symmetric_quantize(w, s8, "qint8", 0)
    layers["quanto W8"] = (lambda x: ops.linear_qbytes(x, q8, s8), nbytes(q8, s8))
    # quanto float8 (e4m3fn): per-channel scales, fused kernel.
    sf = ops.absmax_scale(w, "qfloat8", 0)
    qf = ops.symmetric_quantize(w, sf, "qfloat8", 0)
    layers["quanto FP8"] = (lambda x: ops.linear_qbytes(x, qf, sf), nbytes(qf, sf))
    # quanto int4: group 128, tiled layout (converted once, like at freeze).
    s4, h4 = ops.minmax_scale_shift(w, "qint4", 0, GROUP)
    tiled = ops.tile_qbits(ops.pack_codes(ops.affine_quantize(w, s4, h4, "qint4", 0, GROUP), 4), 4, N, K, GROUP)
    layers["quanto W4"] = (lambda x: ops.linear_qbits_tiled(x, tiled, s4, h4, 4, GROUP), nbytes(tiled, s4, h4))
    # torch's own quantized CPU kernels.
    q8_scales = s8.view(-1).to(torch.bfloat16)
    layers["torch int8pack"] = (lambda x: torch._weight_int8pack_mm(x, q8, q8_scales), nbytes(q8, q8_scales))
    w_int = torch.randint(0, 16, (N, K), dtype=torch.int32)
    w4pack = torch._convert_weight_to_int4pack_for_cpu(w_int, 1)
    scales_zeros = torch.rand(K // GROUP, N, 2, dtype=torch.bfloat16)
    layers["torch int4pack"] = (lambda x: torch._weight_int4pack_mm_for_cpu(x, w4pack, GROUP, scales_zeros),
                                nbytes(w4pack, scales_zeros))
    # optimum-quanto's frozen QLinear (its own CPU path for each qtype).
    from optimum.quanto import freeze, qfloat8, qint4, qint8, quantize
    for name, qtype in (("optimum W8", qint8), ("optimum W4", qint4), ("optimum FP8", qfloat8)):
        m = torch.nn.Sequential(torch.nn.Linear(K, N, bias=False)).to(torch.bfloat16)
        m[0].weight.data = w.to(torch.bfloat16)
        quantize(m, weights=qtype)
        freeze(m)
        layers[name] = (m, None)
    dense32, dense16 = w, w.to(torch.bfloat16)
    layers["torch fp32"] = (lambda x: F.linear(x.float(), dense32), nbytes(dense32))
    layers["torch bf16"] = (lambda x: F.linear(x, dense16), nbytes(dense16))
    return layers


COLUMNS = ["torch fp32", "torch bf16", "torch int8pack", "torch int4pack", "optimum W8", "optimum W4", "optimum FP8",
           "quanto W8", "quanto W4", "quanto FP8"]


@torch.no_grad()
def main_table(bw):
    threads = torch.get_num_threads()
    llc = last_level_cache_bytes()
    print(f"torch {torch.__version__}, {threads} threads, quanto CPU ISA {ops.cpu_isa()}, "
          f"measured read bandwidth {bw:.1f} GB/s")
    print("times in ms (bf16 activations; int4 = group 128); speed-up = baseline time / quanto time\n")
    header = f"{'N x K':>12} {'M':>4} " + " ".join(f"{c:>14}" for c in COLUMNS)
    header += (f" {'W4/bf16':>8} {'W4/i4pack':>9} {'W8/bf16':>8} {'W8/i8pack':>9} {'W4/opt':>7} {'W8/opt':>7}"
               f" {'FP8/opt':>7} {'W4 GB/s':>8} {'W8 GB/s':>8}")
    print(header)
    for N, K in SHAPES:
        layers = prepare(N, K)
        for M in BATCHES:
            x = torch.randn(M, K).to(torch.bfloat16)
            t = {name: timeit(lambda f=fn: f(x)) for name, (fn, _) in layers.items()}
            row = f"{f'{N}x{K}':>12} {M:>4} " + " ".join(f"{t[c] * 1e3:14.3f}" for c in COLUMNS)
            w4_gbs = layers["quanto W4"][1] / t["quanto W4"] / 1e9
            w8_gbs = layers["quanto W8"][1] / t["quanto W8"] / 1e9
            row += (f" {t['torch bf16'] / t['quanto W4']:8.2f} {t['torch int4pack'] / t['quanto W4']:9.2f}"
                    f" {t['torch bf16'] / t['quanto W8']:8.2f} {t['torch int8pack'] / t['quanto W8']:9.2f}"
                    f" {t['optimum W4'] / t['quanto W4']:7.2f} {t['optimum W8'] / t['quanto W8']:7.2f}"
                    f" {t['optimum FP8'] / t['quanto FP8']:7.2f}")
            row += f" {w4_gbs:8.1f} {w8_gbs:8.1f}" if M == 1 else f" {'':8} {'':8}"
            print(row, flush=True)
            if M == 1:
                batch1 = {"W4": (layers["quanto W4"][1], w4_gbs), "W8": (layers["quanto W8"][1], w8_gbs)}
        # The bandwidth fraction means something only when the weights cannot sit in the cache.
        notes = [f"{name} {100 * gbs / bw:.0f}% of read bandwidth" if size > llc
                 else f"{name} weights ({size / 2**20:.0f} MiB) fit the {llc / 2**20:.0f} MiB LLC: no bandwidth figure"
                 for name, (size, gbs) in batch1.items()]
        print(f"{'':>12} batch 1: " + "; ".join(notes))


ISA_COLUMNS = ["W8", "W4g128", "W4g32", "W2", "FP8", "W4A8", "W8A8"]


def cold(fn, tensors):
    """fn(x, *tensors) as a layer of the isa table: (call, bytes read per call). The call cycles over
    enough copies of the tensors (COLD_MIB in all) that each is evicted from the caches before its
    next use, so batch-1 times measure reads from memory, as in a model whose layers together
    exceed the cache, not reuse of a weight that partly stays there between calls."""
    size = nbytes(*tensors)
    total = max(4 * last_level_cache_bytes(), COLD_MIB * 2**20)
    copies = [tensors] + [tuple(t.clone() for t in tensors) for _ in range(-(-total // size) - 1)]
    turn = itertools.cycle(copies)
    return (lambda x: fn(x, *next(turn))), size


def isa_layers(N, K):
    """quanto's weight-only kernels on one N x K weight, each with the bytes it reads per call."""
    torch.manual_seed(0)
    w = torch.randn(N, K) * 0.02
    layers = {}
    s8 = ops.absmax_scale(w, "qint8", 0)
    q8 = ops.symmetric_quantize(w, s8, "qint8", 0)
    layers["W8"] = cold(ops.linear_qbytes, (q8, s8))
    tiled_w4 = {}
    for name, qtype, bits, group in (("W4g128", "qint4", 4, 128), ("W4g32", "qint4", 4, 32), ("W2", "qint2", 2, 128)):
        sc, sh = ops.minmax_scale_shift(w, qtype, 0, group)
        codes = ops.pack_codes(ops.affine_quantize(w, sc, sh, qtype, 0, group), bits)
        tiled = ops.tile_qbits(codes, bits, N, K, group)
        # Scales and shifts in bf16, as a bf16 model holds them (and reads them, at batch 1).
        sc, sh = sc.to(torch.bfloat16), sh.to(torch.bfloat16)
        tiled_w4[name] = tiled, sc, sh
        layers[name] = cold(lambda x, t, a, b, n=bits, g=group: ops.linear_qbits_tiled(x, t, a, b, n, g),
                            (tiled, sc, sh))
    # int8 activations (dynamic, per token: the quantization of x is part of each call) with the
    # W4g128 weight (integer W4A8 kernel) and the W8 weight in the layout a frozen W8A8 layer gets
    # on this tier (VNNI-packed on avx512vnni and avx512bf16, canonical below).
    layers["W4A8"] = cold(lambda x, t, a, b: ops.linear_w4a8_tiled(*ops.quantize_per_token(x, "qint8"), t, a, b, 128,
                                                                   None, x.dtype), tiled_w4["W4g128"])
    if ops.weight_layout("qint8", [N, K], None, torch.device("cpu"), "qint8") == "packed_w8a8":
        layers["W8A8"] = cold(lambda x, p, s: ops.linear_w8a8_packed(*ops.quantize_per_token(x, "qint8"), p, s, N, None,
                                                                     x.dtype), (ops.pack_w8a8(q8), s8))
    else:
        layers["W8A8"] = cold(lambda x, q, s: ops.linear_w8a8(*ops.quantize_per_token(x, "qint8"), q, s, None, x.dtype),
                              (q8, s8))
    sf = ops.absmax_scale(w, "qfloat8", 0)
    qf = ops.symmetric_quantize(w, sf, "qfloat8", 0)
    layers["FP8"] = cold(ops.linear_qbytes, (qf, sf))
    layers["torch fp32"] = cold(lambda x, d: F.linear(x.float(), d), (w,))
    layers["torch bf16"] = cold(F.linear, (w.to(torch.bfloat16),))
    return layers


@torch.no_grad()
def isa_table(bw):
    """One tier (this process's QUANTO_CPU_ISA): quanto's weight-only kernels against torch's
    fastest float linear on the same instruction set."""
    clock = "CPU time" if CLOCK is time.process_time else "wall time"
    print(f"\n== ISA tier {ops.cpu_isa()}: torch {torch.__version__}, {torch.get_num_threads()} threads, {clock}, "
          f"measured read bandwidth {bw:.1f} GB/s (sum or dot over 512 MiB)")
    print("times in ms (bf16 activations); xfloat = fastest of torch fp32 / bf16 time / quanto time; "
          "GB/s = codes + scales read per call / time, % of the read bandwidth (each call reads weights the LLC no "
          "longer holds)")
    print(f"{'N x K':>12} {'M':>4} {'fp32':>9} {'bf16':>9} " + " ".join(f"{c:>8}" for c in ISA_COLUMNS) + "  "
          + " ".join(f"{'x' + c:>8}" for c in ISA_COLUMNS) + "  "
          + " ".join(f"{c + ' GB/s':>15}" for c in ISA_COLUMNS))
    for N, K in SHAPES:
        layers = isa_layers(N, K)
        for M in BATCHES:
            x = torch.randn(M, K).to(torch.bfloat16)
            # Best of at least 5 calls: on a shared machine the minimum is the least disturbed.
            t = {name: timeit(lambda f=fn: f(x), min_reps=5) for name, (fn, _) in layers.items()}
            best = min(t["torch fp32"], t["torch bf16"])
            row = (f"{f'{N}x{K}':>12} {M:>4} {t['torch fp32'] * 1e3:9.3f} {t['torch bf16'] * 1e3:9.3f} "
                   + " ".join(f"{t[c] * 1e3:8.3f}" for c in ISA_COLUMNS) + "  "
                   + " ".join(f"{best / t[c]:8.2f}" for c in ISA_COLUMNS) + "  ")
            if M <= 8:
                cells = []
                for c in ISA_COLUMNS:
                    size = layers[c][1]
                    gbs = size / t[c] / 1e9
                    cells.append(f"{gbs:6.1f} ({100 * gbs / bw:3.0f}%)")
                row += " ".join(f"{cell:>15}" for cell in cells)
            print(row, flush=True)


def run_isa_tiers(isas):
    """The isa table once per tier, each in a child process with that tier's environment."""
    for isa in isas:
        run_as_tier(isa, __file__, ["--tables", "isa", "--child",
                                    "--shapes", ",".join(f"{n}x{k}" for n, k in SHAPES),
                                    "--batches", ",".join(map(str, BATCHES)), "--threads", str(torch.get_num_threads())]
                    + (["--cpu-time"] if CLOCK is time.process_time else []))


def frozen_linear(w, make_quantize, qtype, dtype=torch.bfloat16):
    """A one-layer model holding w, quantized to qtype (weights only) and frozen by that library."""
    quantize, freeze = make_quantize
    N, K = w.shape
    m = torch.nn.Sequential(torch.nn.Linear(K, N, bias=False)).to(dtype)
    m[0].weight.data = w.to(dtype)
    quantize(m, weights=qtype)
    freeze(m)
    return m


@torch.no_grad()
def w2_table(bw):
    """2-bit weights (int2, group 128): frozen layers of quanto and optimum-quanto vs dense torch."""
    import optimum.quanto as oq
    import quanto as q
    llc = last_level_cache_bytes()
    print("\nW2 (int2, group 128, frozen QLinear, bf16 activations), times in ms; speed-up = baseline / quanto W2")
    cols = ["torch fp32", "torch bf16", "optimum W2", "quanto W2"]
    print(f"{'N x K':>12} {'M':>4} " + " ".join(f"{c:>12}" for c in cols)
          + f" {'W2/fp32':>8} {'W2/bf16':>8} {'W2/opt':>7} {'W2 GB/s':>8}")
    for N, K in SHAPES:
        torch.manual_seed(0)
        w = torch.randn(N, K) * 0.02
        dense16 = w.to(torch.bfloat16)
        mq = frozen_linear(w, (q.quantize, q.freeze), q.qint2)
        mo = frozen_linear(w, (oq.quantize, oq.freeze), oq.qint2)
        lq = mq[0]
        w2_bytes = nbytes(lq.weight_data, lq.weight_scale, lq.weight_shift)
        layers = {"torch fp32": lambda x: F.linear(x.float(), w), "torch bf16": lambda x: F.linear(x, dense16),
                  "optimum W2": mo, "quanto W2": mq}
        for M in BATCHES:
            x = torch.randn(M, K).to(torch.bfloat16)
            t = {name: timeit(lambda f=fn: f(x)) for name, fn in layers.items()}
            gbs = w2_bytes / t["quanto W2"] / 1e9
            row = (f"{f'{N}x{K}':>12} {M:>4} " + " ".join(f"{t[c] * 1e3:12.3f}" for c in cols)
                   + f" {t['torch fp32'] / t['quanto W2']:8.2f} {t['torch bf16'] / t['quanto W2']:8.2f}"
                   f" {t['optimum W2'] / t['quanto W2']:7.2f}")
            if M == 1:
                row += f" {gbs:8.1f}" + (f" ({100 * gbs / bw:.0f}% of read bandwidth)" if w2_bytes > llc
                                         else f" (weights {w2_bytes / 2**20:.0f} MiB fit the LLC)")
            print(row, flush=True)


@torch.no_grad()
def w8a8_table():
    """int8 activations × int8 weights: quanto's linear_w8a8 (canonical int8 weight) and
    linear_w8a8_packed (the pre-packed VNNI layout frozen W8A8 layers hold; int32 sums + rescale)
    against torch fp32 linear and torch._int_mm (the int32 matmul alone, no rescale)."""
    print("\nW8A8 (int8 x int8 -> int32 -> rescale, per-token activation scales), times in ms;"
          " speed-up = baseline / quanto packed")
    print(f"{'N x K':>12} {'M':>4} {'torch fp32':>11} {'torch _int_mm':>14} {'quanto w8a8':>12} {'quanto packed':>14}"
          f" {'vs fp32':>8} {'vs _int_mm':>10}")
    for N, K in SHAPES[:2] if len(SHAPES) > 2 else SHAPES:
        torch.manual_seed(0)
        w = torch.randn(N, K)
        ws = ops.absmax_scale(w, "qint8", 0)
        wq = ops.symmetric_quantize(w, ws, "qint8", 0)
        wq_t = wq.t().contiguous()
        wp = ops.pack_w8a8(wq)
        for M in BATCHES:
            x = torch.randn(M, K)
            xs = ops.absmax_scale(x, "qint8", 0)  # dynamic, per token
            xq = ops.symmetric_quantize(x, xs, "qint8", 0)
            t_fp32 = timeit(lambda: F.linear(x, w))
            t_q = timeit(lambda: ops.linear_w8a8(xq, xs, wq, ws, None, torch.float32))
            t_p = timeit(lambda: ops.linear_w8a8_packed(xq, xs, wp, ws, N, None, torch.float32))
            try:  # torch._int_mm on CPU wants M > 16 and sizes that are multiples of 8
                t_int = timeit(lambda: torch._int_mm(xq, wq_t))
                int_cols = f"{t_int * 1e3:14.3f}", f"{t_int / t_p:10.2f}"
            except RuntimeError:
                int_cols = f"{'n/a':>14}", f"{'n/a':>10}"
            print(f"{f'{N}x{K}':>12} {M:>4} {t_fp32 * 1e3:11.3f} {int_cols[0]} {t_q * 1e3:12.3f} {t_p * 1e3:14.3f} "
                  f"{t_fp32 / t_p:8.2f} {int_cols[1]}", flush=True)


def main():
    global SHAPES, BATCHES, CLOCK
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", type=parse_shapes, help="comma-separated OUTxIN weight shapes")
    parser.add_argument("--batches", type=parse_batches, help="comma-separated batch sizes M")
    parser.add_argument("--tables", type=parse_tables, default=list(TABLES), help="isa,main,w2,w8a8 (default all)")
    parser.add_argument("--isas", type=parse_isas, help="ISA tiers of the isa table (default: every SIMD tier "
                        "this CPU supports)")
    parser.add_argument("--threads", type=int, help="intra-op threads (default: torch's)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time (needs --threads 1): on a busy machine, time spent "
                        "descheduled is not counted")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one tier, in this process
    args = parser.parse_args()
    if args.threads is not None:
        if args.threads <= 0:
            raise SystemExit(f"--threads must be positive, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.cpu_time:
        if torch.get_num_threads() != 1:
            raise SystemExit("--cpu-time sums every thread's time: use it with --threads 1")
        CLOCK = time.process_time
    if args.child:
        SHAPES, BATCHES = args.shapes or ISA_SHAPES, args.batches or ISA_BATCHES
        isa_table(read_bandwidth_gbs())
        return
    if "isa" in args.tables:
        SHAPES = args.shapes or ISA_SHAPES
        isas = checked_tiers(args.isas)
        BATCHES = args.batches or ISA_BATCHES
        run_isa_tiers(isas)
        if args.tables == ["isa"]:
            return
    SHAPES, BATCHES = args.shapes or MAIN_SHAPES, args.batches or MAIN_BATCHES
    bw = read_bandwidth_gbs()
    if "main" in args.tables:
        main_table(bw)
    else:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, quanto CPU ISA {ops.cpu_isa()}, "
              f"measured read bandwidth {bw:.1f} GB/s")
    if "w2" in args.tables:
        w2_table(bw)
    if "w8a8" in args.tables:
        w8a8_table()


if __name__ == "__main__":
    main()
