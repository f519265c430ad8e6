// Which tensors are quantized, and how (the rules `quanto quantize --help` documents):
//  - quantized: `<module>.weight` tensors in F32/F16/BF16 with 2 dims (Linear-like) or 3+ dims
//    (convolutions), non-empty, matching --include (if any) and no --exclude glob;
//  - copied as they are: embeddings (a module name part containing "embed", or named wte, wpe,
//    shared; or a weight with the same bytes as lm_head's, i.e. tied to it), norms, biases, 1-D
//    and 0-D tensors, non-float tensors, everything that is not a `.weight` (legacy integer
//    `*.position_ids` buffers included: quanto's loader ignores them as transformers does);
//  - lm_head (module name ending in "lm_head") is copied unless --include-lm-head. With the flag,
//    a head tied to the input embeddings is untied as Python quanto's
//    QuantizedModelForCausalLM.quantize(exclude=[]) does: lm_head.weight is quantized from the
//    tied data (the embedding's, when the checkpoint does not store the head), the embedding
//    stays float, and config.json gets "tie_word_embeddings": false;
//  - transformers' GPT-2 style Conv1D weights (config model_type gpt2 / openai-gpt / imagegpt)
//    are stored [in, out]: they are quantized transposed ([out, in]), as quanto's Python loader
//    expects (optimum-quanto does not quantize Conv1D).
// Globs (fnmatch) match the module name ("model.layers.0.mlp.up_proj") or the tensor name.
#pragma once

#include <quanto/qtype.h>
#include <quanto/safetensors.h>

#include <nlohmann/json.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "options.h"

namespace quanto::cli {

struct TensorPlan {
  std::string name;                    // tensor name in the input
  std::string shard;                   // input shard file name
  safetensors::Dtype dtype;
  std::vector<int64_t> shape;          // as stored in the input
  bool quantize = false;
  std::string source;                  // input tensor read when not `name` (a tied head's embedding)
  bool untied_head = false;            // a quantized lm_head that was tied to the input embeddings
  std::string reason;                  // why it is copied ("embedding", "norm/1-D", "bias", ...)
  std::string module;                  // quantized: the module name
  std::vector<int64_t> qshape;         // quantized: the canonical (out-first) shape
  bool transpose = false;              // quantized: Conv1D weight stored [in, out]
  std::optional<int64_t> group_size;   // quantized 2/4-bit: the group size (nullopt: per channel)
};

struct Settings {
  const QType* qtype = nullptr;
  const QType* dynamic_activations = nullptr;  // per-token activations of Linear-like layers, or none
  std::string optimizer;               // resolved: absmax | minmax | symmetric | hqq
  bool zero_point = false;             // 2/4-bit: store the shift as a uint8 zero-point
  std::optional<safetensors::Dtype> scale_dtype;  // nullopt: the weight's dtype
};

// The qtype of a --weights value (int8 -> qint8, float8 -> qfloat8_e4m3fn, ...).
const QType& qtype_of_cli_name(const std::string& name);

// Settings from the options; throws CliError for an optimizer that does not fit the qtype, a
// group size given for 8-bit weights, or --activations without --dynamic-activations.
Settings resolve_settings(const QuantizeOptions& opts);

// Decides every tensor. `same_bytes(a, b)` compares two tensors' data (tie detection); it is
// only called for tensors of equal dtype and shape. Throws CliError when --group-size does not
// divide a quantized layer's input features.
std::vector<TensorPlan> plan_tensors(std::vector<TensorPlan> tensors, const QuantizeOptions& opts,
                                     const Settings& settings, const nlohmann::json& config,
                                     const std::function<bool(const TensorPlan&, const TensorPlan&)>& same_bytes,
                                     std::vector<std::string>& notes);

}  // namespace quanto::cli
