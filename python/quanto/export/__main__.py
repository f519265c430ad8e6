"""``python -m quanto.export SRC -o OUT --format compressed-tensors|gguf``: the command-line entry of
:func:`quanto.export.export` (the native ``quanto export`` command calls it).

Exit status: 0 on success, 2 when the export is refused or the arguments are invalid (the message
says why and what to do), 1 on any other error. ``--json`` prints the per-layer report as JSON on
stdout; the human summary goes to stderr."""

import argparse
import json
import sys

DESCRIPTION = "Export a quanto checkpoint folder to compressed-tensors (vLLM, transformers) or GGUF (llama.cpp)."
EPILOG = """\
compressed-tensors: OUT is a folder. int4/int2 weights with an integer zero-point (Python optimizer
"zeropoint" or "symmetric"), int8 and float8 (e4m3fn) weights of Linear layers map exactly. A float
shift (the default of int4/int2), float8_e5m2, quantized non-Linear modules and static activation
quantization are refused unless --allow-reencode (activations: always refused).
gguf: OUT is a .gguf file (Llama-family models). int8 -> Q8_0, int4 with groups of a multiple of 32
-> Q4_1 (Q4_0 when symmetric); scales/shifts are stored as fp16, and any rounding that adds is
reported per tensor. Other float tensors keep their dtype (1-D ones become F32).
Both stream tensor by tensor and write atomically; OUT must not exist unless --force."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m quanto.export", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("src", metavar="SRC",
                        help="quanto checkpoint folder (safetensors + quanto_qmap.json + config.json)")
    parser.add_argument("-o", "--output", required=True, metavar="OUT",
                        help="output folder (compressed-tensors) or file (gguf)")
    parser.add_argument("--format", required=True, choices=["compressed-tensors", "gguf"])
    parser.add_argument("--allow-reencode", action="store_true",
                        help="re-encode what has no exact equivalent and report the added error per layer")
    parser.add_argument("--force", action="store_true", help="replace an existing OUT (never the input)")
    parser.add_argument("--tokenizer-pre", metavar="NAME",
                        help="gguf: llama.cpp's pre-tokenizer name (tokenizer.ggml.pre), e.g. smollm, llama-bpe")
    parser.add_argument("--json", action="store_true", help="print the per-layer report as JSON on stdout")
    args = parser.parse_args(argv)

    from . import ExportRefused, export  # imports torch and the native library: after argument parsing

    try:
        report = export(args.src, args.output, format=args.format, allow_reencode=args.allow_reencode,
                        force=args.force, tokenizer_pre=args.tokenizer_pre)
    except (ExportRefused, ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
        print(f"quanto export: error: {e}", file=sys.stderr)
        return 2
    print(report.summary(), file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
