// quanto: quantization of PyTorch models on LibTorch. Umbrella header.
#pragma once

#include <quanto/ops.h>
#include <quanto/qtype.h>
// The C++ API (link libquanto_api): quantized tensors, layers, quantize/freeze/Calibration.
#include <quanto/nn.h>
#include <quanto/quantize.h>
#include <quanto/serialization.h>
#include <quanto/tensor.h>
