// Parsed command-line options of `quanto quantize` and `quanto inspect`.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace quanto::cli {

struct QuantizeOptions {
  std::string input;
  std::string output;
  std::string weights = "int8";          // CLI name: int8, int4, int2, float8, float8_e4m3fn, float8_e5m2
  std::optional<int64_t> group_size;     // 2/4-bit only; default: docs/format.md's rule per layer
  std::string optimizer;                 // absmax | minmax | symmetric | hqq; empty: absmax (8-bit), minmax (2/4-bit)
  bool zero_point = false;               // 2/4-bit: integer uint8 zero-point instead of a float shift
  // Activations of Linear-like layers, quantized per token at run time by the loader (the CLI
  // cannot calibrate static scales: that needs the model's code and sample inputs).
  bool dynamic_activations = false;
  std::string activations;               // CLI name (int8, float8, ...); empty: int8 with --dynamic-activations
  std::vector<std::string> include;      // module globs; empty: every candidate
  std::vector<std::string> exclude;      // module globs
  int threads = 0;                       // 0: ATen's default (all cores)
  std::string dtype;                     // scale dtype: float32 | float16 | bfloat16; empty: the weight's
  bool dry_run = false;
  bool json = false;
  bool include_lm_head = false;
  bool force = false;
  std::string format = "quanto";         // quanto | compressed-tensors | gguf (exported after quantizing)
  bool allow_reencode = false;           // export: re-encode what has no exact equivalent, reporting the error
};

// `quanto export`: re-encode a quanto folder for another engine (the Python package does it).
struct ExportOptions {
  std::string input;
  std::string output;
  std::string format;                    // compressed-tensors | gguf
  bool allow_reencode = false;
  bool force = false;
};

struct InspectOptions {
  std::string path;
  bool json = false;
};

// A user-facing failure: printed as one line "quanto: error: <what>", exit status 1.
struct CliError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace quanto::cli
