// Kernels for the avx512bf16 tier (AVX-512 plus BF16 and VNNI; built with -mavx512bf16
// -mavx512vnni on top of the AVX-512 flags): weight-only linear for bfloat16 activations (its
// W8A8 and W4A8 kernels are in linear_avx512vnni.cpp).
//
// A 4-bit code c becomes the bf16 weight 128 + c with a single OR (0x4300 | c is exactly
// bf16(128 + c), since bf16's ulp is 1 on [128, 256)), and vdpbf16ps multiplies 32 of them by
// 32 bf16 activations per instruction, accumulating in fp32. bf16 × bf16 products are exact in
// fp32, so this loses nothing against decoding to float. The bias comes back out per group:
//   Σ_k x_k (c_k s_g - h_g) = s_g Σ_k x_k (128 + c_k) - (128 s_g + h_g) Σ_k x_k.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/x86/gemm_bf16_panels.h"
#include "kernels/x86/linear_bf16_x86.h"
#include "kernels/x86/linear_simd.h"
#include "kernels/x86/linear_x86.h"
#include "kernels/x86/vec_avx512.h"

namespace quanto::kernels::avx512bf16 {
namespace {

using simd::kRowBlock;

inline float hsum(__m512 v) { return avx512::Vec::hsum(v); }
inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) { return avx512::Vec::hsum4(a, b, c, d); }

// Up to 16 scales or shifts as float lanes (masked), from float storage or from a bf16 model's
// own bf16 tensors, read in place: converting those to float scratch before each batch-1 call
// was a serial pass over parameters from memory, a third of the decode GEMV's time on SmolLM2.
inline __m512 load_params(__mmask16 m, const float* p) { return _mm512_maskz_loadu_ps(m, p); }
inline __m512 load_params(__mmask16 m, const bf16* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, p)), 16));
}

// The per-group bias terms -Σ_g (128 s_g + h_g) xsum_g of one row, as lanes to add to its
// dot-product accumulator before the one horizontal sum (a masked last step, no scalar tail).
template <class P>
inline __m512 group_correction_lanes(const P* scale, const P* shift, const float* xsum, int64_t groups, __m512 acc) {
  const __m512 bias = _mm512_set1_ps(128.0f);
  for (int64_t g = 0; g < groups; g += 16) {
    const __mmask16 m = groups - g >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (groups - g)) - 1u);
    const __m512 c = _mm512_fmadd_ps(load_params(m, scale + g), bias, load_params(m, shift + g));
    acc = _mm512_fnmadd_ps(c, _mm512_maskz_loadu_ps(m, xsum + g), acc);
  }
  return acc;
}

// A 64-byte load of tiled 4-bit codes as four vectors of bf16(128 + code), exactly: one AND-OR
// (ternary logic) per vector puts the code under bf16 128's exponent; c[q] holds the codes the
// permuted x's q-th 32 values of the load multiply (permute_x_chunks).
[[gnu::always_inline]] inline void w4_bf16_codes(__m512i w, __m512i (&c)[4]) {
  const __m512i low4 = _mm512_set1_epi16(0x000F), one28 = _mm512_set1_epi16(0x4300);
  constexpr int kTern = 0xEA;  // (a & b) | c
  c[0] = _mm512_ternarylogic_epi32(w, low4, one28, kTern);
  c[1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), low4, one28, kTern);
  c[2] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 8), low4, one28, kTern);
  c[3] = _mm512_or_si512(_mm512_srli_epi16(w, 12), one28);
}

// The same for a 32-byte load, in 256-bit vectors (a half chunk at the end of a row).
[[gnu::always_inline]] inline void w4_bf16_codes_half(__m256i w, __m256i (&c)[4]) {
  const __m256i low4 = _mm256_set1_epi16(0x000F), one28 = _mm256_set1_epi16(0x4300);
  constexpr int kTern = 0xEA;  // (a & b) | c
  c[0] = _mm256_ternarylogic_epi32(w, low4, one28, kTern);
  c[1] = _mm256_ternarylogic_epi32(_mm256_srli_epi16(w, 4), low4, one28, kTern);
  c[2] = _mm256_ternarylogic_epi32(_mm256_srli_epi16(w, 8), low4, one28, kTern);
  c[3] = _mm256_or_si256(_mm256_srli_epi16(w, 12), one28);
}

// Σ_g (128 s_g + h_g) xsum_g, 16 groups per step (a serial scalar chain would cost ~4 cycles
// a group, a large share of a row's work at K = 4096).
template <class P>
inline float group_correction(const P* scale, const P* shift, const float* xsum, int64_t groups) {
  return -hsum(group_correction_lanes(scale, shift, xsum, groups, _mm512_setzero_ps()));
}

// ---- GEMV, group sizes that are multiples of 128: four tiled blocks per 64-byte load ----
// Read as 32 16-bit words, 64 bytes of a tiled row (blocks b..b+3, codes 128·c … 128·c + 127)
// hold in word j four codes, one per nibble q: byte 2j + (q >> 1), nibble q & 1. Nibble q of every
// word is one shift and one AND/OR (vpternlogd) away from bf16(128 + c): four dot-product inputs
// per load and no shuffle, against a 16-byte load, a shift, an insert, an AND, a widening shuffle
// and an OR per 32 codes decoding block by block. x is permuted once per call to match (a
// permutation inside each 128-code chunk, so group sums are unchanged).
// The code behind dot-product input q * 32 + j of a load (nibble q of word j): byte
// b = 2j + (q >> 1) of the chunk, in block b / 16. A table, built at compile time: computing it
// per element was ~1 us of a 576-wide call's set-up.
struct ChunkOrder {
  uint8_t code[128];
  constexpr ChunkOrder() : code{} {
    for (int q = 0; q < 4; ++q)
      for (int j = 0; j < 32; ++j) {
        const int b = 2 * j + (q >> 1);
        code[q * 32 + j] = static_cast<uint8_t>((b / 16) * kTileCodes + (q & 1) * 16 + b % 16);
      }
  }
};
inline constexpr ChunkOrder kChunkOrder{};

// The table as vpermt2w indices: lanes 0-15 of output vector q take codes of blocks 0-1 (chunk
// codes 0-63), lanes 16-31 codes of blocks 2-3 (64-127), so each output is two two-register
// permutes (index = code mod 64) and a blend.
struct ChunkPermute {
  uint16_t index[4][32];
  bool lanes_split;  // lanes 0-15 read codes < 64, lanes 16-31 codes >= 64
  constexpr ChunkPermute() : index{}, lanes_split(true) {
    for (int q = 0; q < 4; ++q)
      for (int j = 0; j < 32; ++j) {
        const int code = kChunkOrder.code[q * 32 + j];
        index[q][j] = static_cast<uint16_t>(code % 64);
        lanes_split = lanes_split && (code < 64) == (j < 16);
      }
  }
};
inline constexpr ChunkPermute kChunkPermute{};
static_assert(kChunkPermute.lanes_split, "each half of an output vector reads one half of the chunk");

// x in load order, zero-padded to whole 128-code loads (out holds K rounded up to 128: the
// padding meets the codes a short last load decodes as 128, and adds nothing). Whole chunks by
// permutes (an element at a time was ~1.5% of a SmolLM2 decode step).
void permute_x_chunks(const bf16* x, int64_t K, bf16* out) {
  int64_t c = 0;
  for (; c + 128 <= K; c += 128) {
    const __m512i v0 = _mm512_loadu_si512(x + c), v1 = _mm512_loadu_si512(x + c + 32);
    const __m512i v2 = _mm512_loadu_si512(x + c + 64), v3 = _mm512_loadu_si512(x + c + 96);
    for (int q = 0; q < 4; ++q) {
      const __m512i index = _mm512_loadu_si512(kChunkPermute.index[q]);
      const __m512i lo = _mm512_permutex2var_epi16(v0, index, v1), hi = _mm512_permutex2var_epi16(v2, index, v3);
      _mm512_storeu_si512(out + c + 32 * q, _mm512_mask_blend_epi16(__mmask32{0xFFFF0000u}, lo, hi));
    }
  }
  if (c < K)
    for (int i = 0; i < 128; ++i) {
      const int64_t k = c + kChunkOrder.code[i];
      out[c + i] = k < K ? x[k] : bf16{0};
    }
}

// x in load order (permute_x_chunks) in a buffer of whole chunks, which that writes in full: a
// value-initialised std::vector zeroed it first in a scalar loop (~2% of a 576-wide decode call).
std::unique_ptr<bf16[]> permuted_x(const bf16* x, int64_t K) {
  auto xp = std::make_unique_for_overwrite<bf16[]>(static_cast<size_t>((K + 127) / 128 * 128));
  permute_x_chunks(x, K, xp.get());
  return xp;
}

// Software prefetch into L2 of the same offset 16 rows ahead (four row blocks, 32 KiB at
// K = 4096): with four row streams interleaved the hardware prefetcher alone left one core at
// ~35% of its read bandwidth on weights larger than the LLC. Measured on 14336 x 4096 (Zen 4, one
// thread): no prefetch 3.8 ms, T0 8 rows ahead 2.8 ms, T1 (L2) 16 rows ahead 1.6 ms; T1 8/32/64
// rows and T0 4/12/16/32 rows and NTA were slower.
constexpr int64_t kPrefetchRows = 16;

template <int NR, class P>
void w4_dot_rows_g128(const bf16* xp, const uint8_t* tiled, int64_t K, int64_t group_size, const P* scale,
                      const P* shift, const float* xsum, float* dots) {
  const int64_t groups = K / group_size, row_bytes = K / 2;
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 ga[NR], gb[NR];
    for (int r = 0; r < NR; ++r) ga[r] = gb[r] = _mm512_setzero_ps();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 128) {
      const __m512bh x0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k));
      const __m512bh x1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + 32));
      const __m512bh x2 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + 64));
      const __m512bh x3 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + 96));
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = tiled + r * row_bytes + k / 2;
        _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
        __m512i c[4];
        w4_bf16_codes(_mm512_loadu_si512(wp), c);
        ga[r] = _mm512_dpbf16_ps(ga[r], reinterpret_cast<__m512bh>(c[0]), x0);
        gb[r] = _mm512_dpbf16_ps(gb[r], reinterpret_cast<__m512bh>(c[1]), x1);
        ga[r] = _mm512_dpbf16_ps(ga[r], reinterpret_cast<__m512bh>(c[2]), x2);
        gb[r] = _mm512_dpbf16_ps(gb[r], reinterpret_cast<__m512bh>(c[3]), x3);
      }
    }
    for (int r = 0; r < NR; ++r)
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(ga[r], gb[r]), _mm512_set1_ps(to_float(scale[r * groups + g])), acc[r]);
  }
  for (int r = 0; r < NR; ++r)
    dots[r] = hsum(acc[r]) - group_correction(scale + r * groups, shift + r * groups, xsum, groups);
}

// ---- GEMV at batch 1, groups of any multiple of 32 codes (SmolLM2's 32 and 96) ----
// The same decoding and dot products as w4_dot_rows_g128, but a 64-byte load can span up to four
// groups: fp32 lane i of the dot products sums words 2i and 2i + 1, bytes 4i … 4i + 3, all in
// tiled block i / 4. So each load's four-block partial sums are scaled lane by lane, by a vector
// of its blocks' scales: up to four consecutive scales from the row, spread over the lanes by one
// permute whose indices (and first group) depend only on the load's position, computed per call.
// A short last load (K % 128 of 32, 64 or 96 codes) is masked; x is zero-padded to whole loads
// (permute_x_chunks), so the missing codes (decoded as 128) add nothing.
struct ChunkScales {
  std::vector<int32_t> lane_group;  // per load: 16 lane -> group offsets from its first group
  std::vector<int64_t> first;       // per load: its first group
  std::vector<uint16_t> valid;      // per load: mask of the (at most 4) scales it reads
  ChunkScales(int64_t K, int64_t group_size) {
    const int64_t chunks = (K + 127) / 128, groups = K / group_size;
    lane_group.resize(static_cast<size_t>(chunks * 16));
    first.resize(static_cast<size_t>(chunks));
    valid.resize(static_cast<size_t>(chunks));
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t g0 = c * 128 / group_size;
      first[static_cast<size_t>(c)] = g0;
      valid[static_cast<size_t>(c)] = static_cast<uint16_t>((1u << std::min<int64_t>(4, groups - g0)) - 1u);
      for (int i = 0; i < 16; ++i) {
        const int64_t k = c * 128 + (i / 4) * kTileCodes;  // the lane's block's first code
        lane_group[static_cast<size_t>(c * 16 + i)] = k < K ? static_cast<int32_t>(k / group_size - g0) : 0;
      }
    }
  }
};

// y[r] for NR (1 or 4) consecutive rows, bias included (bias may be nullptr). The accumulators
// are named variables: GCC 12 kept an __m512 array (or a vector-extension one) of them in memory.
// kParamsFar: scale and shift rows come from memory, prefetched like the codes. P: their storage
// (float, or bf16).
template <int NR, bool kParamsFar, class P>
[[gnu::noinline]] void w4_dot_rows_any(const bf16* xp, const uint8_t* tiled, int64_t K, int64_t group_size,
                                       const ChunkScales& cs, const P* scale, const P* shift,
                                       const float* xsum, const float* bias, float* y) {
  static_assert(NR == 1 || NR == 4, "one or four rows");
  const int64_t groups = K / group_size, row_bytes = K / 2;
  const bool half_tail = K % 128 == 64;  // runs in 256-bit vectors, below
  const int64_t chunks = half_tail ? K / 128 : (K + 127) / 128;
  const int32_t* lane_group = cs.lane_group.data();
  const int64_t* first = cs.first.data();
  const uint16_t* valid_scales = cs.valid.data();
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t c = 0; c < chunks; ++c) {
    const __m512bh x0 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + c * 128));
    const __m512bh x1 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + c * 128 + 32));
    const __m512bh x2 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + c * 128 + 64));
    const __m512bh x3 = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + c * 128 + 96));
    const __m512i lanes = _mm512_loadu_si512(lane_group + c * 16);
    const int64_t g0 = first[c];
    const __mmask16 valid = valid_scales[c];
    const int64_t bytes = std::min<int64_t>(64, row_bytes - c * 64);
    const __mmask64 load = bytes == 64 ? ~__mmask64{0} : (__mmask64{1} << bytes) - 1;
    // A load reads at most 4 parameters of a row (16 or 8 bytes): a line every four loads or more.
    const bool prefetch_params = kParamsFar && (c & 3) == 0;
    auto row = [&](__m512 acc, int r) [[gnu::always_inline]] {
      const uint8_t* wp = tiled + r * row_bytes + c * 64;
      _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
      __m512i codes[4];
      w4_bf16_codes(_mm512_maskz_loadu_epi8(load, wp), codes);
      const __m512i c0 = codes[0], c1 = codes[1], c2 = codes[2], c3 = codes[3];
      // Two chains of two dot products, not one of four: with four rows in flight the chain's
      // latency, not the decoding, bounded a load's time.
      const __m512 t01 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), reinterpret_cast<__m512bh>(c0), x0),
                                          reinterpret_cast<__m512bh>(c1), x1);
      const __m512 t23 = _mm512_dpbf16_ps(_mm512_dpbf16_ps(_mm512_setzero_ps(), reinterpret_cast<__m512bh>(c2), x2),
                                          reinterpret_cast<__m512bh>(c3), x3);
      const P* sp = scale + r * groups + g0;
      if (prefetch_params) {  // parameters from memory: their rows, ahead like the codes
        _mm_prefetch(reinterpret_cast<const char*>(sp + kPrefetchRows * groups), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(shift + (sp - scale) + kPrefetchRows * groups), _MM_HINT_T1);
      }
      const __m512 s4 = load_params(valid, sp);
      return _mm512_fmadd_ps(_mm512_add_ps(t01, t23), _mm512_permutexvar_ps(lanes, s4), acc);
    };
    a0 = row(a0, 0);
    if constexpr (NR == 4) {
      a1 = row(a1, 1);
      a2 = row(a2, 2);
      a3 = row(a3, 3);
    }
  }
  if (half_tail) {
    // The last load is half a chunk (SmolLM2's K = 576 and 960): its 32 bytes fill the low
    // halves of the four code vectors, the lanes of blocks 0 and 1, so 256-bit decoding and dot
    // products do its work at half the cost of a full chunk's (the masked 64-byte load and
    // 512-bit operations on half zeros took as long as a whole chunk, ~10% of a 576-wide row).
    const int64_t c = chunks;
    const auto x_half = [&](int q) {
      return reinterpret_cast<__m256bh>(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xp + c * 128 + q * 32)));
    };
    const __m256bh x0 = x_half(0), x1 = x_half(1), x2 = x_half(2), x3 = x_half(3);
    const __m512i lanes = _mm512_loadu_si512(lane_group + c * 16);
    const int64_t g0 = first[c];
    const __mmask16 valid = valid_scales[c];
    auto row = [&](__m512 acc, int r) [[gnu::always_inline]] {
      const uint8_t* wp = tiled + r * row_bytes + c * 64;
      _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
      __m256i codes[4];
      w4_bf16_codes_half(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp)), codes);
      const __m256 t01 = _mm256_dpbf16_ps(_mm256_dpbf16_ps(_mm256_setzero_ps(), reinterpret_cast<__m256bh>(codes[0]), x0),
                                          reinterpret_cast<__m256bh>(codes[1]), x1);
      const __m256 t23 = _mm256_dpbf16_ps(_mm256_dpbf16_ps(_mm256_setzero_ps(), reinterpret_cast<__m256bh>(codes[2]), x2),
                                          reinterpret_cast<__m256bh>(codes[3]), x3);
      const __m256 s8 = _mm512_castps512_ps256(_mm512_permutexvar_ps(lanes, load_params(valid, scale + r * groups + g0)));
      return _mm512_add_ps(acc, _mm512_zextps256_ps512(_mm256_mul_ps(_mm256_add_ps(t01, t23), s8)));
    };
    a0 = row(a0, 0);
    if constexpr (NR == 4) {
      a1 = row(a1, 1);
      a2 = row(a2, 2);
      a3 = row(a3, 3);
    }
  }
  auto corrected = [&](__m512 acc, int r) {
    return group_correction_lanes(scale + r * groups, shift + r * groups, xsum, groups, acc);
  };
  if constexpr (NR == 4) {
    __m128 v = hsum4(corrected(a0, 0), corrected(a1, 1), corrected(a2, 2), corrected(a3, 3));
    if (bias) v = _mm_add_ps(v, _mm_loadu_ps(bias));
    _mm_storeu_ps(y, v);
  } else {
    const float v = hsum(corrected(a0, 0));
    y[0] = bias ? v + bias[0] : v;
  }
}

// Batch 1, groups of whole 128-code chunks: x permuted to load order once, then the shared GEMV
// driver over blocks of rows. P: the scales' and shifts' storage (float, or bf16).
template <class P>
void w4_gemv_g128(const bf16* x, const uint8_t* tiled, int64_t group_size, const P* scale, const P* shift,
                  const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K;
  const std::unique_ptr<bf16[]> xp = permuted_x(x, K);
  simd::w4_tiled_gemv(xp.get(), tiled, group_size, scale, shift, bias, s, y,
                      [&](auto nr, const bf16* xm, const uint8_t* t, const P* sc, const P* sh, const float* xsum,
                          float* dots) {
                        w4_dot_rows_g128<decltype(nr)::value>(xm, t, K, group_size, sc, sh, xsum, dots);
                      });
}

// Batch 1, groups of any multiple of 32 codes: x permuted to load order once, its group sums,
// then four rows at a time. P: the scales' and shifts' storage (float, or bf16).
template <class P>
void w4_gemv_any(const bf16* x, const uint8_t* tiled, int64_t group_size, const P* scale, const P* shift,
                 const float* bias, LinearShape s, float* y) {
  // Its own row loop: the shared GEMV driver's dots[] round trip cost a store-forwarding stall
  // per block of rows, ~9% of a 576-wide layer.
  const int64_t K = s.K, groups = K / group_size, row_bytes = K / 2;
  const std::unique_ptr<bf16[]> xp = permuted_x(x, K);
  std::vector<float> xsum(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) {  // groups are whole multiples of 32 codes
    __m512 acc = _mm512_setzero_ps();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 16)
      acc = _mm512_add_ps(acc, _mm512_cvtpbh_ps(reinterpret_cast<__m256bh>(_mm256_loadu_si256(
                                   reinterpret_cast<const __m256i*>(x + k)))));
    xsum[static_cast<size_t>(g)] = hsum(acc);
  }
  const ChunkScales cs(K, group_size);
  // Parameters from memory are prefetched with the codes: a model's own bf16 tensors always (at
  // batch 1 each layer's are cold, the model being larger than the LLC: SmolLM2's 210 W4 calls
  // of a step took 2.9-3.3 ms without, 2.5-2.6 ms with), float ones (the op layer's per-thread
  // conversion, in cache) only when more rows than L2 holds, the prefetches otherwise costing
  // issue slots (~8% of a 576 x 1536 call).
  const bool params_far = std::is_same_v<P, bf16> || (s.n_end - s.n_begin) * groups * 2 * int64_t{sizeof(P)} > (1 << 20);
  auto rows = [&](auto nr, int64_t n) {
    constexpr int NR = decltype(nr)::value;
    const auto dot = params_far ? w4_dot_rows_any<NR, true, P> : w4_dot_rows_any<NR, false, P>;
    dot(xp.get(), tiled + n * row_bytes, K, group_size, cs, scale + n * groups, shift + n * groups, xsum.data(),
        bias ? bias + n : nullptr, y + n);
  };
  int64_t n = s.n_begin;
  for (; n + simd::kRowBlock <= s.n_end; n += simd::kRowBlock) rows(std::integral_constant<int, simd::kRowBlock>{}, n);
  for (; n < s.n_end; ++n) rows(std::integral_constant<int, 1>{}, n);
}

// Rows of x permuted per 128-code chunk (permute_x_chunks, ldx apart) and their group sums
// (float, in order), for the batch kernels.
void permuted_rows_and_sums(const bf16* x, int64_t M, int64_t K, int64_t ldx, int64_t group_size, bf16* xp,
                            float* xsum) {
  const int64_t groups = K / group_size;
  for (int64_t m = 0; m < M; ++m) {
    permute_x_chunks(x + m * K, K, xp + m * ldx);
    for (int64_t g = 0; g < groups; ++g) {
      float t = 0.0f;
      for (int64_t k = g * group_size; k < (g + 1) * group_size; ++k) t += to_float(x[m * K + k]);
      xsum[m * groups + g] = t;
    }
  }
}

// Batches of MB rows (2 to 8), groups of any multiple of 32 codes: w4_dot_rows_any's decoding
// and lane-by-lane scales, each 64-byte load decoded and its scales spread once for every row of
// x, one weight row at a time (MB accumulators). The float GEMV these batches took before
// converted every code to float and ran an FMA per code and row: 2.7x slower at 14336 x 4096 with
// groups of 32 and 8 rows (Zen 4, 2 threads).
template <int MB>
[[gnu::noinline]] void w4_dot_batch_any(const bf16* xp, int64_t ldx, const uint8_t* tiled, int64_t K,
                                        int64_t group_size, const ChunkScales& cs, const float* scale,
                                        const float* shift, const float* xsum, const float* bias, float* y,
                                        int64_t ldy) {
  const int64_t groups = K / group_size, row_bytes = K / 2, chunks = (K + 127) / 128;
  __m512 acc[MB];
  for (int m = 0; m < MB; ++m) acc[m] = _mm512_setzero_ps();
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t bytes = std::min<int64_t>(64, row_bytes - c * 64);
    const __mmask64 load = bytes == 64 ? ~__mmask64{0} : (__mmask64{1} << bytes) - 1;
    const uint8_t* wp = tiled + c * 64;
    _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
    __m512i codes[4];
    w4_bf16_codes(_mm512_maskz_loadu_epi8(load, wp), codes);
    const __m512bh c0 = reinterpret_cast<__m512bh>(codes[0]), c1 = reinterpret_cast<__m512bh>(codes[1]);
    const __m512bh c2 = reinterpret_cast<__m512bh>(codes[2]), c3 = reinterpret_cast<__m512bh>(codes[3]);
    const __m512 sv = _mm512_permutexvar_ps(_mm512_loadu_si512(cs.lane_group.data() + c * 16),
                                            load_params(cs.valid[static_cast<size_t>(c)], scale + cs.first[static_cast<size_t>(c)]));
    for (int m = 0; m < MB; ++m) {
      const bf16* xc = xp + m * ldx + c * 128;
      const __m512 t01 = _mm512_dpbf16_ps(
          _mm512_dpbf16_ps(_mm512_setzero_ps(), c0, reinterpret_cast<__m512bh>(_mm512_loadu_si512(xc))), c1,
          reinterpret_cast<__m512bh>(_mm512_loadu_si512(xc + 32)));
      const __m512 t23 = _mm512_dpbf16_ps(
          _mm512_dpbf16_ps(_mm512_setzero_ps(), c2, reinterpret_cast<__m512bh>(_mm512_loadu_si512(xc + 64))), c3,
          reinterpret_cast<__m512bh>(_mm512_loadu_si512(xc + 96)));
      acc[m] = _mm512_fmadd_ps(_mm512_add_ps(t01, t23), sv, acc[m]);
    }
  }
  for (int m = 0; m < MB; ++m) {
    const float v = hsum(group_correction_lanes(scale, shift, xsum + m * groups, groups, acc[m]));
    y[m * ldy] = bias ? v + bias[0] : v;
  }
}

// y for 2 <= M <= 8 rows of x, groups of any multiple of 32 codes (w4_dot_batch_any).
void w4_batch_any(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale, const float* shift,
                  const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, groups = K / group_size, row_bytes = K / 2, ldx = (K + 127) / 128 * 128;
  std::vector<bf16> xp(static_cast<size_t>(s.M * ldx));
  std::vector<float> xsum(static_cast<size_t>(s.M * groups));
  permuted_rows_and_sums(x, s.M, K, ldx, group_size, xp.data(), xsum.data());
  const ChunkScales cs(K, group_size);
  simd::with_static_rows<2, simd::kGemmMinRows - 1>(s.M, [&](auto mb) {
    constexpr int MB = decltype(mb)::value;
    for (int64_t n = s.n_begin; n < s.n_end; ++n)
      w4_dot_batch_any<MB>(xp.data(), ldx, tiled + n * row_bytes, K, group_size, cs, scale + n * groups,
                           shift + n * groups, xsum.data(), bias ? bias + n : nullptr, y + n, s.N);
  });
}

// Batches of MB rows (2 to 8): the same decoding, each 64-byte load decoded once for every row
// of x. MB × NR × S group accumulators and MB × NR running sums stay in registers; with one
// weight row (NR = 1) each sum has S = 2 accumulators, so that enough independent vdpbf16ps
// chains are in flight.
template <int MB, int NR>
[[gnu::noinline]] void w4_dot_batch_g128(const bf16* xp, int64_t ldx, const uint8_t* tiled, int64_t K,
                                         int64_t group_size, const float* scale, float dots[][NR]) {
  constexpr int S = NR == 1 ? 2 : 1;
  const int64_t groups = K / group_size, row_bytes = K / 2;
  __m512 acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_setzero_ps();
  for (int64_t g = 0; g < groups; ++g) {
    __m512 ga[MB][NR][S];
    for (int m = 0; m < MB; ++m)
      for (int r = 0; r < NR; ++r)
        for (int i = 0; i < S; ++i) ga[m][r][i] = _mm512_setzero_ps();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += 128) {
      __m512i c[NR][4];
      for (int r = 0; r < NR; ++r) {
        const uint8_t* wp = tiled + r * row_bytes + k / 2;
        _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
        w4_bf16_codes(_mm512_loadu_si512(wp), c[r]);
      }
      for (int m = 0; m < MB; ++m)
        for (int q = 0; q < 4; ++q) {
          const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + m * ldx + k + 32 * q));
          for (int r = 0; r < NR; ++r)
            ga[m][r][q % S] = _mm512_dpbf16_ps(ga[m][r][q % S], reinterpret_cast<__m512bh>(c[r][q]), xv);
        }
    }
    for (int r = 0; r < NR; ++r) {
      const __m512 sv = _mm512_set1_ps(scale[r * groups + g]);
      for (int m = 0; m < MB; ++m) {
        __m512 sum = ga[m][r][0];
        for (int i = 1; i < S; ++i) sum = _mm512_add_ps(sum, ga[m][r][i]);
        acc[m][r] = _mm512_fmadd_ps(sum, sv, acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) dots[m][r] = hsum(acc[m][r]);
}

// y for 2 <= M <= 8 rows of x, groups of a multiple of 128 codes: x permuted per 128-code chunk
// (permute_x_chunks); one pass over the weights, two rows at a time up to 4 rows of x, one above.
void w4_batch_g128(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale, const float* shift,
                   const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, groups = K / group_size, row_bytes = K / 2;
  std::vector<bf16> xp(static_cast<size_t>(s.M * K));
  std::vector<float> xsum(static_cast<size_t>(s.M * groups));
  permuted_rows_and_sums(x, s.M, K, K, group_size, xp.data(), xsum.data());
  auto store = [&](int64_t m, int64_t n, float d) {
    const float v = d - group_correction(scale + n * groups, shift + n * groups, xsum.data() + m * groups, groups);
    y[m * s.N + n] = bias ? v + bias[n] : v;
  };
  auto rows = [&](auto mb) {
    constexpr int MB = decltype(mb)::value, NR = MB <= 4 ? 2 : 1;  // 2 · MB · NR accumulators
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) {
      float dots[MB][NR];
      w4_dot_batch_g128<MB, NR>(xp.data(), K, tiled + n * row_bytes, K, group_size, scale + n * groups, dots);
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) store(m, n + r, dots[m][r]);
    }
    for (; n < s.n_end; ++n) {
      float dots[MB][1];
      w4_dot_batch_g128<MB, 1>(xp.data(), K, tiled + n * row_bytes, K, group_size, scale + n * groups, dots);
      for (int m = 0; m < MB; ++m) store(m, n, dots[m][0]);
    }
  };
  simd::with_static_rows<2, simd::kGemmMinRows - 1>(s.M, rows);
}

// ---- W2 GEMV, group sizes that are multiples of 128, K % 256 == 0 ----
// The same idea for the tiled 2-bit layout: 64 bytes (four 64-code blocks, 256 codes) as 32
// 16-bit words hold eight codes per word, crumb q at bits 2q: byte 2j + (q >> 2), crumb q & 3.
// Lanes 0-15 of each decoded vector come from blocks 0-1 (codes 0-127 of the chunk), lanes 16-31
// from blocks 2-3, so the fp32 lanes 0-7 / 8-15 of the dot products belong to the chunk's first
// / second 128 codes: one scale vector per chunk handles groups of 128 as well as larger ones.
inline int64_t chunk2_code(int q, int64_t j) {
  const int64_t b = 2 * j + (q >> 2);
  return (b / 16) * kTile2Codes + (q & 3) * 16 + b % 16;
}

void permute_x_chunks2(const bf16* x, int64_t K, bf16* out) {
  for (int64_t c = 0; c < K; c += 256)
    for (int q = 0; q < 8; ++q)
      for (int64_t j = 0; j < 32; ++j) out[c + q * 32 + j] = x[c + chunk2_code(q, j)];
}

template <int NR>
void w2_dot_rows_c256(const bf16* xp, const uint8_t* tiled, int64_t K, int64_t group_size, const float* scale,
                      const float* shift, const float* xsum, float* dots) {
  const int64_t groups = K / group_size, row_bytes = K / 4;
  const __m512i low2 = _mm512_set1_epi16(0x0003), one28 = _mm512_set1_epi16(0x4300);
  constexpr int kTern = 0xEA;  // (a & b) | c
  __m512 acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 256) {
    __m512bh xv[8];
    for (int q = 0; q < 8; ++q) xv[q] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(xp + k + q * 32));
    const int64_t g0 = k / group_size, g1 = (k + 128) / group_size;
    for (int r = 0; r < NR; ++r) {
      const uint8_t* wp = tiled + r * row_bytes + k / 4;
      _mm_prefetch(reinterpret_cast<const char*>(wp + kPrefetchRows * row_bytes), _MM_HINT_T1);
      const __m512i w = _mm512_loadu_si512(wp);
      __m512 ca = _mm512_setzero_ps(), cb = _mm512_setzero_ps();
      ca = _mm512_dpbf16_ps(ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(w, low2, one28, kTern)), xv[0]);
      cb = _mm512_dpbf16_ps(
          cb, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 2), low2, one28, kTern)), xv[1]);
      ca = _mm512_dpbf16_ps(
          ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 4), low2, one28, kTern)), xv[2]);
      cb = _mm512_dpbf16_ps(
          cb, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 6), low2, one28, kTern)), xv[3]);
      ca = _mm512_dpbf16_ps(
          ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 8), low2, one28, kTern)), xv[4]);
      cb = _mm512_dpbf16_ps(
          cb, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 10), low2, one28, kTern)), xv[5]);
      ca = _mm512_dpbf16_ps(
          ca, reinterpret_cast<__m512bh>(_mm512_ternarylogic_epi32(_mm512_srli_epi16(w, 12), low2, one28, kTern)), xv[6]);
      cb = _mm512_dpbf16_ps(cb, reinterpret_cast<__m512bh>(_mm512_or_si512(_mm512_srli_epi16(w, 14), one28)), xv[7]);
      const __m512 sv = _mm512_insertf32x8(_mm512_set1_ps(scale[r * groups + g0]),
                                           _mm256_set1_ps(scale[r * groups + g1]), 1);
      acc[r] = _mm512_fmadd_ps(_mm512_add_ps(ca, cb), sv, acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r)
    dots[r] = hsum(acc[r]) - group_correction(scale + r * groups, shift + r * groups, xsum, groups);
}

// ---- GEMM (M >= kGemmMinRows): channels in lanes with vdpbf16ps (gemm_bf16_panels.h) ----
// Weights are decoded once per call into bf16 panels. W4 and W2 weights are dequantized to bf16
// (c·s − h, rounded once, as in any bf16 GEMM); int8 and float8 weights are exact in bf16 and
// keep their per-channel scale for the epilogue.

using simd::kGemmMinRows;

// Prefetch (into L2) for the GEMM's decoding, which reads each row in K blocks: the hardware
// prefetcher follows those short runs poorly. Codes of 8-bit weights, or 2/4-bit codes with
// their groups' scales and shifts (with groups of 32 those are half as many bytes as the codes).
struct BytePrefetch {
  const void* w;
  int64_t K;
  void operator()(int64_t n, int64_t k0, int64_t count) const { simd::WeightRows{w, K, 8}.prefetch(n, k0, count); }
};
struct GroupedPrefetch {
  const uint8_t* tiled;
  int bits;
  int64_t K, group_size;
  const float *scale, *shift;
  void operator()(int64_t n, int64_t k0, int64_t count) const {
    simd::WeightRows{tiled, K * bits / 8, bits}.prefetch(n, k0, count);
    const int64_t groups = K / group_size, g0 = k0 / group_size, g1 = (k0 + count - 1) / group_size + 1;
    for (const float* p : {scale, shift})
      for (int64_t g = g0; g < g1; g += 16) _mm_prefetch(reinterpret_cast<const char*>(p + n * groups + g), _MM_HINT_T1);
  }
};

// Tiled 4-bit codes [k0, k0 + count) of one row as bf16(c · s_g − h_g).
void decode_w4_range(const uint8_t* row, int64_t k0, int64_t count, int64_t group_size, const float* scale,
                     const float* shift, bf16* out) {
  // One division a call: with groups of 32 a division per group was the decoding's critical path.
  for (int64_t k = k0, end = k0 + count, g = k0 / group_size; k < end; ++g) {
    const int64_t group_end = std::min(end, (g + 1) * group_size);
    const __m512 sv = _mm512_set1_ps(scale[g]), hv = _mm512_set1_ps(-shift[g]);
    for (; k < group_end; k += kTileCodes) {
      const __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + k / 2)));
      const __m512 lo = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b, _mm512_set1_epi32(0x0F))), sv, hv);
      const __m512 hi = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b, 4)), sv, hv);
      _mm512_storeu_si512(out + (k - k0), reinterpret_cast<__m512i>(_mm512_cvtne2ps_pbh(hi, lo)));
    }
  }
}

// Tiled 2-bit codes [k0, k0 + count) of one row as bf16(c · s_g − h_g).
void decode_w2_range(const uint8_t* row, int64_t k0, int64_t count, int64_t group_size, const float* scale,
                     const float* shift, bf16* out) {
  for (int64_t k = k0, end = k0 + count, g = k0 / group_size; k < end; ++g) {
    const int64_t group_end = std::min(end, (g + 1) * group_size);
    const __m512 sv = _mm512_set1_ps(scale[g]), hv = _mm512_set1_ps(-shift[g]);
    for (; k < group_end; k += kTile2Codes) {
      __m512 codes[4];
      avx512::Vec::decode_u2_block(row + k / 4, codes);
      for (int j = 0; j < 4; j += 2) {
        const __m512 lo = _mm512_fmadd_ps(codes[j], sv, hv), hi = _mm512_fmadd_ps(codes[j + 1], sv, hv);
        const __m512bh pair = _mm512_cvtne2ps_pbh(hi, lo);
        _mm512_storeu_si512(out + (k - k0) + 16 * j, reinterpret_cast<__m512i>(pair));
      }
    }
  }
}

// 8-bit weights (int8 or float8) as bf16: exact, since both fit bf16's significand and exponent
// range.
template <class Decoder>
void decode_bytes_range(const typename Decoder::Byte* row, int64_t count, const Decoder& dec, bf16* out) {
  int64_t k = 0;
  for (; k + 32 <= count; k += 32) {
    const __m512bh pair = _mm512_cvtne2ps_pbh(dec.vec(row + k + 16), dec.vec(row + k));
    _mm512_storeu_si512(out + k, reinterpret_cast<__m512i>(pair));
  }
  for (; k < count; ++k) out[k] = bf16_from_float(dec.one(row[k]));
}

template <class Decoder>
void linear_bytes_bf16x(const bf16* x, const typename Decoder::Byte* w, const Decoder& dec, const float* scale,
                        int64_t scale_stride, const float* bias, LinearShape s, float* y) {
  gemm_bf16_panels(
      x, s.M, s.K, s.N, s.n_begin, s.n_end,
      [&](int64_t n, int64_t k0, int64_t count, bf16* out) { decode_bytes_range(w + n * s.K + k0, count, dec, out); },
      BytePrefetch{w, s.K}, PanelEpilogue{scale, scale_stride, bias}, y);
}

// ---- 8-bit weights, batches of 2 to 8 rows: vdpbf16ps GEMV ----
// 32 weights are decoded once to bf16 (exact) and multiplied against 32 bf16 activations of
// every row of x: one vdpbf16ps per row where the float GEMV needed two FMAs, and x is never
// converted. Lanes hold k, so each output is one horizontal sum at the end of its row.
template <int MB, int NR, class Decoder>
[[gnu::noinline]] void bytes_dot_batch_bf16(const bf16* x, int64_t K, const typename Decoder::Byte* w,
                                            const Decoder& dec, float dots[][NR]) {
  __m512 acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 32) {
    __m512bh wv[NR];
    for (int r = 0; r < NR; ++r) {
      const auto* row = w + r * K + k;
      if (k % 64 == 0) _mm_prefetch(reinterpret_cast<const char*>(row + simd::kPrefetchRows * K), _MM_HINT_T1);
      wv[r] = _mm512_cvtne2ps_pbh(dec.vec(row + 16), dec.vec(row));
    }
    for (int m = 0; m < MB; ++m) {
      const __m512bh xv = reinterpret_cast<__m512bh>(_mm512_loadu_si512(x + m * K + k));
      for (int r = 0; r < NR; ++r) acc[m][r] = _mm512_dpbf16_ps(acc[m][r], wv[r], xv);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) dots[m][r] = hsum(acc[m][r]);
}

template <class Decoder>
void linear_bytes_batch_bf16x(const bf16* x, const typename Decoder::Byte* w, const Decoder& dec, const float* scale,
                              int64_t scale_stride, const float* bias, LinearShape s, float* y) {
  auto store = [&](int64_t m, int64_t n, float d) {
    const float v = d * scale[n * scale_stride];
    y[m * s.N + n] = bias ? v + bias[n] : v;
  };
  simd::with_static_rows<2, simd::kGemmMinRows - 1>(s.M, [&](auto mb) {
    constexpr int MB = decltype(mb)::value, NR = MB <= 4 ? 4 : 2;  // MB · NR accumulators
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) {
      float dots[MB][NR];
      bytes_dot_batch_bf16<MB, NR>(x, s.K, w + n * s.K, dec, dots);
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) store(m, n + r, dots[m][r]);
    }
    for (; n < s.n_end; ++n) {
      float dots[MB][1];
      bytes_dot_batch_bf16<MB, 1>(x, s.K, w + n * s.K, dec, dots);
      for (int m = 0; m < MB; ++m) store(m, n, dots[m][0]);
    }
  });
}

// Exact float8 -> float for the bf16 panels.
struct Fp8ExactDecoder {
  using Byte = uint8_t;
  Fp8Format format;
  __m512 vec(const uint8_t* p) const { return avx512::Vec::load_fp8(p, format); }
  float one(uint8_t b) const { return fp8_to_float(b, format); }
};

// Rows of bf16 x as float, for the float kernels.
std::vector<float> to_float_rows(const bf16* x, int64_t n) {
  std::vector<float> xf(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) xf[i] = to_float(x[i]);
  return xf;
}

}  // namespace

void linear_w8_bf16x(const bf16* x, const int8_t* w, const float* scale, int64_t scale_stride, const float* bias,
                     LinearShape s, float* y) {
  if (s.M == 1) {  // bandwidth-bound: the float GEMV
    avx512::linear_w8(to_float_rows(x, s.K).data(), w, scale, scale_stride, bias, s, y);
    return;
  }
  if (s.M < kGemmMinRows) {
    linear_bytes_batch_bf16x(x, w, simd::Int8Decoder<avx512::Vec>{}, scale, scale_stride, bias, s, y);
    return;
  }
  linear_bytes_bf16x(x, w, simd::Int8Decoder<avx512::Vec>{}, scale, scale_stride, bias, s, y);
}

void linear_fp8_bf16x(const bf16* x, const uint8_t* w, Fp8Format format, const float* scale, int64_t scale_stride,
                      const float* bias, LinearShape s, float* y) {
  // Below 4 rows the float GEMV (float8 as shifted bit patterns: a shift and an AND) beats
  // decoding to bf16 (seven operations per 16 weights) for only M dot products each: at M = 2,
  // 0.80 against 1.54 ms on 14336 x 4096 with 2 threads.
  if (s.M < 4) {
    avx512::linear_fp8(to_float_rows(x, s.M * s.K).data(), w, format, scale, scale_stride, bias, s, y);
    return;
  }
  if (s.M < kGemmMinRows) {
    linear_bytes_batch_bf16x(x, w, Fp8ExactDecoder{format}, scale, scale_stride, bias, s, y);
    return;
  }
  linear_bytes_bf16x(x, w, Fp8ExactDecoder{format}, scale, scale_stride, bias, s, y);
}

void linear_w4_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K, groups = K / group_size, row_bytes = K / 2;
  if (s.M >= kGemmMinRows) {
    gemm_bf16_panels(
        x, s.M, K, s.N, s.n_begin, s.n_end,
        [&](int64_t n, int64_t k0, int64_t count, bf16* out) {
          decode_w4_range(tiled + n * row_bytes, k0, count, group_size, scale + n * groups, shift + n * groups, out);
        },
        GroupedPrefetch{tiled, 4, K, group_size, scale, shift}, PanelEpilogue{nullptr, 0, bias}, y);
    return;
  }
  if (group_size % 128 != 0 && s.M == 1) {
    w4_gemv_any(x, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  if (group_size % 128 != 0) {  // small batches with smaller groups
    w4_batch_any(x, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  if (s.M > 1) {  // small batches: each weight decoded once for every row of x
    w4_batch_g128(x, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  w4_gemv_g128(x, tiled, group_size, scale, shift, bias, s, y);
}

void linear_w2_tiled_bf16x(const bf16* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                           const float* shift, const float* bias, LinearShape s, float* y) {
  const int64_t K = s.K;
  if (s.M >= kGemmMinRows) {
    const int64_t groups = K / group_size, row_bytes = K / 4;
    gemm_bf16_panels(
        x, s.M, K, s.N, s.n_begin, s.n_end,
        [&](int64_t n, int64_t k0, int64_t count, bf16* out) {
          decode_w2_range(tiled + n * row_bytes, k0, count, group_size, scale + n * groups, shift + n * groups, out);
        },
        GroupedPrefetch{tiled, 2, K, group_size, scale, shift}, PanelEpilogue{nullptr, 0, bias}, y);
    return;
  }
  if (s.M > 1 || group_size % 128 != 0 || K % 256 != 0) {
    // Small batches (and other group sizes): the float kernels on converted activations.
    avx512::linear_w2_tiled(to_float_rows(x, s.M * K).data(), tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  std::vector<bf16> xp(static_cast<size_t>(K));
  permute_x_chunks2(x, K, xp.data());
  // The driver takes group sums from x in its own order (a 256-code chunk of xp mixes two groups
  // of 128); the dot products read the permuted row.
  simd::w4_tiled_gemv<2>(x, tiled, group_size, scale, shift, bias, s, y,
                         [&](auto nr, const bf16* xm, const uint8_t* t, const float* sc, const float* sh,
                             const float* xsum, float* dots) {
                           w2_dot_rows_c256<decltype(nr)::value>(xp.data() + (xm - x), t, K, group_size, sc, sh, xsum,
                                                                 dots);
                         });
}

void linear_w4_gemv_bf16_params(const bf16* x, const uint8_t* tiled, int64_t group_size, const bf16* scale,
                                const bf16* shift, const float* bias, LinearShape s, float* y) {
  if (group_size % 128 == 0)
    w4_gemv_g128(x, tiled, group_size, scale, shift, bias, s, y);
  else
    w4_gemv_any(x, tiled, group_size, scale, shift, bias, s, y);
}

}  // namespace quanto::kernels::avx512bf16
