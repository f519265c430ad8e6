// torch.ops.quanto.weight_*: the weights layer's quantize, dequantize, layout conversion and
// linear op choice as ops, so the Python package runs the same steps as the C++ layers and the
// CLI. They are compositions of other quanto ops (CompositeImplicitAutograd), so they run on every
// device, and on meta and fake tensors, through those ops' kernels.
#include <torch/library.h>

#include <quanto/ops.h>
#include <quanto/weights.h>

namespace quanto {
namespace {

std::vector<at::Tensor> weight_quantize(const at::Tensor& weight, c10::string_view qtype,
                                        std::optional<int64_t> group_size, const std::optional<at::Tensor>& scale,
                                        const std::optional<at::Tensor>& shift) {
  const QType& q = qtype_from_name(qtype);
  std::vector<at::Tensor> out;
  for (auto& kv : QWeight::quantize(weight, q, group_size, scale, shift).state()) out.push_back(std::move(kv.second));
  return out;
}

at::Tensor weight_dequantize(at::TensorList state, c10::string_view qtype, at::IntArrayRef shape,
                             std::optional<int64_t> group_size) {
  const QType& q = qtype_from_name(qtype);
  const std::vector<std::string> keys = weight_format(q).keys();
  TORCH_CHECK_VALUE(state.size() == keys.size(), "weight_dequantize: a ", q.name, " weight has ", keys.size(),
                    " tensors (", c10::Join(", ", keys), "), got ", state.size());
  return QWeight::from_state(q, shape.vec(), group_size, [&](const std::string& key) -> std::optional<at::Tensor> {
           for (size_t i = 0; i < keys.size(); ++i)
             if (keys[i] == key) return state[i];
           return std::nullopt;
         }).dequantize();
}

// A frozen weight from its in-memory tensors (data in `layout`, scale, and shift for 2/4 bits).
QWeight held_weight(const char* op, at::TensorList state, c10::string_view qtype, at::IntArrayRef shape,
                    std::optional<int64_t> group_size, c10::string_view layout) {
  const QType& q = qtype_from_name(qtype);
  const size_t n = weight_format(q).keys().size();
  TORCH_CHECK_VALUE(state.size() == n, op, ": a ", q.name, " weight is held as ", n, " tensors (data, scale",
                    n == 3 ? ", shift" : "", "), got ", state.size());
  return QWeight::wrap(q, shape.vec(), group_size, layout_from_name(layout), state[0], state[1],
                       n == 3 ? state[2] : at::Tensor());
}

at::Tensor weight_relayout(at::TensorList state, c10::string_view qtype, at::IntArrayRef shape,
                           std::optional<int64_t> group_size, c10::string_view layout, c10::string_view to_layout) {
  const QWeight w = held_weight("weight_relayout", state, qtype, shape, group_size, layout)
                        .with_layout(layout_from_name(to_layout));
  return w.bytes.defined() ? w.bytes.data() : w.bits.data();
}

at::Tensor weight_linear(const at::Tensor& x, at::TensorList state, c10::string_view qtype, at::IntArrayRef shape,
                         std::optional<int64_t> group_size, c10::string_view layout,
                         const std::optional<at::Tensor>& bias) {
  return held_weight("weight_linear", state, qtype, shape, group_size, layout).linear(x, bias);
}

at::Tensor weight_linear_w8a8(const at::Tensor& x, const at::Tensor& x_data, const at::Tensor& x_scale,
                              at::TensorList state, c10::string_view qtype, at::IntArrayRef shape,
                              c10::string_view layout, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype, std::optional<int64_t> group_size) {
  return held_weight("weight_linear_w8a8", state, qtype, shape, group_size, layout)
      .linear_w8a8(x, x_data, x_scale, bias, out_dtype);
}

at::Tensor weight_linear_dynamic(const at::Tensor& x, at::TensorList state, c10::string_view qtype,
                                 at::IntArrayRef shape, std::optional<int64_t> group_size, c10::string_view layout,
                                 const std::optional<at::Tensor>& bias, c10::string_view activations) {
  const QActivation a = QActivation::quantize_per_token(x, qtype_from_name(activations));
  return held_weight("weight_linear_dynamic", state, qtype, shape, group_size, layout)
      .linear_w8a8(x, a.data(), a.scale(), bias, x.scalar_type());
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CompositeImplicitAutograd, m) {
  m.impl("weight_quantize", &weight_quantize);
  m.impl("weight_dequantize", &weight_dequantize);
  m.impl("weight_relayout", &weight_relayout);
  m.impl("weight_linear", &weight_linear);
  m.impl("weight_linear_w8a8", &weight_linear_w8a8);
  m.impl("weight_linear_dynamic", &weight_linear_dynamic);
}

}  // namespace quanto
