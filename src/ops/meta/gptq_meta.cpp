// Meta (shape-only) implementation of gptq_quantize; checks and shapes from ops/specs.
#include <torch/library.h>

#include "ops/specs.h"

namespace quanto::ops::meta {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> gptq_quantize(const at::Tensor& weight, const at::Tensor& hessian,
                                                             c10::string_view qtype, std::optional<int64_t> group_size,
                                                             double percdamp, int64_t blocksize, bool /*actorder*/) {
  const GptqSpecs s = gptq_quantize_spec(weight, hessian, qtype, group_size, percdamp, blocksize);
  return {empty_from_spec(s.codes, weight), empty_from_spec(s.scale, weight), empty_from_spec(s.shift, weight)};
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Meta, m) { m.impl("gptq_quantize", &gptq_quantize); }

}  // namespace quanto::ops::meta
