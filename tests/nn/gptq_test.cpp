// The 'gptq' weight optimizer of the C++ API: Calibration records X^T X per QLinear, freeze runs
// ops::gptq_quantize; without calibration freeze names the problem.
#include <gtest/gtest.h>

#include <c10/util/Exception.h>

#include <quanto/ops.h>
#include <quanto/quantize.h>

#include "models.h"

namespace {

using quanto_test::MLP;

// Correlated inputs with uneven scales: where GPTQ beats rounding to nearest.
at::Tensor correlated(int64_t tokens, int64_t n) {
  const at::Tensor mix = at::randn({n, n}) / std::sqrt(static_cast<double>(n)) + at::eye(n);
  return at::matmul(at::randn({tokens, n}), mix) * at::linspace(0.2, 3.0, n);
}

TEST(Gptq, FreezeWithoutCalibrationNamesTheProblem) {
  torch::manual_seed(0);
  MLP net(128, 64, 8);
  quanto::Config cfg;
  cfg.weights = "qint4";
  cfg.optimizer = "gptq";
  MLP q = quanto::quantize(net, cfg);
  try {
    quanto::freeze(*q);
    FAIL() << "freeze without calibration must throw";
  } catch (const c10::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("needs calibration data"), std::string::npos) << e.what();
  }
  cfg.weights = "qint8";
  EXPECT_THROW(quanto::quantize(net, cfg), c10::ValueError);
}

TEST(Gptq, CalibratedFreezeMatchesTheOpAndBeatsMinmax) {
  torch::manual_seed(0);
  MLP net(128, 64, 8);
  const at::Tensor x = correlated(512, 128);
  quanto::Config cfg;
  cfg.weights = "qint4";
  cfg.group_size = 64;
  MLP minmax = quanto::quantize(net, cfg);
  quanto::freeze(*minmax);
  cfg.optimizer = "gptq";
  MLP q = quanto::quantize(net, cfg);
  {
    quanto::Calibration scope;
    q(x.narrow(0, 0, 256));
    q(x.narrow(0, 256, 256));
  }
  quanto::freeze(*q);
  ASSERT_TRUE(q->fc1->is_frozen());
  // fc1 saw x itself: its weight is the op's result on 2 X^T X / n.
  const at::Tensor xd = x.to(at::kDouble);
  const at::Tensor h = 2.0 * at::mm(xd.t(), xd) / 512.0;
  auto [codes, scale, shift] = quanto::ops::gptq_quantize(net->fc1->weight.detach(), h, "qint4", 64, 0.1, 128, true);
  const at::Tensor w_op = quanto::ops::affine_dequantize(codes, scale, shift, {64, 128}, 0, 64);
  const at::Tensor w_q = q->fc1->qweight().bits.dequantize();
  EXPECT_LT((w_q - w_op).abs().max().item<double>(), 1e-6);
  // Layer output error below min/max's.
  const at::Tensor y = net->fc1(x);
  const double err_gptq = (q->fc1(x) - y).pow(2).mean().item<double>();
  const double err_minmax = (minmax->fc1(x) - y).pow(2).mean().item<double>();
  EXPECT_LT(err_gptq, 0.8 * err_minmax) << err_gptq << " vs " << err_minmax;
}

}  // namespace
