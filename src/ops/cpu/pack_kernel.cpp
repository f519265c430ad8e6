// CPU: pack_codes / unpack_codes.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <atomic>

#include "kernels/ref/pack_ref.h"
#include "kernels/ref/tiled_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

at::Tensor pack_codes(const at::Tensor& codes, int64_t bits) {
  const TensorSpec spec = pack_codes_spec(codes, bits);
  const at::Tensor cc = codes.contiguous();
  at::Tensor packed = at::empty(concrete(spec.sizes), codes.options());
  const int64_t rows = cc.size(0), cols = cc.numel() / rows;
  std::atomic<bool> fits{true};
  parallel_rows(packed.size(0), grain_for(cols), [&](int64_t p0, int64_t p1) {
    if (!kernels::pack_ref(data_as<const uint8_t>(cc), rows, cols, static_cast<int>(bits), p0, p1,
                           data_as<uint8_t>(packed)))
      fits = false;
  });
  TORCH_CHECK_VALUE(fits, "pack_codes: codes hold a value above ", (1 << bits) - 1,
                    ", which does not fit in ", bits, " bits");
  return packed;
}

at::Tensor unpack_codes(const at::Tensor& packed, int64_t bits, c10::SymInt rows) {
  const TensorSpec spec = unpack_codes_spec(packed, bits, rows);
  const at::Tensor pc = packed.contiguous();
  at::Tensor codes = at::empty(concrete(spec.sizes), packed.options());
  const int64_t r = codes.size(0), cols = codes.numel() / r;
  parallel_rows(pc.size(0), grain_for(cols), [&](int64_t p0, int64_t p1) {
    kernels::unpack_ref(data_as<const uint8_t>(pc), r, cols, static_cast<int>(bits), p0, p1, data_as<uint8_t>(codes));
  });
  return codes;
}

at::Tensor tile_qbits(const at::Tensor& packed, int64_t bits, int64_t out_features, int64_t in_features,
                      int64_t group_size) {
  const TensorSpec spec = tile_qbits_spec(packed, bits, out_features, in_features, group_size);
  // Grouping along axis 0 is a plain reshape, so the unpacked codes are the [N, K] weight codes.
  const at::Tensor codes = unpack_codes(packed, bits, out_features * in_features / group_size).contiguous();
  at::Tensor tiled = at::empty(concrete(spec.sizes), packed.options());
  parallel_rows(out_features, grain_for(in_features), [&](int64_t n0, int64_t n1) {
    if (bits == 4) kernels::tile_w4_ref(data_as<const uint8_t>(codes), in_features, n0, n1, data_as<uint8_t>(tiled));
    else kernels::tile_w2_ref(data_as<const uint8_t>(codes), in_features, n0, n1, data_as<uint8_t>(tiled));
  });
  return tiled;
}

at::Tensor untile_qbits(const at::Tensor& tiled, int64_t bits, int64_t out_features, int64_t in_features,
                        int64_t group_size) {
  untile_qbits_spec(tiled, bits, out_features, in_features, group_size);
  const at::Tensor tc = tiled.contiguous();
  at::Tensor codes = at::empty({out_features * in_features / group_size, group_size}, tiled.options());
  parallel_rows(out_features, grain_for(in_features), [&](int64_t n0, int64_t n1) {
    if (bits == 4) kernels::untile_w4_ref(data_as<const uint8_t>(tc), in_features, n0, n1, data_as<uint8_t>(codes));
    else kernels::untile_w2_ref(data_as<const uint8_t>(tc), in_features, n0, n1, data_as<uint8_t>(codes));
  });
  return pack_codes(codes, bits);
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  // Each entry runs the device-generic implementation instead while the generic path is forced.
  using generic::CpuOrGeneric;
  m.impl("pack_codes", &CpuOrGeneric<&pack_codes, &generic::pack_codes>::call);
  m.impl("unpack_codes", &CpuOrGeneric<&unpack_codes, &generic::unpack_codes>::call);
  m.impl("tile_qbits", &CpuOrGeneric<&tile_qbits, &generic::tile_qbits>::call);
  m.impl("untile_qbits", &CpuOrGeneric<&untile_qbits, &generic::untile_qbits>::call);
}


}  // namespace quanto::ops::cpu
