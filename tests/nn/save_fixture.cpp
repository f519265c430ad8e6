// Saves a small quantized MLP with quanto::save, plus a fixed input and the C++ output, for the
// interop test with optimum-quanto (tests/nn/test_optimum_interop.py).
// Usage: quanto_nn_save_fixture OUT_DIR WEIGHTS ACTIVATIONS
//        quanto_nn_save_fixture --load DIR   (requantize DIR, run DIR/io.safetensors' x, write
//                                             y into DIR/cpp_out.safetensors)
#include <quanto/quantize.h>
#include <quanto/safetensors_aten.h>
#include <quanto/serialization.h>

#include <iostream>

#include "models.h"

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--load") {
    try {
      const std::string dir = argv[2];
      quanto_test::MLP model(256, 160, 8);
      quanto::requantize(*model, dir);
      at::NoGradGuard no_grad;
      const auto io = quanto::safetensors::File::open(dir + "/io.safetensors");
      const at::Tensor x = io.tensor("x").clone();
      quanto::safetensors::save(dir + "/cpp_out.safetensors", {{"y", model(x)}});
    } catch (const std::exception& e) {
      std::cerr << "error: " << e.what() << "\n";
      return 1;
    }
    return 0;
  }
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " OUT_DIR WEIGHTS ACTIVATIONS\n";
    return 2;
  }
  try {
    const std::string dir = argv[1];
    torch::manual_seed(0);
    quanto_test::MLP model(256, 160, 8);  // fc1: groups of 128, fc2: groups of 32 (2/4-bit)
    quanto::Config cfg;
    cfg.weights = argv[2];
    cfg.activations = argv[3];
    auto q = quanto::quantize(model, cfg);
    at::NoGradGuard no_grad;
    if (cfg.activations != "none") {
      quanto::Calibration calib;
      for (int i = 0; i < 4; ++i) q(at::randn({16, 256}));
    }
    // optimum-quanto's files cannot say which outputs calibration stopped quantizing (its reload
    // quantizes them all): compare like with like.
    for (const auto& m : q->modules())
      if (auto* l = quanto::nn::as_qmodule(*m)) l->set_quantizes_output(true);
    quanto::freeze(*q);
    quanto::save(*q, dir);
    const at::Tensor x = at::randn({5, 256});
    quanto::safetensors::save(dir + "/io.safetensors", {{"x", x}, {"y", q(x)}});
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
