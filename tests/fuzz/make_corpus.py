#!/usr/bin/env python3
"""Writes the hand-made corpora (committed; rerun only to change them):

  corpus_malformed/       safetensors files that each break one rule of docs/format.md
  corpus_qmap_malformed/  quantization maps that each break one rule
  corpus_seed/            valid safetensors files (written by the `safetensors` package) and
                          valid maps: fuzzing seeds

Each malformed folder has an EXPECTED.tsv: file name, a tab, the substring its error must
contain. tests/io/malformed_test.cpp asserts every row and that every file has a row.
"""
import json
import os
import shutil
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def st(header: bytes, data: bytes = b"", n=None) -> bytes:
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def hj(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def entry(dtype, shape, b, e):
    return {"dtype": dtype, "shape": shape, "data_offsets": [b, e]}


MALFORMED = [
    # name, bytes, expected error substring
    ("empty.st", b"", "file is shorter than 8 bytes"),
    ("truncated_length.st", b"\x10\x00\x00", "file is shorter than 8 bytes"),
    ("huge_n.st", st(b"{}", n=1 << 63), "is too large (limit 100000000 bytes)"),
    ("n_over_limit.st", st(b"{}", n=100_000_001), "is too large"),
    ("n_past_eof.st", st(b"{}", n=1000), "header length N = 1000 runs past the end of the file"),
    ("truncated_header.st", st(hj({"a": entry("F32", [2], 0, 8)}))[:20], "runs past the end of the file"),
    ("truncated_data.st", st(hj({"a": entry("F32", [4], 0, 16)}), b"\0" * 10),
     "data buffer runs past the end of the file"),
    ("bad_utf8.st", st(b'{"a\xff":' + hj(entry("U8", [1], 0, 1)) + b"}", b"\0"), "header is not valid UTF-8"),
    ("overlong_utf8.st", st(b'{"a\xc0\xaf":' + hj(entry("U8", [1], 0, 1)) + b"}", b"\0"),
     "header is not valid UTF-8"),
    ("surrogate_utf8.st", st(b'{"a\xed\xa0\x80":' + hj(entry("U8", [1], 0, 1)) + b"}", b"\0"),
     "header is not valid UTF-8"),
    ("not_json.st", st(b"{not json}"), "header is not valid JSON"),
    ("n_zero.st", st(b""), "header is not valid JSON"),
    ("trailing_json.st", st(b"{} {}"), "header is not valid JSON"),
    ("not_object.st", st(b"[1, 2]"), "header is not a JSON object (it is a JSON array)"),
    ("entry_not_object.st", st(hj({"a": [0, 1]})), 'tensor "a": entry is not a JSON object'),
    ("missing_dtype.st", st(hj({"a": {"shape": [1], "data_offsets": [0, 1]}}), b"\0"),
     'tensor "a": missing field "dtype"'),
    ("missing_shape.st", st(hj({"a": {"dtype": "U8", "data_offsets": [0, 1]}}), b"\0"),
     'tensor "a": missing field "shape"'),
    ("missing_offsets.st", st(hj({"a": {"dtype": "U8", "shape": [1]}}), b"\0"),
     'tensor "a": missing field "data_offsets"'),
    ("dtype_not_string.st", st(hj({"a": entry(7, [1], 0, 1)}), b"\0"), '"dtype" is not a string'),
    ("unknown_dtype.st", st(hj({"a": entry("F4", [2], 0, 1)}), b"\0"), 'unknown dtype "F4"'),
    ("unknown_dtype_lowercase.st", st(hj({"a": entry("f32", [1], 0, 4)}), b"\0" * 4), 'unknown dtype "f32"'),
    ("shape_not_array.st", st(hj({"a": entry("U8", 1, 0, 1)}), b"\0"), '"shape" is not an array'),
    ("shape_negative.st", st(hj({"a": entry("U8", [-1], 0, 1)}), b"\0"),
     '"shape" has a value that is not a non-negative integer'),
    ("shape_float.st", st(hj({"a": entry("U8", [1.5], 0, 1)}), b"\0"),
     '"shape" has a value that is not a non-negative integer'),
    ("shape_beyond_u64.st", st(b'{"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,1]}}', b"\0"),
     '"shape" has a value that is not a non-negative integer'),
    ("shape_overflow.st", st(hj({"a": entry("F32", [1 << 32, 1 << 32, 16], 0, 4)}), b"\0" * 4),
     "shape x element size overflows 64 bits"),
    ("shape_overflow_elem.st", st(hj({"a": entry("F64", [1 << 61], 0, 8)}), b"\0" * 8),
     "shape x element size overflows 64 bits"),
    ("offsets_three.st", st(hj({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}), b"\0"),
     '"data_offsets" must hold exactly 2 values'),
    ("offsets_negative.st", st(hj({"a": entry("U8", [1], -1, 0)}), b"\0"),
     '"data_offsets" has a value that is not a non-negative integer'),
    ("offsets_reversed.st", st(hj({"a": entry("U8", [0], 4, 0)}), b"\0" * 4), "is before begin"),
    ("range_mismatch.st", st(hj({"a": entry("F32", [2], 0, 4)}), b"\0" * 4),
     "byte range of 4 bytes does not match dtype x shape (8 bytes)"),
    ("overlap.st", st(hj({"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}), b"\0" * 12),
     'data_offsets overlap tensor "a"'),
    ("same_range.st", st(hj({"a": entry("U8", [4], 0, 4), "b": entry("U8", [4], 0, 4)}), b"\0" * 4),
     "data_offsets overlap tensor"),
    ("gap.st", st(hj({"a": entry("F32", [1], 0, 4), "b": entry("F32", [1], 8, 12)}), b"\0" * 12),
     'tensor "b": gap in the data buffer'),
    ("not_from_zero.st", st(hj({"a": entry("F32", [1], 4, 8)}), b"\0" * 8), 'tensor "a": gap in the data buffer'),
    ("offsets_huge.st", st(hj({"a": entry("U8", [(1 << 64) - 1], 0, (1 << 64) - 1)}), b"\0" * 8),
     "data buffer runs past the end of the file"),
    ("trailing_bytes.st", st(hj({"a": entry("U8", [2], 0, 2)}), b"\0" * 5),
     "3 trailing bytes after the last tensor"),
    ("trailing_bytes_empty.st", st(b"{}", b"x"), "1 trailing bytes after the last tensor"),
    ("duplicate_names.st", st(b'{"a":' + hj(entry("U8", [1], 0, 1)) + b',"a":' + hj(entry("U8", [1], 1, 2)) + b"}",
                              b"\0\0"), 'duplicate tensor name "a" in header'),
    ("duplicate_metadata_block.st", st(b'{"__metadata__":{},"__metadata__":{}}'),
     'header has more than one "__metadata__"'),
    ("duplicate_metadata_key.st", st(b'{"__metadata__":{"k":"1","k":"2"}}'), 'duplicate __metadata__ key "k"'),
    ("duplicate_field.st", st(b'{"a":{"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]}}', b"\0"),
     'tensor "a": duplicate field "dtype"'),
    ("metadata_not_object.st", st(hj({"__metadata__": ["k", "v"]})), '"__metadata__" is not a JSON object'),
    ("metadata_non_string.st", st(hj({"__metadata__": {"k": 1}})), '"__metadata__" value of key "k" is not a string'),
    ("metadata_nested.st", st(hj({"__metadata__": {"k": {"x": "y"}}})),
     '"__metadata__" value of key "k" is not a string'),
    ("deep_nesting.st", st(b"{\"a\":" + b"[" * 5000 + b"]" * 5000 + b"}"), "header JSON nests deeper than"),
]

QMAP_MALFORMED = [
    ("empty.json", b"", "not valid JSON"),
    ("not_json.json", b"{weights: qint8}", "not valid JSON"),
    ("not_object.json", b'["qint8"]', "not a JSON object (it is a JSON array)"),
    ("entry_not_object.json", b'{"fc": "qint8"}', 'module "fc": entry is not a JSON object'),
    ("missing_weights.json", b'{"fc": {"activations": "none"}}', 'module "fc": missing field "weights"'),
    ("missing_activations.json", b'{"fc": {"weights": "qint8"}}', 'module "fc": missing field "activations"'),
    ("unknown_qtype.json", b'{"fc": {"weights": "qint3", "activations": "none"}}', 'unknown qtype "qint3"'),
    ("unknown_activation.json", b'{"fc": {"weights": "qint8", "activations": "int8"}}', 'unknown qtype "int8"'),
    ("weights_not_string.json", b'{"fc": {"weights": 8, "activations": "none"}}', '"weights" is not a string'),
    ("weights_null.json", b'{"fc": {"weights": null, "activations": "none"}}', '"weights" is not a string'),
    ("extra_field.json", b'{"fc": {"weights": "qint8", "activations": "none", "group": 64}}',
     'module "fc": unknown field "group"'),
    ("group_size_string.json", b'{"fc": {"weights": "qint4", "activations": "none", "group_size": "64"}}',
     'module "fc": "group_size" must be a positive integer, got "64"'),
    ("group_size_float.json", b'{"fc": {"weights": "qint4", "activations": "none", "group_size": 64.0}}',
     'module "fc": "group_size" must be a positive integer, got 64.0'),
    ("group_size_zero.json", b'{"fc": {"weights": "qint4", "activations": "none", "group_size": 0}}',
     'module "fc": "group_size" must be a positive integer, got 0'),
    ("group_size_negative.json", b'{"fc": {"weights": "qint2", "activations": "none", "group_size": -32}}',
     'module "fc": "group_size" must be a positive integer, got -32'),
    ("group_size_huge.json",
     b'{"fc": {"weights": "qint2", "activations": "none", "group_size": 18446744073709551615}}',
     'module "fc": "group_size" 18446744073709551615 is too large'),
    ("group_size_int8.json", b'{"fc": {"weights": "qint8", "activations": "none", "group_size": 64}}',
     'module "fc": "group_size" applies to qint2/qint4 weights only, not qint8'),
    ("quantize_output_string.json",
     b'{"fc": {"weights": "qint8", "activations": "qint8", "quantize_output": "false"}}',
     'module "fc": "quantize_output" must be true or false, got "false"'),
    ("quantize_output_int.json", b'{"fc": {"weights": "qint8", "activations": "qint8", "quantize_output": 0}}',
     'module "fc": "quantize_output" must be true or false, got 0'),
    ("dynamic_activations_int4.json",
     b'{"fc": {"weights": "qint8", "activations": "none", "dynamic_activations": "qint4"}}',
     'module "fc": "dynamic_activations" must be qint8 or a float8 qtype'),
    ("dynamic_activations_bool.json",
     b'{"fc": {"weights": "qint8", "activations": "none", "dynamic_activations": true}}',
     'module "fc": "dynamic_activations" must be qint8 or a float8 qtype name, got true'),
    ("dynamic_activations_with_static.json",
     b'{"fc": {"weights": "qint8", "activations": "qint8", "dynamic_activations": "qint8"}}',
     'module "fc": "dynamic_activations" needs "activations": "none"'),
    ("duplicate_module.json",
     b'{"fc": {"weights": "qint8", "activations": "none"}, "fc": {"weights": "qint4", "activations": "none"}}',
     'duplicate module name "fc"'),
    ("duplicate_field.json", b'{"fc": {"weights": "qint8", "weights": "qint4", "activations": "none"}}',
     'module "fc": duplicate field "weights"'),
    ("deep_nesting.json", b"[" * 5000 + b"]" * 5000, "JSON nests deeper than"),
    ("bad_utf8.json", b'{"f\xffc": {"weights": "qint8", "activations": "none"}}', "not valid JSON"),
]


def write_table(folder, rows):
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    with open(os.path.join(folder, "EXPECTED.tsv"), "w") as t:
        t.write("# file\texpected error substring\n")
        for name, data, expected in rows:
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
            t.write(f"{name}\t{expected}\n")


def write_seeds(folder):
    import torch
    from safetensors.torch import save_file

    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    g = torch.Generator().manual_seed(0)
    save_file({"w": torch.randn(2, 3, generator=g), "b": torch.zeros(3, dtype=torch.bfloat16),
               "i": torch.arange(4, dtype=torch.int8), "s": torch.tensor(1.5)},
              os.path.join(folder, "small.st"), metadata={"format": "pt", "quanto": "1"})
    save_file({"e": torch.zeros(0, 4), "f8": torch.ones(2, 2).to(torch.float8_e4m3fn)},
              os.path.join(folder, "empty_and_fp8.st"))
    save_file({}, os.path.join(folder, "no_tensors.st"))
    with open(os.path.join(folder, "qmap.json"), "w") as f:
        json.dump({"encoder.fc": {"weights": "qint4", "activations": "none"},
                   "head": {"weights": "qfloat8", "activations": "qint8"}}, f, indent=4)
    write_optional_seed(folder)


def write_optional_seed(folder):
    # The optional entries quanto writes (non-default group size, Calibration streamlining,
    # dynamic activations).
    with open(os.path.join(folder, "qmap_optional.json"), "w") as f:
        json.dump({"encoder.fc": {"weights": "qint4", "activations": "none", "group_size": 32},
                   "encoder.out": {"weights": "qint2", "activations": "none", "group_size": None},
                   "head": {"weights": "qint8", "activations": "qint8", "quantize_output": False},
                   "decoder.fc": {"weights": "qint4", "activations": "none", "dynamic_activations": "qint8"},
                   "decoder.out": {"weights": "qint8", "activations": "none", "dynamic_activations": None}},
                  f, indent=4)


if __name__ == "__main__":
    write_table(os.path.join(HERE, "corpus_malformed"), MALFORMED)
    write_table(os.path.join(HERE, "corpus_qmap_malformed"), QMAP_MALFORMED)
    if "--no-seeds" not in sys.argv:
        write_seeds(os.path.join(HERE, "corpus_seed"))
    else:
        write_optional_seed(os.path.join(HERE, "corpus_seed"))
