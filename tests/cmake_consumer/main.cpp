// The quanto workflow from an installed package: quanto::ops on a tensor, then a QLinear
// quantized to int8 weights, frozen to its packed layout and run; prints one line per check.
#include <quanto/quanto.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <cstdlib>

namespace {
int failures = 0;
void check(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "ok" : "FAILED", what);
  if (!ok) ++failures;
}
}  // namespace

int main() {
  std::printf("quanto consumer, package version %s\n", QUANTO_EXPECTED_VERSION);
  at::manual_seed(0);

  // quanto::quanto: the ops.
  const at::Tensor x = at::randn({4, 64});
  const at::Tensor scale = quanto::ops::absmax_scale(x, "qint8");
  const at::Tensor codes = quanto::ops::symmetric_quantize(x, scale, "qint8");
  check(codes.scalar_type() == at::kChar, "ops: symmetric_quantize gives int8 codes");
  const at::Tensor back = quanto::ops::symmetric_dequantize(codes, scale);
  check((back - x).abs().max().item<float>() <= scale.item<float>() / 2 + 1e-6f, "ops: round trip within scale/2");

  // quanto::api: QLinear, quantize + freeze + forward.
  quanto::nn::QLinear layer(64, 32);
  at::NoGradGuard no_grad;
  const at::Tensor y_float = layer(x);
  quanto::Config cfg;
  cfg.weights = "qint8";
  quanto::quantize_(*layer, cfg);
  check(quanto::freeze(*layer) == 1, "api: freeze packs one layer");
  check(layer->is_frozen(), "api: the layer is frozen");
  const at::Tensor y = layer(x);
  const float err = (y - y_float).abs().max().item<float>();
  const float ref = y_float.abs().max().item<float>();
  std::printf("max |y_int8 - y_float| = %g (|y_float| max %g)\n", err, ref);
  check(y.sizes() == y_float.sizes() && err < 0.05f * ref, "api: int8 forward close to float");

  std::printf(failures ? "quanto consumer: FAILED\n" : "quanto consumer: OK\n");
  return failures ? EXIT_FAILURE : EXIT_SUCCESS;
}
