#include "bert_model.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <quanto/safetensors_aten.h>

#include <cmath>
#include <fstream>
#include <stdexcept>

namespace quanto_example {

using quanto::nn::QEmbedding;
using quanto::nn::QLayerNorm;
using quanto::nn::QLinear;

BertConfig BertConfig::from_json_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  const nlohmann::json j = nlohmann::json::parse(in);
  if (j.value("model_type", "") != "bert") throw std::runtime_error(path + ": not a BERT config");
  if (j.value("hidden_act", "gelu") != "gelu") throw std::runtime_error(path + ": only hidden_act=gelu is supported");
  if (j.value("position_embedding_type", "absolute") != "absolute")
    throw std::runtime_error(path + ": only absolute position embeddings are supported");
  BertConfig c;
  c.vocab_size = j.at("vocab_size").get<int64_t>();
  c.hidden_size = j.at("hidden_size").get<int64_t>();
  c.num_hidden_layers = j.at("num_hidden_layers").get<int64_t>();
  c.num_attention_heads = j.at("num_attention_heads").get<int64_t>();
  c.intermediate_size = j.at("intermediate_size").get<int64_t>();
  c.max_position_embeddings = j.at("max_position_embeddings").get<int64_t>();
  c.type_vocab_size = j.at("type_vocab_size").get<int64_t>();
  c.layer_norm_eps = j.at("layer_norm_eps").get<double>();
  if (c.hidden_size % c.num_attention_heads != 0)
    throw std::runtime_error(path + ": hidden_size is not a multiple of num_attention_heads");
  return c;
}

namespace {
QLayerNorm layer_norm(const BertConfig& c) {
  return QLayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.layer_norm_eps));
}
}  // namespace

void BertSelfAttentionImpl::reset() {
  query = register_module("query", QLinear(config.hidden_size, config.hidden_size));
  key = register_module("key", QLinear(config.hidden_size, config.hidden_size));
  value = register_module("value", QLinear(config.hidden_size, config.hidden_size));
}

at::Tensor BertSelfAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const int64_t B = x.size(0), T = x.size(1), heads = config.num_attention_heads;
  const int64_t d = config.hidden_size / heads;
  auto split = [&](const at::Tensor& t) { return t.view({B, T, heads, d}).transpose(1, 2); };
  const at::Tensor context =
      at::scaled_dot_product_attention(split(query(x)), split(key(x)), split(value(x)), mask);
  return context.transpose(1, 2).reshape({B, T, config.hidden_size});
}

void BertResidualOutputImpl::reset() {
  dense = register_module("dense", QLinear(in, config.hidden_size));
  LayerNorm = register_module("LayerNorm", layer_norm(config));
}

at::Tensor BertResidualOutputImpl::forward(const at::Tensor& x, const at::Tensor& residual) {
  return LayerNorm(dense(x) + residual);
}

void BertAttentionImpl::reset() {
  self = register_module("self", BertSelfAttention(config));
  output = register_module("output", BertResidualOutput(config, config.hidden_size));
}

at::Tensor BertAttentionImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  return output(self(x, mask), x);
}

void BertIntermediateImpl::reset() {
  dense = register_module("dense", QLinear(config.hidden_size, config.intermediate_size));
}

at::Tensor BertIntermediateImpl::forward(const at::Tensor& x) { return at::gelu(dense(x)); }

void BertLayerImpl::reset() {
  attention = register_module("attention", BertAttention(config));
  intermediate = register_module("intermediate", BertIntermediate(config));
  output = register_module("output", BertResidualOutput(config, config.intermediate_size));
}

at::Tensor BertLayerImpl::forward(const at::Tensor& x, const at::Tensor& mask) {
  const at::Tensor a = attention(x, mask);
  return output(intermediate(a), a);
}

void BertEncoderImpl::reset() {
  layer = register_module("layer", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) layer->push_back(BertLayer(config));
}

at::Tensor BertEncoderImpl::forward(at::Tensor x, const at::Tensor& mask) {
  for (const auto& l : *layer) x = l->as<BertLayerImpl>()->forward(x, mask);
  return x;
}

void BertEmbeddingsImpl::reset() {
  word_embeddings = register_module("word_embeddings", QEmbedding(config.vocab_size, config.hidden_size));
  position_embeddings =
      register_module("position_embeddings", QEmbedding(config.max_position_embeddings, config.hidden_size));
  token_type_embeddings =
      register_module("token_type_embeddings", QEmbedding(config.type_vocab_size, config.hidden_size));
  LayerNorm = register_module("LayerNorm", layer_norm(config));
}

at::Tensor BertEmbeddingsImpl::forward(const at::Tensor& input_ids) {
  const int64_t T = input_ids.size(1);
  TORCH_CHECK(T <= config.max_position_embeddings, "sequence of ", T, " tokens is longer than the model's ",
              config.max_position_embeddings, " positions");
  const at::Tensor positions = at::arange(T, input_ids.options()).unsqueeze(0);
  // Single-segment input: token type 0 everywhere.
  const at::Tensor types = at::zeros_like(input_ids);
  return LayerNorm(word_embeddings(input_ids) + position_embeddings(positions) + token_type_embeddings(types));
}

void BertModelImpl::reset() {
  embeddings = register_module("embeddings", BertEmbeddings(config));
  encoder = register_module("encoder", BertEncoder(config));
}

at::Tensor BertModelImpl::forward(const at::Tensor& input_ids, const at::Tensor& attention_mask) {
  TORCH_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong, "input_ids must be int64 [batch, tokens]");
  TORCH_CHECK(attention_mask.sizes() == input_ids.sizes(), "attention_mask must have input_ids' shape");
  const at::Tensor mask = attention_mask.to(at::kBool).unsqueeze(1).unsqueeze(2);  // [B, 1, 1, T]
  return encoder(embeddings(input_ids), mask);
}

void load_float_weights(BertModel& model, const std::string& safetensors_path) {
  const auto file = quanto::safetensors::File::open(safetensors_path);
  at::NoGradGuard no_grad;
  for (auto& item : model->named_parameters()) {
    TORCH_CHECK(file.contains(item.key()), safetensors_path, " has no tensor ", item.key());
    const at::Tensor source = file.tensor(item.key());
    TORCH_CHECK(source.sizes() == item.value().sizes(), item.key(), ": checkpoint shape ", source.sizes(),
                " does not match the model's ", item.value().sizes());
    item.value().copy_(source);
  }
}

at::Tensor sentence_embeddings(const at::Tensor& hidden, const at::Tensor& attention_mask) {
  const at::Tensor m = attention_mask.to(hidden.scalar_type()).unsqueeze(-1);
  const at::Tensor mean = (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9);
  return mean / mean.norm(2, {-1}, true).clamp_min(1e-12);
}

}  // namespace quanto_example
