// Autograd for the weight-only quantized linears (linear_qbytes, linear_qbits, linear_qbits_tiled):
// y = x @ W^T + bias with W the dequantized weight, so dL/dx = dL/dy @ W (in the activation dtype)
// and dL/dbias = the sum of dL/dy over rows. The quantized weight itself is frozen: a scale or
// shift that asks for a gradient is refused rather than silently left without one. Registered
// under the Autograd alias key, so CPU, the device-generic path and every other backend get it.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <quanto/ops.h>

#include "ops/specs.h"

#include <optional>

namespace quanto::ops::autograd_impl {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_frozen(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK_VALUE(!t.requires_grad(), op, ": ", name, " requires grad, but gradients of a quantized weight's "
                    "parameters are not computed (they flow to x and bias only); detach it, or train the float "
                    "weight with quantization-aware training before freezing");
}

// Whether this call records a graph node. Without one (inference, or no input needing a
// gradient) the op runs straight below autograd: torch::autograd::Function::apply builds a node
// and fills its saved_data map on every call, needed or not, about 1.4 us of a small decode-time
// layer's 6.
bool records_graph(const at::Tensor& x, const std::optional<at::Tensor>& bias) {
  return at::GradMode::is_enabled() && (x.requires_grad() || (bias && bias->requires_grad()));
}

// The shared backward: dL/dx = g @ W and dL/dbias = sum(g), for W = dequantized [N, K]. Grads
// are indexed like forward's arguments (non-tensor ones get none); x's edge is always the first.
variable_list linear_backward(const at::Tensor& g, const at::Tensor& w, bool need_x, bool need_bias,
                              size_t n_inputs) {
  variable_list grads(n_inputs);
  if (need_x) grads[0] = at::matmul(g, w.to(g.scalar_type()));
  if (need_bias) grads[n_inputs - 1] = g.reshape({-1, g.size(-1)}).sum(0);
  return grads;
}

// Dequantized 2/4-bit weight [N, K] from canonical packed codes (scale/shift: one per group).
at::Tensor dequantize_qbits(const at::Tensor& packed, const at::Tensor& scale, const at::Tensor& shift, int64_t bits,
                            int64_t group_size, int64_t N, int64_t K) {
  const int64_t rows = N * K / group_size;
  const at::Tensor codes = unpack_codes(packed, bits, rows);
  return affine_dequantize(codes, scale.reshape({rows, 1}), shift.reshape({rows, 1}), {N, K}, 0, group_size);
}

struct LinearQBytes : torch::autograd::Function<LinearQBytes> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w_data,
                            const at::Tensor& w_scale, const std::optional<at::Tensor>& bias) {
    ctx->save_for_backward({w_data, w_scale});
    ctx->saved_data["bias"] = bias.has_value();
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_qbytes(x, w_data, w_scale, bias);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const bool has_bias = ctx->saved_data["bias"].toBool();
    return linear_backward(grad[0], symmetric_dequantize(saved[0], saved[1]), ctx->needs_input_grad(0),
                           has_bias, 4);
  }
};

template <bool Tiled>
struct LinearQBits : torch::autograd::Function<LinearQBits<Tiled>> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, const at::Tensor& w_scale,
                            const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                            const std::optional<at::Tensor>& bias) {
    ctx->save_for_backward({w, w_scale, w_shift});
    ctx->saved_data["bits"] = bits;
    ctx->saved_data["group_size"] = group_size;
    ctx->saved_data["bias"] = bias.has_value();
    at::AutoDispatchBelowADInplaceOrView guard;
    const at::Tensor y = Tiled ? linear_qbits_tiled(x, w, w_scale, w_shift, bits, group_size, bias)
                               : linear_qbits(x, w, w_scale, w_shift, bits, group_size, bias);
    ctx->saved_data["N"] = y.size(-1);
    ctx->saved_data["K"] = x.size(-1);
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const int64_t bits = ctx->saved_data["bits"].toInt(), gs = ctx->saved_data["group_size"].toInt();
    const int64_t N = ctx->saved_data["N"].toInt(), K = ctx->saved_data["K"].toInt();
    const at::Tensor packed = Tiled ? untile_qbits(saved[0], bits, N, K, gs) : saved[0];
    const at::Tensor w = dequantize_qbits(packed, saved[1], saved[2], bits, gs, N, K);
    return linear_backward(grad[0], w, ctx->needs_input_grad(0),
                           ctx->saved_data["bias"].toBool(), 7);
  }
};

at::Tensor linear_qbytes_autograd(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                                  const std::optional<at::Tensor>& bias) {
  check_frozen("linear_qbytes", "w_scale", w_scale);
  if (!records_graph(x, bias)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_qbytes(x, w_data, w_scale, bias);
  }
  return LinearQBytes::apply(x, w_data, w_scale, bias);
}

at::Tensor linear_qbits_autograd(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                                 const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                                 const std::optional<at::Tensor>& bias) {
  check_frozen("linear_qbits", "w_scale", w_scale);
  check_frozen("linear_qbits", "w_shift", w_shift);
  if (!records_graph(x, bias)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_qbits(x, w_packed, w_scale, w_shift, bits, group_size, bias);
  }
  return LinearQBits<false>::apply(x, w_packed, w_scale, w_shift, bits, group_size, bias);
}

at::Tensor linear_qbits_tiled_autograd(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                                       const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                                       const std::optional<at::Tensor>& bias) {
  check_frozen("linear_qbits_tiled", "w_scale", w_scale);
  check_frozen("linear_qbits_tiled", "w_shift", w_shift);
  if (!records_graph(x, bias)) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_qbits_tiled(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  }
  return LinearQBits<true>::apply(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
}

// Recording a graph, the parts run one by one through linear_qbits_tiled's autograd (each with its
// own backward) and are concatenated; otherwise all at once below autograd.
// Whether a *_cat call records a graph node: records_graph over its biases.
bool cat_records_graph(const at::Tensor& x, const c10::List<std::optional<at::Tensor>>& bias) {
  bool record = records_graph(x, std::nullopt);
  for (size_t i = 0; i < bias.size(); ++i) record = record || records_graph(x, bias.get(i));
  return record;
}

at::Tensor linear_qbits_tiled_cat_autograd(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                           at::TensorList w_shift, int64_t bits, int64_t group_size,
                                           const c10::List<std::optional<at::Tensor>>& bias) {
  for (const at::Tensor& t : w_scale) check_frozen("linear_qbits_tiled_cat", "w_scale", t);
  for (const at::Tensor& t : w_shift) check_frozen("linear_qbits_tiled_cat", "w_shift", t);
  if (!cat_records_graph(x, bias)) {  // checked below autograd, once
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_qbits_tiled_cat(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  }
  ops::linear_qbits_tiled_cat_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias);  // the lists agree
  return ops::cat_parts(w_tiled.size(), [&](size_t i) {
    return linear_qbits_tiled_autograd(x, w_tiled[i], w_scale[i], w_shift[i], bits, group_size,
                                       ops::bias_entry(bias, i));
  });
}

at::Tensor linear_qbytes_cat_autograd(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                                      const c10::List<std::optional<at::Tensor>>& bias) {
  for (const at::Tensor& t : w_scale) check_frozen("linear_qbytes_cat", "w_scale", t);
  if (!cat_records_graph(x, bias)) {  // checked below autograd, once
    at::AutoDispatchBelowADInplaceOrView guard;
    return linear_qbytes_cat(x, w_data, w_scale, bias);
  }
  ops::linear_qbytes_cat_spec(x, w_data, w_scale, bias);  // the lists agree
  return ops::cat_parts(w_data.size(), [&](size_t i) {
    return linear_qbytes_autograd(x, w_data[i], w_scale[i], ops::bias_entry(bias, i));
  });
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, Autograd, m) {
  m.impl("linear_qbytes", &linear_qbytes_autograd);
  m.impl("linear_qbits", &linear_qbits_autograd);
  m.impl("linear_qbits_tiled", &linear_qbits_tiled_autograd);
  m.impl("linear_qbits_tiled_cat", &linear_qbits_tiled_cat_autograd);
  m.impl("linear_qbytes_cat", &linear_qbytes_cat_autograd);
}

}  // namespace quanto::ops::autograd_impl
