// quanto: quantization of PyTorch models on LibTorch. Umbrella header.
#pragma once

#include <quanto/ops.h>
#include <quanto/qtype.h>
