#include "args.h"

namespace quanto::cli {
namespace {

const char* kQuantizeFooter = R"(Which tensors are quantized:
  - `<module>.weight` tensors in float32/float16/bfloat16 with 2 dims (Linear-like layers) or
    3+ dims (convolutions), non-empty, matching an --include glob (if any) and no --exclude glob.
  - Copied as they are: embeddings (a module name part containing "embed", or named wte, wpe,
    shared; or a weight with the same bytes as lm_head's, i.e. tied to it), norms, biases, 1-D
    and 0-D tensors, non-float tensors, and every tensor whose name does not end in ".weight"
    (legacy integer "*.position_ids" buffers included).
  - lm_head stays float unless --include-lm-head. A head tied to the input embeddings (absent
    from the checkpoint, or with the same bytes as an embedding) is then untied like Python
    quanto's QuantizedModelForCausalLM.quantize(exclude=[]): lm_head.weight is quantized from the
    tied data, the embedding stays float, and config.json gets "tie_word_embeddings": false.
  - GPT-2 style Conv1D weights (config.json model_type gpt2, openai-gpt, imagegpt) are
    quantized transposed (out-first), as quanto's loader expects.
  Globs (fnmatch) match the module name ("model.layers.*.mlp.*") or the tensor name.

Quantization (optimum-quanto 0.2.7's math and keys, bit for bit):
  int8/float8: symmetric, per output channel (absmax). int4/int2: affine, groups of
  --group-size input features (default: 128, stepping down by 32 until it divides the
  layer's input features; per channel when they are <= 128), min/max or HQQ (p=0.7, beta=10,
  kappa=1.01, 20 iterations). Scales are in the weight's dtype unless --dtype.
  --dynamic-activations: the inputs of Linear-like layers (2-D weights; not convolutions) are
  quantized per token when the model runs (int8, or --activations float8*), with scales
  computed from each token; quanto_qmap.json says "dynamic_activations" (quanto reads it;
  optimum-quanto ignores it and runs those layers weight-only). Static per-tensor activation
  scales need calibration on sample inputs: use Python quanto (quanto.Calibration).

Input and output:
  INPUT: a Hugging Face folder (model.safetensors, or shards + model.safetensors.index.json) or
  one .safetensors file; pickle checkpoints (.bin/.pt/.pth) are refused. OUTPUT: a folder with
  the quantized safetensors (sharded like the input), its index, quanto_qmap.json and every
  other file of the input (config, tokenizer, ...); loadable by quanto.models and optimum-quanto.
  It is written into OUTPUT.tmp-<pid> and renamed at the end; OUTPUT must not exist (--force
  replaces it) and must not be inside the input. Tensors stream one at a time from mmap: peak
  memory stays near the largest tensor.)";

const char* kExportFooter = R"(Only exact equivalents are written: a quanto weight with no exact counterpart in the format
(for compressed-tensors: int4/int2 with a float shift, float8_e5m2, static activation scales) is
refused with a message naming the alternative (e.g. `quanto quantize --zero-point`), unless
--allow-reencode. Tensors stream one at a time; OUTPUT is written into a temporary folder and
renamed at the end. The work is done by the quanto Python package (`python -m quanto.export`),
found with $QUANTO_PYTHON, else the python3 beside this executable, else python3 on PATH.)";

}  // namespace

void declare(CLI::App& app, Parsed& p) {
  app.description("quanto: quantize Hugging Face safetensors checkpoints offline, export them, and inspect them");
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every sub-command");

  auto* q = app.add_subcommand("quantize", "Quantize the weights of a checkpoint into a new folder");
  p.quantize_cmd = q;
  auto& o = p.quantize;
  q->add_option("INPUT", o.input, "Model folder or .safetensors file")->required();
  q->add_option("-o,--output", o.output, "Output folder (must not exist unless --force)")->required();
  q->add_option("--weights", o.weights, "Weight type")
      ->check(CLI::IsMember({"int8", "int4", "int2", "float8", "float8_e4m3fn", "float8_e5m2"}))
      ->capture_default_str();
  q->add_option("--group-size", o.group_size,
                "Group size of int4/int2 weights (must divide every quantized layer's input features)")
      ->check(CLI::PositiveNumber);
  q->add_option("--optimizer", o.optimizer,
                "Scale optimizer: absmax (8-bit, the default there), minmax (2/4-bit default), symmetric "
                "(2/4-bit, zero-point 2^(bits-1): exports as compressed-tensors symmetric / GGUF Q4_0) or hqq (2/4-bit)")
      ->check(CLI::IsMember({"absmax", "minmax", "symmetric", "hqq"}));
  q->add_flag("--zero-point", o.zero_point,
              "2/4-bit: store an integer uint8 zero-point instead of a float shift (exports exactly to compressed-tensors)");
  q->add_flag("--dynamic-activations", o.dynamic_activations,
             "Also quantize the activations of Linear-like layers, per token at run time (no calibration)");
  q->add_option("--activations", o.activations, "Activation type with --dynamic-activations (default int8)")
      ->check(CLI::IsMember({"int8", "float8", "float8_e4m3fn", "float8_e5m2"}));
  q->add_option("--include", o.include, "Quantize only modules matching GLOB (repeatable)")->type_name("GLOB");
  q->add_option("--exclude", o.exclude, "Leave modules matching GLOB in float (repeatable)")->type_name("GLOB");
  q->add_option("--threads", o.threads, "Threads (0: all cores)")->check(CLI::NonNegativeNumber)->capture_default_str();
  q->add_option("--dtype", o.dtype, "dtype of scales and shifts (default: the weight's dtype)")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}));
  q->add_flag("--dry-run", o.dry_run, "Plan and report without quantizing or writing anything");
  q->add_flag("--json", o.json, "Print a machine-readable JSON summary on stdout (progress goes to stderr)");
  q->add_flag("--include-lm-head", o.include_lm_head, "Quantize lm_head too (a tied head is untied; the embedding stays float)");
  q->add_flag("--force", o.force, "Replace an existing OUTPUT (never the input)");
  q->add_option("--format", o.format,
                "Output format: quanto (default), or compressed-tensors / gguf (quantize, then `quanto export`)")
      ->check(CLI::IsMember({"quanto", "compressed-tensors", "gguf"}))
      ->capture_default_str();
  q->add_flag("--allow-reencode", o.allow_reencode,
              "With --format: re-encode what has no exact equivalent there, reporting the added error per layer");
  q->footer(kQuantizeFooter);

  auto* e = app.add_subcommand("export", "Re-encode a quanto folder for another engine (vLLM, llama.cpp)");
  p.export_cmd = e;
  auto& x = p.export_;
  e->add_option("INPUT", x.input, "A quanto folder (quanto quantize's output, or save_pretrained's)")->required();
  e->add_option("-o,--output", x.output, "Output folder (must not exist unless --force)")->required();
  e->add_option("--format", x.format, "compressed-tensors (vLLM, transformers) or gguf (llama.cpp)")
      ->check(CLI::IsMember({"compressed-tensors", "gguf"}))
      ->required();
  e->add_flag("--allow-reencode", x.allow_reencode,
              "Re-encode what has no exact equivalent in the format, reporting the added error per layer");
  e->add_flag("--force", x.force, "Replace an existing OUTPUT (never the input)");
  e->footer(kExportFooter);

  auto* i = app.add_subcommand("inspect", "List and validate the tensors of a (quantized or float) checkpoint");
  p.inspect_cmd = i;
  i->add_option("PATH", p.inspect.path, "Model folder or .safetensors file")->required();
  i->add_flag("--json", p.inspect.json, "Print JSON");
  i->footer("Validates every file (safetensors rules, index, quanto_qmap.json) and exits with status 1 and a "
            "message naming the problem when one is malformed.");
}

}  // namespace quanto::cli
