// GEMV (batches of 1 to kGemvMaxRows rows) of the tiled 2/4-bit weights (kernels/ref/tiled_ref.h)
// on float activations, over a vector-traits type V (vec_avx2.h, vec_avx512.h).
//
// Why this shape: at batch 1 a 4-bit weight costs one fp32 FMA lane per code, so the decode must
// add as little as possible beside it. A register of V::kPackedBytes codes is read as 32-bit
// lanes; "slot" j of every lane is the code at bits [j·Bits, (j+1)·Bits). An AND keeps slot j in
// place and one int->float conversion gives code · 2^(j·Bits), exactly (< 2^31, 4 significant
// bits); the top slot is a shift instead. So a slot costs AND + convert + FMA, with no shuffle,
// against a widening shuffle, a shift and an AND per conversion before. The 2^(j·Bits) factor
// and the order of codes in slots (a fixed permutation inside each chunk of kChunkCodes codes)
// are folded once per call into a copy of x ("slot order"), so the products are x_k · code_k
// exactly as in the scalar reference (x also carries a power of two per row, row_scale); only the
// float summation order differs.
//
// Scales: a group is one or more whole 16-byte tiled blocks, and a register holds kBlocks
// blocks (4 lanes each). When groups span whole registers, one accumulator per group is scaled
// once; when a register holds several groups, its lanes take their group's scale (lane_runs);
// any other group size (96 codes: the default for 576-wide layers, such as SmolLM2's) gives each
// block of a register its group's scale, from a per-phase lane index (lane_blocks): the pattern
// of groups over registers repeats every lcm(group, register) codes.
// The shift term is Σ_g h_g Σ_{k in g} x_k, from x's group sums.
#pragma once

#include <xmmintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/ref/tiled_ref.h"
#include "kernels/x86/bf16_simd.h"
#include "kernels/x86/static_rows.h"

namespace quanto::kernels::simd {

// Batches up to this many rows run the GEMV kernels (weights decoded once per register, every
// row of x multiplied against them); larger ones the GEMM (gemm_simd.h).
inline constexpr int64_t kGemvMaxRows = 8;

// Software prefetch into L2 of the same offset kPrefetchRows rows ahead, once per 64-byte line
// of each row stream: with several row streams interleaved the hardware prefetcher alone left
// one core well below its read bandwidth on weights larger than the LLC.
inline constexpr int64_t kPrefetchRows = 16;
inline void prefetch_l2(const void* p) { _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T1); }

template <class V, int Bits>
struct Slots {
  using Vec = V;
  using V_F = typename V::F;
  static constexpr int kLanes = V::kWidth;
  static constexpr int kSlots = 32 / Bits;
  static constexpr int64_t kBlockCodes = tile_block_codes(Bits);
  static constexpr int kBlocks = kLanes / 4;  // tiled blocks per register
  static constexpr int64_t kChunkBytes = V::kPackedBytes;
  static constexpr int64_t kChunkCodes = int64_t{kSlots} * kLanes;
  static_assert(kChunkBytes == 4 * kLanes && kChunkCodes == kBlocks * kBlockCodes, "a register is whole blocks");

  // The code (within its chunk) in slot j of lane l: lane l is dword l % 4 of block l / 4; slot j
  // is bit field j·Bits of that dword, i.e. byte j / (8 / Bits), field j % (8 / Bits) of it, and
  // the tiled layout puts field f of byte i at code f·16 + i of the block.
  static constexpr int64_t code(int j, int l) {
    const int per_byte = 8 / Bits;
    return (l / 4) * kBlockCodes + (j % per_byte) * 16 + 4 * (l % 4) + j / per_byte;
  }
  // Slot j decodes to code · 2^slot_exp(j).
  static constexpr int slot_exp(int j) { return j == kSlots - 1 ? 0 : j * Bits; }

  // AND masks of every slot but the top one, a register each (memory operands of the AND).
  struct Masks {
    alignas(64) uint32_t lane[kSlots][kLanes];
  };
  static constexpr Masks make_masks() {
    Masks m{};
    for (int j = 0; j < kSlots; ++j)
      for (int l = 0; l < kLanes; ++l) m.lane[j][l] = ((1u << Bits) - 1u) << (j * Bits);
    return m;
  }
  static constexpr Masks kMasks = make_masks();

  // Slot j of every lane as floats. Called with j a constant of a fully unrolled loop (the
  // kernels keep their accumulators in plain arrays indexed by unrolled loops: GCC keeps those
  // in registers, where accumulators captured by lambdas went through memory on every FMA).
  static typename V::F decode(decltype(V::load_packed(nullptr)) w, int j) {
    if (j == kSlots - 1) return V::template cvt_top<32 - Bits>(w);
    return V::cvt_masked(w, kMasks.lane[j]);
  }
};

// Power-of-two scaling of one row of x for kernels whose decoded weights carry a power-of-two
// factor: x · 2^P, with max|x| · 2^P near 2^62, keeps every product that matters a normal float
// (only terms below 2^-59 of the row's largest vanish into subnormals) and far from overflow,
// whatever the activations' magnitude. The result is multiplied back by post = 2^(bias - P); P
// is clamped so that 2^P and post are normal floats. Rows of zeros or with inf/NaN keep P = 0
// (non-finite values then propagate as in the reference).
struct RowScale {
  float x_factor, post;
};
// The row scale of a row whose largest |x| (NaN ignored) is amax.
inline RowScale row_scale_for(float amax, int bias) {
  int p = 0;
  if (amax > 0.0f && std::isfinite(amax)) {
    int e;
    std::frexp(amax, &e);
    p = 62 - e;
  }
  p = std::clamp(p, std::max(-126, bias - 126), std::min(127, bias + 126));
  return {std::ldexp(1.0f, p), std::ldexp(1.0f, bias - p)};
}
// The row scale of one row of x, its largest |x| found in vectors: max(|v|, acc) keeps acc where
// v is NaN, as the scalar comparison of the tail does.
template <class V>
RowScale row_scale(const float* x, int64_t K, int bias) {
  typename V::F acc = V::zero();
  int64_t k = 0;
  for (; k + V::kWidth <= K; k += V::kWidth) acc = V::max(V::abs(V::load(x + k)), acc);
  alignas(64) float lanes[V::kWidth];
  V::store(lanes, acc);
  float amax = 0.0f;
  for (const float a : lanes) amax = a > amax ? a : amax;
  for (; k < K; ++k) {
    const float a = std::fabs(x[k]);
    amax = a > amax ? a : amax;
  }
  return row_scale_for(amax, bias);
}

// Σ x over each group of x (groups of group_size, a multiple of V::kWidth), in vectors.
template <class V>
void group_sums(const float* x, int64_t group_size, int64_t groups, float* out) {
  for (int64_t g = 0; g < groups; ++g) {
    typename V::F acc = V::zero();
    for (int64_t k = g * group_size; k < (g + 1) * group_size; k += V::kWidth) acc = V::add(acc, V::load(x + k));
    out[g] = V::hsum(acc);
  }
}

// Float scratch of the calling thread, one buffer per Tag: the batch-1 GEMV runs ~150 times a
// thread in a small model's decode step, and allocating its copies of x each call cost ~1 us of
// a 576-wide layer's ~15.
template <int Tag>
float* thread_scratch(size_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer.data();
}

// One row of x (K values) in slot order, times scale · 2^-slot_exp(j) in slot j, zero-padded to
// whole chunks.
template <class V, int Bits>
void slot_order_x(const float* x, int64_t K, float scale, float* out) {
  using S = Slots<V, Bits>;
  static const auto index = [] {
    std::array<int, S::kChunkCodes> idx{};
    for (int j = 0; j < S::kSlots; ++j)
      for (int l = 0; l < S::kLanes; ++l) idx[j * S::kLanes + l] = static_cast<int>(S::code(j, l));
    return idx;
  }();
  float factor[S::kSlots];
  for (int j = 0; j < S::kSlots; ++j) factor[j] = std::ldexp(scale, -S::slot_exp(j));
  for (int64_t c = 0; c < K; c += S::kChunkCodes) {
    const int64_t valid = std::min<int64_t>(S::kChunkCodes, K - c);
    for (int i = 0; i < S::kChunkCodes; ++i)
      out[c + i] = index[i] < valid ? x[c + index[i]] * factor[i / S::kLanes] : 0.0f;
  }
}

// Where a row's scales come from for one register of codes. Registers are walked in order with
// a cursor (a division per register would cost as much as its decoding).
template <class V, int Bits>
struct ScalePlan {
  using S = Slots<V, Bits>;
  enum Mode { kWhole, kRuns, kBlocks };
  // kBlocks: one phase per register of a period; its first group relative to the period's and,
  // per lane, the offset of the lane's group from that first group.
  struct Phase {
    int64_t g0;
    int span;  // groups the register touches
    alignas(64) int32_t lane_offset[S::kLanes];
  };
  int64_t group_size, groups;
  Mode mode;
  int64_t per_group = 1;  // kWhole: registers per group
  int runs = 1;           // kRuns: groups per register (lane runs)
  int64_t period_groups = 0;
  std::vector<Phase> phases;  // kBlocks: registers per period
  // kRuns, kBlocks: the last register of a row when it is short (K not a multiple of a
  // register): its lanes' groups from tail.g0, computed once here (at K = 576 with groups of 32
  // the per-row divisions this replaces cost more than the row's other registers together).
  // Lanes past K hold zero codes and take the row's last group.
  Phase tail{};
  ScalePlan(int64_t gs, int64_t K) : group_size(gs), groups(K / gs) {
    set_modes(gs);
    if (mode == kWhole) return;
    const int64_t start = K / S::kChunkCodes * S::kChunkCodes;
    tail.g0 = std::min(start / gs, groups - 1);
    int last = 0;
    for (int l = 0; l < S::kLanes; ++l) {
      const int64_t group = std::min((start + (l / 4) * S::kBlockCodes) / gs, groups - 1);
      tail.lane_offset[l] = static_cast<int32_t>(group - tail.g0);
      last = std::max(last, static_cast<int>(tail.lane_offset[l]));
    }
    tail.span = last + 1;
  }
  bool whole() const { return mode == kWhole; }

 private:
  void set_modes(int64_t gs) {
    if (gs % S::kChunkCodes == 0) {
      mode = kWhole;
      per_group = gs / S::kChunkCodes;
    } else if (S::kChunkCodes % gs == 0 && S::kChunkCodes / gs <= V::kMaxLaneRuns) {
      mode = kRuns;
      runs = static_cast<int>(S::kChunkCodes / gs);
    } else {
      mode = kBlocks;
      const int64_t period_codes = std::lcm(gs, S::kChunkCodes);
      period_groups = period_codes / gs;
      for (int64_t c = 0; c < period_codes / S::kChunkCodes; ++c) {
        Phase p{};
        p.g0 = c * S::kChunkCodes / gs;
        int last = 0;
        for (int l = 0; l < S::kLanes; ++l) {
          const int64_t first_code = c * S::kChunkCodes + (l / 4) * S::kBlockCodes;  // lane l: block l / 4
          p.lane_offset[l] = static_cast<int32_t>(first_code / gs - p.g0);
          last = std::max(last, static_cast<int>(p.lane_offset[l]));
        }
        p.span = last + 1;
        phases.push_back(p);
      }
    }
  }
};

// The scales of each register of a row, register after register.
template <class Plan>
struct GroupCursor {
  const Plan& plan;
  int64_t g = 0;  // the register's first group
  int64_t left;   // kWhole: registers left in the group
  size_t phase = 0;
  int64_t period_base = 0;
  explicit GroupCursor(const Plan& p) : plan(p), left(p.per_group) {}
  void next() {
    switch (plan.mode) {
      case Plan::kWhole:
        if (--left == 0) ++g, left = plan.per_group;
        break;
      case Plan::kRuns:
        g += plan.runs;
        break;
      case Plan::kBlocks:
        if (++phase == plan.phases.size()) phase = 0, period_base += plan.period_groups;
        g = period_base + plan.phases[phase].g0;
        break;
    }
  }
  // Lane scales of a full register, in a row whose scales start at row_scale.
  [[gnu::always_inline]] typename Plan::S::V_F lanes(const float* row_scale) const {
    switch (plan.mode) {
      case Plan::kWhole: return Plan::S::Vec::set1(row_scale[g]);
      case Plan::kRuns: return Plan::S::Vec::lane_runs(row_scale + g, plan.runs);
      default: {
        const auto& p = plan.phases[phase];
        return Plan::S::Vec::lane_blocks(row_scale + g, p.lane_offset, p.span);
      }
    }
  }
  // The same for the last register of a row, which may hold fewer groups (its missing codes are
  // 0: their lanes take any finite scale, here the row's last).
  typename Plan::S::V_F lanes_tail(const float* row_scale) const {
    if (plan.mode == Plan::kWhole) return lanes(row_scale);
    return Plan::S::Vec::lane_blocks(row_scale + plan.tail.g0, plan.tail.lane_offset, plan.tail.span);
  }
};

// The layout supports every group size of whole tiled blocks: groups of whole registers,
// registers of whole groups, or each block its group's scale.
template <class V, int Bits>
bool slot_gemv_supports(int64_t group_size) {
  return group_size % Slots<V, Bits>::kBlockCodes == 0;
}

// One register of codes per row, at byte offset off: Partial for the last, short register of a
// row (a masked load: nothing past the row is read), so full registers pay no test.
template <class V, bool Partial, int NR>
[[gnu::always_inline]] inline void load_rows(const uint8_t* rows, int64_t row_bytes, int64_t off,
                                             decltype(V::load_packed(nullptr)) (&w)[NR]) {
  if (off % 64 == 0)
    for (int r = 0; r < NR; ++r) prefetch_l2(rows + (r + kPrefetchRows) * row_bytes + off);
  for (int r = 0; r < NR; ++r)
    w[r] = Partial ? V::load_packed_partial(rows + r * row_bytes + off, row_bytes - off)
                   : V::load_packed(rows + r * row_bytes + off);
}

// acc[r] + odd[r] += Σ_j decode(w[r], j) · x[j] over one register of codes per row (batch 1):
// even slots into acc, odd ones into odd. One chain per row waited on the FMA's latency (four
// rows, four chains: one FMA a cycle at most, ~8 codes a cycle on Zen 4 with AVX2); two per row
// ran 12% more codes a cycle in isolation.
template <class V, int Bits, int NR>
[[gnu::always_inline]] inline void slot_fma_rows(const float* xc, const decltype(V::load_packed(nullptr)) (&w)[NR],
                                                 typename V::F (&acc)[NR], typename V::F (&odd)[NR]) {
  using S = Slots<V, Bits>;
#pragma GCC unroll 16
  for (int j = 0; j < S::kSlots; ++j) {
    const typename V::F xv = V::load(xc + j * S::kLanes);
    for (int r = 0; r < NR; ++r) {
      if (j % 2 == 0) acc[r] = V::fma(S::decode(w[r], j), xv, acc[r]);
      else odd[r] = V::fma(S::decode(w[r], j), xv, odd[r]);
    }
  }
}

// Batch 1, NR rows: Σ_k x_k · code_k · s_g per row (no shift term). xs in slot order.
template <class V, int Bits, int NR>
[[gnu::noinline]] void slot_dot_rows(const float* xs, const uint8_t* rows, int64_t row_bytes, int64_t K,
                                     const ScalePlan<V, Bits>& plan, const float* scale, float* dots) {
  using S = Slots<V, Bits>;
  using F = typename V::F;
  using Packed = decltype(V::load_packed(nullptr));
  F acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = V::zero();
  if (plan.whole()) {  // one accumulator per group, scaled once
    const int64_t per_group = plan.group_size / S::kChunkCodes;
    for (int64_t g = 0; g < plan.groups; ++g) {
      F gacc[NR], godd[NR];
      for (int r = 0; r < NR; ++r) gacc[r] = godd[r] = V::zero();
      for (int64_t c = g * per_group; c < (g + 1) * per_group; ++c) {
        Packed w[NR];
        load_rows<V, false, NR>(rows, row_bytes, c * S::kChunkBytes, w);
        slot_fma_rows<V, Bits, NR>(xs + c * S::kChunkCodes, w, gacc, godd);
      }
      for (int r = 0; r < NR; ++r)
        acc[r] = V::fma(V::add(gacc[r], godd[r]), V::set1(scale[r * plan.groups + g]), acc[r]);
    }
  } else {  // each register scaled lane by lane; the last may be short
    const int64_t full = K / S::kChunkCodes;
    GroupCursor<ScalePlan<V, Bits>> group(plan);
    for (int64_t c = 0; c < full; ++c, group.next()) {
      Packed w[NR];
      load_rows<V, false, NR>(rows, row_bytes, c * S::kChunkBytes, w);
      F cacc[NR], codd[NR];
      for (int r = 0; r < NR; ++r) cacc[r] = codd[r] = V::zero();
      slot_fma_rows<V, Bits, NR>(xs + c * S::kChunkCodes, w, cacc, codd);
      for (int r = 0; r < NR; ++r)
        acc[r] = V::fma(V::add(cacc[r], codd[r]), group.lanes(scale + r * plan.groups), acc[r]);
    }
    if (full * S::kChunkCodes < K) {
      Packed w[NR];
      load_rows<V, true, NR>(rows, row_bytes, full * S::kChunkBytes, w);
      F cacc[NR], codd[NR];
      for (int r = 0; r < NR; ++r) cacc[r] = codd[r] = V::zero();
      slot_fma_rows<V, Bits, NR>(xs + full * S::kChunkCodes, w, cacc, codd);
      for (int r = 0; r < NR; ++r)
        acc[r] = V::fma(V::add(cacc[r], codd[r]), group.lanes_tail(scale + r * plan.groups), acc[r]);
    }
  }
  for (int r = 0; r < NR; ++r) dots[r] = V::hsum(acc[r]);
}

// MB rows of x (slot order, ldx apart) × NR weight rows: the codes are decoded and scaled once
// per register and multiplied against every row of x.
template <class V, int Bits, int MB, int NR>
[[gnu::noinline]] void slot_dot_batch(const float* xs, int64_t ldx, const uint8_t* rows, int64_t row_bytes, int64_t K,
                                      const ScalePlan<V, Bits>& plan, const float* scale, float dots[][NR]) {
  using S = Slots<V, Bits>;
  using F = typename V::F;
  using Packed = decltype(V::load_packed(nullptr));
  F acc[MB][NR];
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) acc[m][r] = V::zero();
  const int64_t chunks = (K + S::kChunkCodes - 1) / S::kChunkCodes, full = K / S::kChunkCodes;
  GroupCursor<ScalePlan<V, Bits>> group(plan);
  for (int64_t c = 0; c < chunks; ++c, group.next()) {
    Packed w[NR];
    F sv[NR];
    if (c < full) {
      load_rows<V, false, NR>(rows, row_bytes, c * S::kChunkBytes, w);
      for (int r = 0; r < NR; ++r) sv[r] = group.lanes(scale + r * plan.groups);
    } else {
      load_rows<V, true, NR>(rows, row_bytes, c * S::kChunkBytes, w);
      for (int r = 0; r < NR; ++r) sv[r] = group.lanes_tail(scale + r * plan.groups);
    }
    const float* xc = xs + c * S::kChunkCodes;
#pragma GCC unroll 16
    for (int j = 0; j < S::kSlots; ++j) {
      F d[NR];
      for (int r = 0; r < NR; ++r) d[r] = V::mul(S::decode(w[r], j), sv[r]);
      for (int m = 0; m < MB; ++m) {
        const F xv = V::load(xc + m * ldx + j * S::kLanes);
        for (int r = 0; r < NR; ++r) acc[m][r] = V::fma(d[r], xv, acc[m][r]);
      }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < NR; ++r) dots[m][r] = V::hsum(acc[m][r]);
}

// Weight rows per pass for a batch of MB rows of x: accumulators MB × NR stay in registers.
template <class V>
constexpr int batch_rows(int MB) {
  if (V::kWidth >= 16) return MB <= 4 ? 4 : 2;
  return MB <= 4 ? 2 : 1;
}

// Σ_i a_i b_i, kWidth at a time (a serial scalar chain costs ~4 cycles an element).
template <class V>
float dot(const float* a, const float* b, int64_t n) {
  typename V::F acc = V::zero();
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) acc = V::fma(V::load(a + i), V::load(b + i), acc);
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return V::hsum(acc) + tail;
}

// out[r] = dot<V>(a + r * n, b, n) for NR rows of a, n apart, with the same arithmetic as dot<V>
// (equal results), the rows' chains interleaved: a row's sum alone is a chain of dependent adds
// and a horizontal sum, which at small n (18 groups of a 576-wide row) is latency, not work.
template <class V, int NR>
[[gnu::always_inline]] inline void dot_rows(const float* a, const float* b, int64_t n, float (&out)[NR]) {
  typename V::F acc[NR];
  for (int r = 0; r < NR; ++r) acc[r] = V::zero();
  int64_t i = 0;
  for (; i + V::kWidth <= n; i += V::kWidth) {
    const typename V::F bv = V::load(b + i);
    for (int r = 0; r < NR; ++r) acc[r] = V::fma(V::load(a + r * n + i), bv, acc[r]);
  }
  float tail[NR] = {};
  for (; i < n; ++i)
    for (int r = 0; r < NR; ++r) tail[r] += a[r * n + i] * b[i];
  for (int r = 0; r < NR; ++r) out[r] = V::hsum(acc[r]) + tail[r];
}

// Rows [n, n + rows) of a layer's scales and shifts (groups a row) as float: P = float ones as
// stored; a bf16 model's converted into params (2 * rows * groups floats, in L1) just before the
// block's codes are read, and the same rows kPrefetchRows ahead requested (at batch 1 a layer's
// parameters come from memory). Returns (scale, shift) of row n.
template <class V, class P>
[[gnu::always_inline]] inline std::pair<const float*, const float*> block_params(const P* scale, const P* shift,
                                                                                 int64_t n, int64_t rows,
                                                                                 int64_t groups, float* params) {
  if constexpr (std::is_same_v<P, float>) {
    return {scale + n * groups, shift + n * groups};
  } else {
    const int64_t count = rows * groups, ahead = (n + kPrefetchRows) * groups;
    for (int64_t i = 0; i < count; i += 64 / int64_t{sizeof(P)}) {
      prefetch_l2(scale + ahead + i);
      prefetch_l2(shift + ahead + i);
    }
    bf16_to_floats<V>(scale + n * groups, count, params);
    bf16_to_floats<V>(shift + n * groups, count, params + count);
    return {params, params + count};
  }
}

// Batch 1: one row of float x against rows [n_begin, n_end), four at a time. P: the storage of
// the scales and shifts, float or a bf16 model's own bf16; bf16 ones are converted a block of
// rows at a time into L1 (rows are contiguous, so a block's are one run) just before its codes
// are read, and prefetched kPrefetchRows rows ahead like the codes (at batch 1 a layer's
// parameters come from memory). The arithmetic after that is the same for both, so equal values
// give equal results. x's copies (slot order, group sums) live in the thread's scratch.
template <class V, int Bits, class P>
void qbits_gemv_row(const float* x, const uint8_t* tiled, int64_t group_size, const P* scale, const P* shift,
                    const float* bias, LinearShape s, float* y) {
  using S = Slots<V, Bits>;
  constexpr int NR = 4;
  constexpr bool kConvert = !std::is_same_v<P, float>;
  const int64_t K = s.K, row_bytes = tiled_row_bytes(Bits, K);
  const ScalePlan<V, Bits> plan(group_size, K);
  const int64_t groups = plan.groups;
  const int64_t ldx = (K + S::kChunkCodes - 1) / S::kChunkCodes * S::kChunkCodes;
  float* xs = thread_scratch<0>(static_cast<size_t>(ldx + groups + (kConvert ? 2 * NR * groups : 0)));
  float* xsum = xs + ldx;
  float* params = xsum + groups;
  const RowScale rs = row_scale<V>(x, K, 0);
  slot_order_x<V, Bits>(x, K, rs.x_factor, xs);
  group_sums<V>(x, group_size, groups, xsum);
  auto block = [&](auto nr, int64_t n) {
    constexpr int R = decltype(nr)::value;
    const auto [sc, sh] = block_params<V>(scale, shift, n, R, groups, params);
    float dots[R], terms[R];
    slot_dot_rows<V, Bits, R>(xs, tiled + n * row_bytes, row_bytes, K, plan, sc, dots);
    // The shift terms: converted ones (in L1) with the rows' chains interleaved; float ones row by
    // row: four rows' shifts read interleaved from memory cost ~15% of a 14336 x 4096 call
    // (AVX-512, groups of 32). Either way each row's arithmetic is dot<V>'s.
    if constexpr (kConvert) {
      dot_rows<V, R>(sh, xsum, groups, terms);
    } else {
      for (int r = 0; r < R; ++r) terms[r] = dot<V>(sh + r * groups, xsum, groups);
    }
    for (int r = 0; r < R; ++r) {
      const float v = dots[r] * rs.post - terms[r];
      y[n + r] = bias ? v + bias[n + r] : v;
    }
  };
  int64_t n = s.n_begin;
  for (; n + NR <= s.n_end; n += NR) block(std::integral_constant<int, NR>{}, n);
  for (; n < s.n_end; ++n) block(std::integral_constant<int, 1>{}, n);
}

// y[m, n] for rows [n_begin, n_end) and M <= kGemvMaxRows; plan must be supported.
template <class V, int Bits>
void linear_qbits_gemv(const float* x, const uint8_t* tiled, int64_t group_size, const float* scale,
                       const float* shift, const float* bias, LinearShape s, float* y) {
  if (s.M == 1) {
    qbits_gemv_row<V, Bits, float>(x, tiled, group_size, scale, shift, bias, s, y);
    return;
  }
  using S = Slots<V, Bits>;
  const int64_t K = s.K, M = s.M, row_bytes = tiled_row_bytes(Bits, K);
  const ScalePlan<V, Bits> plan(group_size, K);
  const int64_t groups = plan.groups;
  const int64_t ldx = (K + S::kChunkCodes - 1) / S::kChunkCodes * S::kChunkCodes;
  std::vector<float> xs(static_cast<size_t>(M * ldx)), xsum(static_cast<size_t>(M * groups)), post(M);
  for (int64_t m = 0; m < M; ++m) {
    const RowScale rs = row_scale<V>(x + m * K, K, 0);
    post[m] = rs.post;
    slot_order_x<V, Bits>(x + m * K, K, rs.x_factor, xs.data() + m * ldx);
    group_sums<V>(x + m * K, group_size, groups, xsum.data() + m * groups);
  }
  auto store = [&](int64_t m, int64_t n, float d) {
    const float v = d * post[m] - dot<V>(shift + n * groups, xsum.data() + m * groups, groups);
    y[m * s.N + n] = bias ? v + bias[n] : v;
  };
  auto run = [&](auto mb) {
    constexpr int MB = decltype(mb)::value, NR = batch_rows<V>(MB);
    int64_t n = s.n_begin;
    for (; n + NR <= s.n_end; n += NR) {
      float dots[MB][NR];
      slot_dot_batch<V, Bits, MB, NR>(xs.data(), ldx, tiled + n * row_bytes, row_bytes, K, plan, scale + n * groups,
                                      dots);
      for (int m = 0; m < MB; ++m)
        for (int r = 0; r < NR; ++r) store(m, n + r, dots[m][r]);
    }
    for (; n < s.n_end; ++n) {
      float dots[MB][1];
      slot_dot_batch<V, Bits, MB, 1>(xs.data(), ldx, tiled + n * row_bytes, row_bytes, K, plan, scale + n * groups,
                                     dots);
      for (int m = 0; m < MB; ++m) store(m, n, dots[m][0]);
    }
  };
  with_static_rows<2, kGemvMaxRows>(M, run);
}

}  // namespace quanto::kernels::simd
