// Geometry of the in-memory weight layouts the fast CPU kernels read: the one place that says
// how big a tile or a packed block is and which weights a layout can hold. Torch-free, so the
// scalar references, the SIMD kernels, the op argument checks and the weights layer
// (src/weights) all read the same numbers.
#pragma once

#include <cstdint>

namespace quanto::kernels {

// ---- Tiled 2/4-bit layout (kernels/ref/tiled_ref.h) ----
// Each output row is contiguous and cut into 16-byte blocks, so one vector load decodes a whole
// block of codes in order: 32 4-bit or 64 2-bit codes.
inline constexpr int64_t kTileBlockBytes = 16;
constexpr int64_t tile_block_codes(int64_t bits) { return kTileBlockBytes * 8 / bits; }
inline constexpr int64_t kTileCodes = tile_block_codes(4);   // 32
inline constexpr int64_t kTile2Codes = tile_block_codes(2);  // 64
// Bytes of one tiled output row of `in_features` codes.
constexpr int64_t tiled_row_bytes(int64_t bits, int64_t in_features) { return in_features * bits / 8; }
// A 2-d weight can be tiled when its groups (in_features when per channel) fill whole blocks.
constexpr bool can_tile(int64_t bits, int64_t group_size) {
  return (bits == 2 || bits == 4) && group_size > 0 && group_size % tile_block_codes(bits) == 0;
}

// ---- Packed W8A8 layout (kernels/ref/linear_ref.h, pack_w8a8_ref) ----
// Output channels in blocks of kW8A8BlockN, 4 consecutive k per int32 lane, then one int32 per
// channel holding 128 · Σ_k w[n, k] (the correction for the u8 offset of x that vpdpbusd needs).
inline constexpr int64_t kW8A8BlockN = 64;
// in_features must stay below this: 128 · Σ_k w (|w| <= 128) must fit in an int32.
inline constexpr int64_t kW8A8MaxInFeatures = int64_t{1} << 17;
constexpr int64_t w8a8_quads(int64_t K) { return (K + 3) / 4; }
constexpr int64_t w8a8_block_bytes(int64_t K) { return (w8a8_quads(K) + 1) * kW8A8BlockN * 4; }
constexpr int64_t w8a8_block_count(int64_t N) { return (N + kW8A8BlockN - 1) / kW8A8BlockN; }
constexpr bool can_pack_w8a8(int64_t out_features, int64_t in_features) {
  return out_features > 0 && in_features > 0 && in_features < kW8A8MaxInFeatures;
}

static_assert(kTileCodes == 32 && kTile2Codes == 64, "a tiled block is 16 bytes of 4-bit or 2-bit codes");
static_assert(int64_t{128} * 128 * kW8A8MaxInFeatures <= (int64_t{1} << 31), "row sums must fit in int32");

}  // namespace quanto::kernels
