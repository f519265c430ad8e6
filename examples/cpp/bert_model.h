// A BERT encoder (as in Hugging Face transformers' BertModel, without the pooler) written with
// the LibTorch C++ frontend and quanto's quantizable layers, so quanto::quantize / freeze /
// save / requantize work on it unchanged. Module names mirror transformers' state_dict keys
// ("encoder.layer.0.attention.self.query.weight", ...), so the float checkpoint loads by name
// and a quantized file saved from here has the keys optimum-quanto expects on a BertModel.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/container/modulelist.h>

#include <quanto/nn.h>

#include <string>

namespace quanto_example {

struct BertConfig {
  int64_t vocab_size = 30522;
  int64_t hidden_size = 384;
  int64_t num_hidden_layers = 6;
  int64_t num_attention_heads = 12;
  int64_t intermediate_size = 1536;
  int64_t max_position_embeddings = 512;
  int64_t type_vocab_size = 2;
  double layer_norm_eps = 1e-12;

  // Reads a transformers config.json; refuses anything but an absolute-position, GELU BERT.
  static BertConfig from_json_file(const std::string& path);
};

// The HF sub-blocks, one small module each so parameter names match transformers'.
struct BertSelfAttentionImpl : torch::nn::Cloneable<BertSelfAttentionImpl> {
  explicit BertSelfAttentionImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  // x [B, T, H], mask [B, 1, 1, T] (true = attend) -> [B, T, H]
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
  BertConfig config;
  quanto::nn::QLinear query{nullptr}, key{nullptr}, value{nullptr};
};
TORCH_MODULE(BertSelfAttention);

// dense -> dropout (none at inference) -> LayerNorm(residual + ·); used twice per layer.
struct BertResidualOutputImpl : torch::nn::Cloneable<BertResidualOutputImpl> {
  BertResidualOutputImpl(const BertConfig& c, int64_t in_features) : config(c), in(in_features) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& residual);
  BertConfig config;
  int64_t in;
  quanto::nn::QLinear dense{nullptr};
  quanto::nn::QLayerNorm LayerNorm{nullptr};  // NOLINT: the transformers name
};
TORCH_MODULE(BertResidualOutput);

struct BertAttentionImpl : torch::nn::Cloneable<BertAttentionImpl> {
  explicit BertAttentionImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
  BertConfig config;
  BertSelfAttention self{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertAttention);

struct BertIntermediateImpl : torch::nn::Cloneable<BertIntermediateImpl> {
  explicit BertIntermediateImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x);
  BertConfig config;
  quanto::nn::QLinear dense{nullptr};
};
TORCH_MODULE(BertIntermediate);

struct BertLayerImpl : torch::nn::Cloneable<BertLayerImpl> {
  explicit BertLayerImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& x, const at::Tensor& mask);
  BertConfig config;
  BertAttention attention{nullptr};
  BertIntermediate intermediate{nullptr};
  BertResidualOutput output{nullptr};
};
TORCH_MODULE(BertLayer);

struct BertEncoderImpl : torch::nn::Cloneable<BertEncoderImpl> {
  explicit BertEncoderImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  at::Tensor forward(at::Tensor x, const at::Tensor& mask);
  BertConfig config;
  torch::nn::ModuleList layer{nullptr};
};
TORCH_MODULE(BertEncoder);

struct BertEmbeddingsImpl : torch::nn::Cloneable<BertEmbeddingsImpl> {
  explicit BertEmbeddingsImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  at::Tensor forward(const at::Tensor& input_ids);
  BertConfig config;
  quanto::nn::QEmbedding word_embeddings{nullptr}, position_embeddings{nullptr}, token_type_embeddings{nullptr};
  quanto::nn::QLayerNorm LayerNorm{nullptr};  // NOLINT: the transformers name
};
TORCH_MODULE(BertEmbeddings);

struct BertModelImpl : torch::nn::Cloneable<BertModelImpl> {
  explicit BertModelImpl(const BertConfig& c) : config(c) { reset(); }
  void reset() override;
  // input_ids, attention_mask [B, T] (int64; mask 1 = token, 0 = padding) -> hidden [B, T, H]
  at::Tensor forward(const at::Tensor& input_ids, const at::Tensor& attention_mask);
  BertConfig config;
  BertEmbeddings embeddings{nullptr};
  BertEncoder encoder{nullptr};
};
TORCH_MODULE(BertModel);

// Copies the float weights of a transformers checkpoint (model.safetensors) into `model` by
// name; keys the model does not have (pooler, position_ids) are ignored, missing ones are an error.
void load_float_weights(BertModel& model, const std::string& safetensors_path);

// Sentence-transformers embedding: mean of the token states over the attention mask, L2-normalised.
at::Tensor sentence_embeddings(const at::Tensor& hidden, const at::Tensor& attention_mask);

}  // namespace quanto_example
