// QWeight::linear_w8a8 with a float input: straight-through gradients for int8 x int8 layers, so a
// frozen W8A8 model still trains adapters upstream (the int8 activation codes themselves have no
// gradient; the usual straight-through estimator treats their rounding as the identity).
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
    ctx->save_for_backward({w.bytes.data(), w.bytes.scale()});
    ctx->saved_data["layout"] = static_cast<int64_t>(w.layout());
    ctx->saved_data["shape"] = c10::IValue(w.shape());
    ctx->saved_data["bias"] = bias.has_value();
    return w.linear_w8a8(x_data, x_scale, bias, out_dtype);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto layout = static_cast<WeightLayout>(ctx->saved_data["layout"].toInt());
    const QWeight w = QWeight::wrap(qint8, ctx->saved_data["shape"].toIntVector(), std::nullopt, layout, saved[0],
                                    saved[1], at::Tensor());
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
