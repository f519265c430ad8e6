// Code layouts as tensor reshapes, shared by the generic packing ops and the generic linears.
// No argument checks: callers validate through ops/specs first.
#pragma once

#include <ATen/core/Tensor.h>

namespace quanto::ops::generic {

// pack_ref's layout: uint8 codes [rows, …] -> [ceil(rows / (8 / bits)), cols] (cols = the rest).
at::Tensor pack_rows(const at::Tensor& codes, int64_t bits);
// The inverse, as [rows, cols].
at::Tensor unpack_rows(const at::Tensor& packed, int64_t bits, int64_t rows);
// The [N, K] weight codes held by a tiled weight (tiled_ref.h).
at::Tensor tiled_codes(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features);

}  // namespace quanto::ops::generic
