// Which in-memory layout a frozen weight gets on a device (and CPU kernel set).
#include <quanto/weights.h>

#include <c10/util/Exception.h>

#include <quanto/ops.h>

#include "kernels/dispatch.h"
#include "kernels/layout_geometry.h"
#include "ops/generic/force_generic.h"

namespace quanto {

const char* layout_name(WeightLayout layout) {
  switch (layout) {
    case WeightLayout::canonical:
      return "canonical";
    case WeightLayout::tiled:
      return "tiled";
    case WeightLayout::packed_w8a8:
      return "packed_w8a8";
  }
  return "unknown";
}

WeightLayout layout_from_name(std::string_view name) {
  for (WeightLayout l : {WeightLayout::canonical, WeightLayout::tiled, WeightLayout::packed_w8a8})
    if (name == layout_name(l)) return l;
  TORCH_CHECK_VALUE(false, "unknown weight layout '", name, "'; valid layouts: canonical, tiled, packed_w8a8");
}

WeightLayout choose_layout(const QType& weights, const std::vector<int64_t>& shape, std::optional<int64_t> group_size,
                           c10::Device device, const QType* activations, bool linear, std::string_view cpu_isa) {
  // Only the CPU kernels read the special layouts (the meta device mirrors the CPU so that
  // shapes traced there match). With the generic path forced, the CPU stands for a device without
  // kernels of its own, layouts included, so tests see what a GPU gets.
  const bool cpu_kernels = (device.is_cpu() || device.is_meta()) && !ops::generic::generic_path_forced();
  if (!linear || shape.size() != 2 || !cpu_kernels) return WeightLayout::canonical;
  const int64_t out = shape[0], in = shape[1];
  if (weights.bits < 8) {
    return kernels::can_tile(weights.bits, group_size.value_or(in)) ? WeightLayout::tiled : WeightLayout::canonical;
  }
  const bool w8a8 = weights.name == "qint8" && activations != nullptr && activations->name == "qint8";
  if (!w8a8 || !kernels::can_pack_w8a8(out, in)) return WeightLayout::canonical;
  // The packed layout exists for vpdpbusd; without it (AVX2, generic) the canonical kernels
  // are faster at every batch size.
  const std::string isa = cpu_isa.empty() ? ops::cpu_isa() : std::string(cpu_isa);
  return kernels::isa_packs_w8a8(isa) ? WeightLayout::packed_w8a8 : WeightLayout::canonical;
}

}  // namespace quanto
