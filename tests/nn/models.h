// Small models built with quanto layers, for the workflow and serialization tests.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/modules/linear.h>

#include <ATen/ATen.h>

#include <quanto/nn.h>

namespace quanto_test {

// embedding -> layernorm -> linear -> relu -> linear, plus a plain torch::nn::Linear side
// branch (`head`) that quanto cannot quantize.
struct NetImpl : torch::nn::Cloneable<NetImpl> {
  int64_t vocab, dim, hidden, classes;
  quanto::nn::QEmbedding embed{nullptr};
  quanto::nn::QLayerNorm norm{nullptr};
  quanto::nn::QLinear fc1{nullptr}, fc2{nullptr};
  torch::nn::Linear head{nullptr};

  NetImpl(int64_t vocab_, int64_t dim_, int64_t hidden_, int64_t classes_)
      : vocab(vocab_), dim(dim_), hidden(hidden_), classes(classes_) {
    reset();
  }
  void reset() override {
    embed = register_module("embed", quanto::nn::QEmbedding(vocab, dim));
    norm = register_module("norm", quanto::nn::QLayerNorm(torch::nn::LayerNormOptions({dim})));
    fc1 = register_module("fc1", quanto::nn::QLinear(dim, hidden));
    fc2 = register_module("fc2", quanto::nn::QLinear(hidden, classes));
    head = register_module("head", torch::nn::Linear(dim, 1));
  }
  at::Tensor forward(const at::Tensor& tokens) {
    at::Tensor h = norm(embed(tokens)).mean({1});
    return fc2(at::relu(fc1(h))) + head(h);
  }
};
TORCH_MODULE(Net);

// A two-layer perceptron for quantization-aware training.
struct MLPImpl : torch::nn::Cloneable<MLPImpl> {
  int64_t in, hidden, out;
  quanto::nn::QLinear fc1{nullptr}, fc2{nullptr};
  MLPImpl(int64_t in_, int64_t hidden_, int64_t out_) : in(in_), hidden(hidden_), out(out_) { reset(); }
  void reset() override {
    fc1 = register_module("fc1", quanto::nn::QLinear(in, hidden));
    fc2 = register_module("fc2", quanto::nn::QLinear(hidden, out));
  }
  at::Tensor forward(const at::Tensor& x) { return fc2(at::relu(fc1(x))); }
};
TORCH_MODULE(MLP);

}  // namespace quanto_test
