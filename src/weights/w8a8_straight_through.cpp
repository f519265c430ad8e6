// QWeight::linear_w8a8 with a float input: straight-through gradients for int8-activation layers
// (W8A8 and W4A8), so a frozen model still trains adapters upstream (the int8 activation codes
// themselves have no gradient; the usual straight-through estimator treats their rounding as the
// identity).
#include <quanto/weights.h>

#include <ATen/ATen.h>
#include <torch/autograd.h>

namespace quanto {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct W8A8StraightThrough : torch::autograd::Function<W8A8StraightThrough> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const std::optional<at::Tensor>& bias,
                            const QWeight& w, const at::Tensor& x_data, const at::Tensor& x_scale,
                            c10::ScalarType out_dtype) {
    // The weight as stored (any layout): qint8 (data, scale) or qint4 (data, scale, shift).
    if (w.bytes.defined()) {
      ctx->save_for_backward({w.bytes.data(), w.bytes.scale()});
    } else {
      ctx->save_for_backward({w.bits.data(), w.bits.scale(), w.bits.shift()});
    }
    ctx->saved_data["group_size"] = w.bits.defined() ? w.bits.group_size().value_or(-1) : int64_t{-1};  // -1: none
    ctx->saved_data["qtype"] = std::string(w.qtype().name);
    ctx->saved_data["layout"] = static_cast<int64_t>(w.layout());
    ctx->saved_data["shape"] = c10::IValue(w.shape());
    ctx->saved_data["bias"] = bias.has_value();
    return w.linear_w8a8(x_data, x_scale, bias, out_dtype);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto layout = static_cast<WeightLayout>(ctx->saved_data["layout"].toInt());
    const int64_t gs = ctx->saved_data["group_size"].toInt();
    const auto group_size = gs < 0 ? std::nullopt : std::optional<int64_t>(gs);
    const QWeight w = QWeight::wrap(qtype_from_name(ctx->saved_data["qtype"].toStringRef()),
                                    ctx->saved_data["shape"].toIntVector(), group_size, layout, saved[0], saved[1],
                                    saved.size() > 2 ? saved[2] : at::Tensor());
    const at::Tensor& g = grad[0];
    variable_list grads(6);
    grads[0] = at::matmul(g, w.dequantize().to(g.scalar_type()));
    if (ctx->saved_data["bias"].toBool()) grads[1] = g.reshape({-1, g.size(-1)}).sum(0);
    return grads;
  }
};

}  // namespace

at::Tensor QWeight::linear_w8a8(const at::Tensor& x, const at::Tensor& x_data, const at::Tensor& x_scale,
                                const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) const {
  const bool records = at::GradMode::is_enabled() && (x.requires_grad() || (bias && bias->requires_grad()));
  if (!records) return linear_w8a8(x_data, x_scale, bias, out_dtype);
  return W8A8StraightThrough::apply(x, bias, *this, x_data, x_scale, out_dtype);
}

}  // namespace quanto
