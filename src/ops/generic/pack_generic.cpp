// Generic: pack_codes / unpack_codes and the tiled layouts (kernels/ref/pack_ref.h, tiled_ref.h),
// as reshapes and shifts of whole code planes.
#include <ATen/TensorOperators.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "kernels/layout_geometry.h"
#include "ops/generic/generic_ops.h"
#include "ops/generic/generic_utils.h"
#include "ops/generic/layouts.h"
#include "ops/specs.h"

namespace quanto::ops::generic {

// Canonical packing puts code row i * R + p into bits [bits * i, …) of packed row p: the code
// rows, zero-padded to k * R, are k planes of R rows.
at::Tensor pack_rows(const at::Tensor& codes, int64_t bits) {
  const int64_t k = 8 / bits, rows = codes.size(0), cols = codes.numel() / rows, R = (rows + k - 1) / k;
  at::Tensor c2 = codes.reshape({rows, cols});
  if (k * R > rows) c2 = at::cat({c2, at::zeros({k * R - rows, cols}, c2.options())});
  return pack_planes(c2.reshape({k, R, cols}), 0, bits);
}

at::Tensor unpack_rows(const at::Tensor& packed, int64_t bits, int64_t rows) {
  const int64_t k = 8 / bits, R = packed.size(0), cols = packed.numel() / R;
  return unpack_planes(packed.reshape({R, cols}), 0, bits).view({k * R, cols}).narrow(0, 0, rows);
}

// A tiled row is blocks of kTileBlockBytes bytes, byte i holding codes i, i + 16, … of its
// block: code planes of 16 along each block of tile_block_codes(bits) codes.
at::Tensor tiled_codes(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features) {
  const int64_t block = kernels::tile_block_codes(bits);
  return unpack_planes(tiled.reshape({out_features, in_features / block, kernels::kTileBlockBytes}), 2, bits)
      .reshape({out_features, in_features});
}

at::Tensor pack_codes(const at::Tensor& codes, int64_t bits) {
  NonDifferentiable guard;
  const TensorSpec spec = pack_codes_spec(codes, bits);
  TORCH_CHECK_VALUE(!(codes >= (1 << bits)).any().item<bool>(), "pack_codes: codes hold a value above ",
                    (1 << bits) - 1, ", which does not fit in ", bits, " bits");
  return pack_rows(codes, bits).reshape(concrete(spec.sizes)).contiguous();
}

at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits, c10::SymInt rows) {
  NonDifferentiable guard;
  const TensorSpec spec = unpack_codes_spec(packed, bits, rows);
  return unpack_rows(packed, bits, rows.expect_int()).reshape(concrete(spec.sizes)).contiguous();
}

at::Tensor tile_qbits(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                      int64_t group_size) {
  NonDifferentiable guard;
  const TensorSpec spec = tile_qbits_spec(packed, bits, out_features, in_features, group_size);
  // Grouping along axis 0 is a plain reshape, so the unpacked codes are the [N, K] weight codes.
  const at::Tensor codes = unpack_rows(packed, bits, out_features * in_features / group_size);
  const int64_t block = kernels::tile_block_codes(bits);
  // Codes above 2^bits cannot come out of unpacking, so the planes need no mask.
  const at::Tensor planes = codes.reshape({out_features, in_features / block, 8 / bits, kernels::kTileBlockBytes});
  return pack_planes(planes, 2, bits).reshape(concrete(spec.sizes)).contiguous();
}

at::Tensor untile_qbits(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                        int64_t group_size) {
  NonDifferentiable guard;
  const TensorSpec spec = untile_qbits_spec(tiled, bits, out_features, in_features, group_size);
  const at::Tensor codes = tiled_codes(tiled, bits, out_features, in_features);
  return pack_rows(codes.reshape({-1, group_size}), bits).reshape(concrete(spec.sizes)).contiguous();
}

TORCH_LIBRARY_IMPL(quanto, CompositeExplicitAutograd, m) {
  m.impl("pack_codes", &pack_codes);
  m.impl("unpack_codes", &unpack_codes);
  m.impl("tile_qbits", &tile_qbits);
  m.impl("untile_qbits", &untile_qbits);
}

}  // namespace quanto::ops::generic
