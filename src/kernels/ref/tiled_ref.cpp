#include "kernels/ref/tiled_ref.h"

namespace quanto::kernels {
namespace {

inline int64_t tiled_offset(int64_t K, int64_t n, int64_t k) { return n * (K / 2) + (k / kTileCodes) * 16 + k % 16; }
inline bool high_nibble(int64_t k) { return k % kTileCodes >= 16; }
// 2-bit: byte and bit offset of code k of row n.
inline int64_t tiled2_offset(int64_t K, int64_t n, int64_t k) { return n * (K / 4) + (k / kTile2Codes) * 16 + k % 16; }
inline int tiled2_shift(int64_t k) { return static_cast<int>(2 * ((k % kTile2Codes) / 16)); }

inline uint8_t w4_code(const uint8_t* tiled, int64_t K, int64_t n, int64_t k) {
  const uint8_t byte = tiled[tiled_offset(K, n, k)];
  return high_nibble(k) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0x0F);
}
inline uint8_t w2_code(const uint8_t* tiled, int64_t K, int64_t n, int64_t k) {
  return static_cast<uint8_t>((tiled[tiled2_offset(K, n, k)] >> tiled2_shift(k)) & 3u);
}

// y = x @ dequant(W)^T + b, one plain loop, for any tiled layout given its code reader.
template <uint8_t (*Code)(const uint8_t*, int64_t, int64_t, int64_t)>
void linear_tiled_ref(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                      const float* shift, const float* bias, LinearShape s, float* y) {
  const int64_t groups = s.K / group_size;
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = s.n_begin; n < s.n_end; ++n) {
      float acc = 0.0f;
      for (int64_t k = 0; k < s.K; ++k) {
        const float code = static_cast<float>(Code(tiled, s.K, n, k));
        const int64_t g = n * groups + k / group_size;
        acc += x[m * s.K + k] * (code * scale[g] - shift[g]);
      }
      y[m * s.N + n] = bias ? acc + bias[n] : acc;
    }
}

}  // namespace

void tile_w4_ref(const uint8_t* codes, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* tiled) {
  for (int64_t n = n_begin; n < n_end; ++n)
    for (int64_t k = 0; k < K; ++k) {
      uint8_t& byte = tiled[tiled_offset(K, n, k)];
      const uint8_t code = codes[n * K + k] & 0x0F;
      byte = high_nibble(k) ? static_cast<uint8_t>((byte & 0x0F) | (code << 4)) : static_cast<uint8_t>((byte & 0xF0) | code);
    }
}

void untile_w4_ref(const uint8_t* tiled, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* codes) {
  for (int64_t n = n_begin; n < n_end; ++n)
    for (int64_t k = 0; k < K; ++k) {
      codes[n * K + k] = w4_code(tiled, K, n, k);
    }
}

void linear_w4_tiled_ref(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                         const float* shift, const float* bias, LinearShape s, float* y) {
  linear_tiled_ref<w4_code>(x, tiled, group_size, scale, shift, bias, s, y);
}

void linear_w4a8_tiled_ref(const int8_t* x, const float* x_scale, int64_t x_scale_stride, const uint8_t* tiled,
                           int64_t group_size, const float* scale, const float* shift, const float* bias,
                           LinearShape s, float* y) {
  const int64_t groups = s.K / group_size;
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = s.n_begin; n < s.n_end; ++n) {
      float acc = 0.0f;
      for (int64_t g = 0; g < groups; ++g) {
        int32_t dot = 0, xsum = 0;
        for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) {
          const int32_t xk = x[m * s.K + k];
          dot += xk * static_cast<int32_t>(w4_code(tiled, s.K, n, k));
          xsum += xk;
        }
        const int64_t p = n * groups + g;
        acc += scale[p] * static_cast<float>(dot) - shift[p] * static_cast<float>(xsum);
      }
      const float out = x_scale[m * x_scale_stride] * acc;
      y[m * s.N + n] = bias ? out + bias[n] : out;
    }
}

void tile_w2_ref(const uint8_t* codes, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* tiled) {
  for (int64_t n = n_begin; n < n_end; ++n)
    for (int64_t k = 0; k < K; ++k) {
      uint8_t& byte = tiled[tiled2_offset(K, n, k)];
      const int sh = tiled2_shift(k);
      byte = static_cast<uint8_t>((byte & ~(3u << sh)) | ((codes[n * K + k] & 3u) << sh));
    }
}

void untile_w2_ref(const uint8_t* tiled, int64_t K, int64_t n_begin, int64_t n_end, uint8_t* codes) {
  for (int64_t n = n_begin; n < n_end; ++n)
    for (int64_t k = 0; k < K; ++k)
      codes[n * K + k] = w2_code(tiled, K, n, k);
}

void linear_w2_tiled_ref(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                         const float* shift, const float* bias, LinearShape s, float* y) {
  linear_tiled_ref<w2_code>(x, tiled, group_size, scale, shift, bias, s, y);
}

}  // namespace quanto::kernels
