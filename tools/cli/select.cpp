#include "select.h"

#include "util.h"

#include <algorithm>
#include <map>

namespace quanto::cli {
namespace {

std::vector<std::string> split_dots(const std::string& s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i)
    if (i == s.size() || s[i] == '.') {
      parts.push_back(s.substr(start, i - start));
      start = i + 1;
    }
  return parts;
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_embedding_name(const std::string& module) {
  for (const auto& part : split_dots(lower(module)))
    if (part.find("embed") != std::string::npos || part == "wte" || part == "wpe" || part == "shared") return true;
  return false;
}

bool is_lm_head(const std::string& module) {
  const auto parts = split_dots(module);
  return !parts.empty() && parts.back() == "lm_head";
}

bool matches_any(const std::vector<std::string>& globs, const TensorPlan& t, const std::string& module) {
  for (const auto& g : globs)
    if (glob_match(g, module) || glob_match(g, t.name)) return true;
  return false;
}

bool uses_conv1d(const nlohmann::json& config) {
  if (!config.is_object() || !config.contains("model_type") || !config["model_type"].is_string()) return false;
  const std::string mt = config["model_type"].get<std::string>();
  return mt == "gpt2" || mt == "openai-gpt" || mt == "imagegpt";
}

const std::string kWeightSuffix = ".weight";

}  // namespace

const QType& qtype_of_cli_name(const std::string& name) {
  static const std::map<std::string, const QType*> table = {
      {"int8", &qint8}, {"int4", &qint4}, {"int2", &qint2}, {"float8", &qfloat8_e4m3fn},
      {"float8_e4m3fn", &qfloat8_e4m3fn}, {"float8_e5m2", &qfloat8_e5m2}};
  auto it = table.find(name);
  if (it == table.end()) throw CliError("unknown --weights '" + name + "'");
  return *it->second;
}

Settings resolve_settings(const QuantizeOptions& opts) {
  Settings s;
  s.qtype = &qtype_of_cli_name(opts.weights);
  const bool bits8 = s.qtype->bits == 8;
  s.optimizer = opts.optimizer.empty() ? (bits8 ? "absmax" : "minmax") : opts.optimizer;
  if (bits8 && s.optimizer != "absmax")
    throw CliError("--optimizer " + s.optimizer + " is for 2/4-bit weights (int4, int2); " + opts.weights +
                   " weights use absmax");
  if (!bits8 && s.optimizer == "absmax")
    throw CliError("--optimizer absmax is for 8-bit weights (int8, float8*); " + opts.weights +
                   " weights use minmax, symmetric or hqq");
  if (bits8 && opts.zero_point)
    throw CliError("--zero-point applies to 2/4-bit weights (int4, int2) only; " + opts.weights +
                   " weights are symmetric");
  // The symmetric grid is an integer zero-point: stored as one, it exports exactly.
  s.zero_point = opts.zero_point || s.optimizer == "symmetric";
  if (opts.group_size) {
    if (bits8)
      throw CliError("--group-size applies to 2/4-bit weights (int4, int2) only; " + opts.weights +
                     " weights are quantized per output channel");
    if (*opts.group_size <= 0)
      throw CliError("--group-size must be a positive integer, got " + std::to_string(*opts.group_size));
  }
  if (!opts.activations.empty() && !opts.dynamic_activations)
    throw CliError("--activations " + opts.activations + " needs --dynamic-activations: the CLI quantizes activations "
                   "per token at run time only (static per-tensor scales need calibration on sample inputs; use "
                   "Python quanto.Calibration for those)");
  if (opts.dynamic_activations) {
    static const std::map<std::string, const QType*> act = {
        {"int8", &qint8}, {"float8", &qfloat8_e4m3fn}, {"float8_e4m3fn", &qfloat8_e4m3fn}, {"float8_e5m2", &qfloat8_e5m2}};
    auto it = act.find(opts.activations.empty() ? "int8" : opts.activations);
    if (it == act.end())
      throw CliError("unknown --activations '" + opts.activations + "' (int8, float8, float8_e4m3fn, float8_e5m2)");
    s.dynamic_activations = it->second;
  }
  if (!opts.dtype.empty()) {
    static const std::map<std::string, safetensors::Dtype> dt = {{"float32", safetensors::Dtype::F32},
                                                                 {"float16", safetensors::Dtype::F16},
                                                                 {"bfloat16", safetensors::Dtype::BF16}};
    auto it = dt.find(opts.dtype);
    if (it == dt.end()) throw CliError("unknown --dtype '" + opts.dtype + "'");
    s.scale_dtype = it->second;
  }
  return s;
}

std::vector<TensorPlan> plan_tensors(std::vector<TensorPlan> tensors, const QuantizeOptions& opts,
                                     const Settings& settings, const nlohmann::json& config,
                                     const std::function<bool(const TensorPlan&, const TensorPlan&)>& same_bytes,
                                     std::vector<std::string>& notes) {
  const bool conv1d = uses_conv1d(config);
  bool nondefault_group = false;
  std::map<std::string, size_t> by_name;
  for (size_t i = 0; i < tensors.size(); ++i) by_name[tensors[i].name] = i;

  // Tied output embeddings: lm_head absent while the config ties them, or lm_head with the same
  // bytes as another weight (that weight is then an embedding, whatever its name).
  std::vector<size_t> heads;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (t.name.size() > kWeightSuffix.size() && t.name.compare(t.name.size() - kWeightSuffix.size(),
                                                                 kWeightSuffix.size(), kWeightSuffix) == 0 &&
        is_lm_head(t.name.substr(0, t.name.size() - kWeightSuffix.size())))
      heads.push_back(i);
  }
  std::vector<bool> tied_to_head(tensors.size(), false), head_tied(tensors.size(), false);
  for (size_t h : heads)
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (i == h || tensors[i].dtype != tensors[h].dtype || tensors[i].shape != tensors[h].shape) continue;
      if (same_bytes(tensors[h], tensors[i])) {
        tied_to_head[i] = true;
        head_tied[h] = true;
      }
    }
  const bool config_ties = config.is_object() && config.value("tie_word_embeddings", false);
  if (opts.include_lm_head && heads.empty() && config_ties) {
    // The head is the input embedding matrix: quantize a copy of it as lm_head.weight.
    const int64_t vocab = config.contains("vocab_size") && config["vocab_size"].is_number_integer()
                              ? config["vocab_size"].get<int64_t>()
                              : -1;
    std::vector<size_t> found;
    for (size_t i = 0; i < tensors.size(); ++i) {
      const auto& t = tensors[i];
      if (t.shape.size() != 2 || !is_quantizable_float(t.dtype) || t.name.size() <= kWeightSuffix.size() ||
          t.name.compare(t.name.size() - kWeightSuffix.size(), kWeightSuffix.size(), kWeightSuffix) != 0)
        continue;
      const std::string module = t.name.substr(0, t.name.size() - kWeightSuffix.size());
      if (!is_embedding_name(module) || lower(module).find("position") != std::string::npos ||
          split_dots(module).back() == "wpe")
        continue;
      if (vocab > 0 && t.shape[0] != vocab) continue;
      found.push_back(i);
    }
    if (found.size() == 1) {
      TensorPlan head = tensors[found[0]];
      head.source = head.name;
      head.name = "lm_head" + std::string(kWeightSuffix);
      tied_to_head.push_back(false);
      head_tied.push_back(false);
      tied_to_head[found[0]] = true;
      tensors.push_back(std::move(head));
    } else {
      notes.push_back("lm_head is tied to the input embeddings (not stored in the checkpoint) and " +
                      std::string(found.empty() ? "no" : "more than one") +
                      " embedding matrix matches the vocabulary: lm_head stays tied and float");
    }
  }

  for (size_t i = 0; i < tensors.size(); ++i) {
    TensorPlan& t = tensors[i];
    const bool is_weight = t.name.size() > kWeightSuffix.size() &&
                           t.name.compare(t.name.size() - kWeightSuffix.size(), kWeightSuffix.size(), kWeightSuffix) == 0;
    const std::string module = is_weight ? t.name.substr(0, t.name.size() - kWeightSuffix.size()) : "";
    int64_t numel = 1;
    for (auto d : t.shape) numel *= d;
    auto copy = [&](const char* why) { t.quantize = false; t.reason = why; };
    if (!is_weight) {
      const std::string n = t.name;
      copy(n.size() >= 5 && n.compare(n.size() - 5, 5, ".bias") == 0 ? "bias" : "not a weight");
      continue;
    }
    if (t.shape.size() < 2) { copy("norm/1-D"); continue; }
    if (!is_quantizable_float(t.dtype)) { copy("not float"); continue; }
    if (numel == 0) { copy("empty"); continue; }
    if (is_embedding_name(module)) { copy("embedding"); continue; }
    if (tied_to_head[i]) { copy("embedding (tied to lm_head)"); continue; }
    if (is_lm_head(module)) {
      if (!opts.include_lm_head) { copy("lm_head"); continue; }
      if (head_tied[i] || !t.source.empty()) {
        t.untied_head = true;
        notes.push_back("'" + t.name + "' is tied to the input embeddings: it is quantized from " +
                        (t.source.empty() ? "its data" : "'" + t.source + "'") +
                        ", the embedding stays float and config.json gets tie_word_embeddings false (as Python "
                        "quanto's QuantizedModelForCausalLM.quantize(exclude=[]) saves it)");
      }
    }
    if (!opts.include.empty() && !matches_any(opts.include, t, module)) { copy("not included"); continue; }
    if (matches_any(opts.exclude, t, module)) { copy("excluded"); continue; }

    t.quantize = true;
    t.module = module;
    t.transpose = conv1d && t.shape.size() == 2 && !is_lm_head(module);  // GPT-2's head is a Linear
    t.qshape = t.shape;
    if (t.transpose) std::swap(t.qshape[0], t.qshape[1]);
    if (settings.qtype->bits < 8) {
      const int64_t in_features = numel / t.qshape[0];
      if (opts.group_size) {
        if (in_features % *opts.group_size != 0)
          throw CliError("--group-size " + std::to_string(*opts.group_size) + " does not divide the " +
                         std::to_string(in_features) + " input features of '" + t.name + "' " + shape_str(t.shape) +
                         " (exclude it with --exclude, or pick a divisor)");
        t.group_size = *opts.group_size;
        if (t.group_size != default_group_size(in_features)) nondefault_group = true;
      } else {
        t.group_size = default_group_size(in_features);
      }
    }
  }
  if (nondefault_group)
    notes.push_back("a non-default --group-size loads in quanto (Python and C++) but not in optimum-quanto, which "
                    "rebuilds the default group size (128, stepping down by 32) on load");
  if (conv1d)
    notes.push_back("GPT-2 style Conv1D weights are quantized out-first: the output loads in quanto, not in "
                    "optimum-quanto (which does not quantize Conv1D)");
  return tensors;
}

}  // namespace quanto::cli
