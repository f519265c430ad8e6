// Helpers shared by the quanto C++ API tests.
#pragma once

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <quanto/nn.h>
#include <quanto/ops.h>
#include <quanto/tensor.h>

#include <string>
#include <vector>

namespace quanto_test {

inline at::Tensor randn(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen);
}

// Fake quantization as the reference for activations: dequantize(quantize(x, scale)).
inline at::Tensor fake_quant(const at::Tensor& x, const quanto::QType& q, const at::Tensor& scale) {
  return quanto::QActivation::quantize(x, q, scale).dequantize().to(x.scalar_type());
}

// max |a - b| / max |b|
inline double rel_err(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>() / std::max(b.abs().max().item<double>(), 1e-12);
}

// A layer spec with weights (and activations) set, the other fields at their defaults.
inline quanto::QuantSpec spec(const std::string& w, const std::string& a = "none") {
  quanto::QuantSpec s;
  s.weights = w;
  s.activations = a;
  return s;
}

}  // namespace quanto_test
