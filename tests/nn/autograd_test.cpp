// Gradients through frozen quantized layers: dL/dx = dL/dy @ W (W dequantized) for weight-only
// layers, straight through the activation quantization for int8 x int8 ones; never an undefined
// gradient for an input that requires one.
#include <gtest/gtest.h>

#include <quanto/nn.h>
#include <quanto/ops.h>

#include "test_util.h"

using namespace quanto::nn;
using quanto_test::randn;
using quanto_test::rel_err;
using quanto_test::spec;

TEST(Autograd, FrozenLinearGradientIsGradTimesDequantizedWeight) {
  for (const char* qtype : {"qint8", "qfloat8", "qint4", "qint2"}) {
    for (bool generic : {false, true}) {
      SCOPED_TRACE(std::string(qtype) + (generic ? " generic" : " cpu"));
      quanto::ops::ForceGenericPath path(generic);
      torch::manual_seed(1);
      QLinear q(128, 40);
      q->quantize(spec(qtype));
      q->freeze();
      const at::Tensor x = randn({3, 128}, 2).requires_grad_();
      const at::Tensor g = randn({3, 40}, 3);
      (q(x) * g).sum().backward();
      ASSERT_TRUE(x.grad().defined());
      EXPECT_LT(rel_err(x.grad(), at::matmul(g, q->qweight().dequantize())), 1e-5);
      ASSERT_TRUE(q->bias.grad().defined());
      EXPECT_LT(rel_err(q->bias.grad(), g.sum(0)), 1e-6);
    }
  }
}

TEST(Autograd, FrozenW8A8GradientIsStraightThrough) {
  torch::manual_seed(4);
  QLinear q(96, 24);
  q->quantize(spec("qint8", "qint8"));
  {
    at::NoGradGuard no_grad;
    q->input_scale.fill_(0.03);
    q->output_scale.fill_(0.05);
  }
  q->freeze();
  const at::Tensor x = randn({5, 96}, 5);
  const at::Tensor xr = x.clone().requires_grad_();
  const at::Tensor g = randn({5, 24}, 6);
  const at::Tensor y = q(xr);
  (y * g).sum().backward();
  ASSERT_TRUE(xr.grad().defined());
  EXPECT_LT(rel_err(xr.grad(), at::matmul(g, q->qweight().dequantize())), 1e-5);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(q(x), y.detach()));  // same int8 product whether autograd records or not
}
