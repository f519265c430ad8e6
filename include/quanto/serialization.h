// Saving and reloading quantized models in optimum-quanto's format (docs/format.md):
// `model.safetensors` (optimum-quanto's state_dict keys, weights in the canonical layout) and
// `quanto_qmap.json` (module name -> {"weights", "activations"}). Files move both ways between
// quanto and optimum-quanto 0.2.7.
//
//   quanto::save(*qmodel, "out");                  // after quantize (+ calibrate, freeze)
//   Net fresh(...);                                 // a freshly built float model
//   quanto::requantize(*fresh, "out", torch::kCPU); // now quantized, frozen, same outputs
#pragma once

#include <c10/core/Device.h>
#include <torch/nn/module.h>

#include <string>

namespace quanto {

// Version of the metadata quanto writes in the safetensors "__metadata__" map:
//   "quanto.format_version": "1"
//   "quanto.modules": JSON {"<module>": {"kind": "QLinear", "weights": "qint4", "activations": "none",
//                           "group_size": 128 | null, "axis": 0, "shift": "float" | "zeropoint" | null}}
// optimum-quanto ignores it; requantize reads files with or without it.
inline constexpr int kFormatVersion = 1;

// Writes `dir`/model.safetensors and `dir`/quanto_qmap.json (atomically; `dir` is created).
// Every parameter and buffer is saved: quantized weights under their format's keys
// (quanto::WeightFormat, optimum-quanto's), plus "m.bias", "m.input_scale", "m.output_scale";
// everything else under its usual name. Quantized layers
// that are not frozen yet are saved with their weights quantized as freeze() would.
void save(const torch::nn::Module& module, const std::string& dir);

// Loads a saved quantized model into `module`, a freshly built float model of the same
// architecture (quanto layers where the map names quantized modules): the quantized layers are
// built directly from the file's tensors (never from float weights) and end up frozen; every
// other parameter and buffer is loaded by name; then the model is moved to `device`.
// Errors (c10::Error) name the problem: missing files, a file that is not safetensors, a module
// of the map that the model lacks or that is not a quanto layer, a missing key, a shape
// mismatch, keys of the file that the model does not have.
void requantize(torch::nn::Module& module, const std::string& dir, c10::Device device = c10::Device(c10::kCPU));

}  // namespace quanto
