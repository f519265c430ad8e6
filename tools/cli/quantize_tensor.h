// One weight in, its optimum-quanto state-dict tensors out, through the native ops.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <utility>
#include <vector>

#include "select.h"

namespace quanto::cli {

// A tensor of the output: its name, dtype and shape (known before any data is computed, so the
// output file's header can be written first).
struct OutSpec {
  std::string name;
  safetensors::Dtype dtype;
  std::vector<uint64_t> shape;
};

// The output tensors of one input tensor: a copied tensor keeps its name, dtype and shape; a
// quantized weight of module m becomes its format's tensors (quanto::WeightFormat::stored) plus
// m.input_scale and m.output_scale (0-dim, 1.0, the weight's dtype).
std::vector<OutSpec> output_specs(const TensorPlan& plan, const Settings& settings);

struct QuantizedWeight {
  std::vector<std::pair<std::string, at::Tensor>> tensors;  // contiguous CPU tensors, output_specs order
  double sqnr_db = 0;  // 10 log10(sum w^2 / sum (w - dequantized)^2); +inf when exact
};

// Quantizes `weight` (the input tensor, as stored) as the plan says.
QuantizedWeight quantize_weight(const at::Tensor& weight, const TensorPlan& plan, const Settings& settings);

}  // namespace quanto::cli
