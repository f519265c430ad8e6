// Kernel throughput per ISA (GB/s of input read), reference vs optimised variants.
// The linear kernels run single-threaded over every output channel, so at batches of 1-8 rows their
// GB/s (bytes of packed weights + scales + shifts per call / time) compare with BM_read_bandwidth,
// one core's read rate; prefill rows (M = 32, 128) report GFLOPS.
// Run: build/quanto_kernel_bench   (part of `make bench`; --benchmark_filter=linear for those alone)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <memory>
#include <string>
#include <type_traits>
#include <random>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/ref/pack_ref.h"

namespace quanto::kernels {
namespace {

constexpr int64_t kRows = 4096, kCols = 4096;  // 64 MiB of float: larger than the LLC

const std::vector<float>& input() {
  static const std::vector<float> x = [] {
    std::mt19937 gen(0);
    std::normal_distribution<float> d;
    std::vector<float> v(static_cast<size_t>(kRows * kCols));
    for (auto& f : v) f = d(gen);
    return v;
  }();
  return x;
}

void BM_absmax_rows_f32(benchmark::State& state) {
  const KernelTable& t = kernel_table(static_cast<CpuIsa>(state.range(0)));
  state.SetLabel(isa_name(t.isa));
  std::vector<float> amax(kRows);
  for (auto _ : state) {
    t.f32.absmax_rows(input().data(), kRows, kCols, amax.data());
    benchmark::DoNotOptimize(amax.data());
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 4);
}

void BM_symmetric_quantize_int8_f32(benchmark::State& state) {
  const KernelTable& t = kernel_table(static_cast<CpuIsa>(state.range(0)));
  state.SetLabel(isa_name(t.isa));
  std::vector<float> scale(kRows, 0.03f);
  std::vector<int8_t> q(static_cast<size_t>(kRows * kCols));
  for (auto _ : state) {
    t.f32.symmetric_quantize_int(input().data(), scale.data(), kPerRow, kRows, kCols, {-128, 127}, q.data());
    benchmark::DoNotOptimize(q.data());
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 4);
}

void BM_affine_quantize_int4_f32(benchmark::State& state) {
  const KernelTable& t = kernel_table(static_cast<CpuIsa>(state.range(0)));
  state.SetLabel(isa_name(t.isa));
  const int64_t groups = kRows * kCols / 128;
  std::vector<float> scale(groups, 0.2f), shift(groups, 1.5f);
  std::vector<uint8_t> q(static_cast<size_t>(kRows * kCols));
  for (auto _ : state) {
    t.f32.affine_quantize(input().data(), scale.data(), shift.data(), kPerRow, groups, 128, 15, q.data());
    benchmark::DoNotOptimize(q.data());
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols * 4);
}

void BM_pack_int4(benchmark::State& state) {
  std::vector<uint8_t> codes(static_cast<size_t>(kRows * kCols), 5), packed(codes.size() / 2);
  for (auto _ : state) {
    pack_ref(codes.data(), kRows, kCols, 4, 0, packed_rows(kRows, 4), packed.data());
    benchmark::DoNotOptimize(packed.data());
  }
  state.SetBytesProcessed(state.iterations() * kRows * kCols);
}

void isa_args(benchmark::internal::Benchmark* b) {
  for (CpuIsa isa : supported_isas()) b->Arg(static_cast<int>(isa));
}

// ---- linear kernels at batch 1, small batches and prefill on LLM-sized weights ----

// One core's read bandwidth: a sum over 256 MiB, larger than any cache.
void BM_read_bandwidth(benchmark::State& state) {
  std::vector<float> v(64ull << 20, 1.0f);
  for (auto _ : state) {
    float acc[16] = {};
    for (size_t i = 0; i < v.size(); i += 16)
      for (int j = 0; j < 16; ++j) acc[j] += v[i + j];
    benchmark::DoNotOptimize(acc);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(v.size() * 4));
}

// Random weights for an N x K layer in every layout the kernels read (built once per shape).
struct LinearData {
  int64_t N, K;
  static constexpr int64_t kGroup = 128;
  std::vector<int8_t> w8;
  std::vector<uint8_t> fp8, tiled4, tiled2, packed8a8;
  std::vector<float> scale;

  LinearData(int64_t n, int64_t k) : N(n), K(k) {
    std::mt19937 gen(0);
    std::uniform_int_distribution<int> byte(0, 255);
    w8.resize(static_cast<size_t>(N * K));
    fp8.resize(w8.size());
    for (size_t i = 0; i < w8.size(); ++i) {
      w8[i] = static_cast<int8_t>(byte(gen) - 128);
      fp8[i] = static_cast<uint8_t>(byte(gen) & 0x77);  // finite e4m3fn codes
    }
    std::vector<uint8_t> codes(w8.size());
    for (auto& c : codes) c = static_cast<uint8_t>(byte(gen) & 15);
    tiled4.resize(codes.size() / 2);
    tile_w4_ref(codes.data(), K, 0, N, tiled4.data());
    for (auto& c : codes) c &= 3;
    tiled2.resize(codes.size() / 4);
    tile_w2_ref(codes.data(), K, 0, N, tiled2.data());
    packed8a8.resize(static_cast<size_t>(w8a8_block_count(N) * w8a8_block_bytes(K)));
    pack_w8a8_ref(w8.data(), N, K, 0, w8a8_block_count(N), packed8a8.data());
    scale.assign(static_cast<size_t>(N), 0.01f);
  }
  int64_t scale_bytes() const { return N * 4; }
  // Per-group scales and shifts of the 2/4-bit layouts, made on first use per group size.
  struct GroupParams {
    int64_t group;
    std::vector<float> scale, shift;
    std::vector<bf16> scale_b16, shift_b16;  // a bf16 model's (the same values)
    int64_t bytes() const { return 2 * static_cast<int64_t>(scale.size()) * 4; }
  };
  const GroupParams& group_params(int64_t group) const {
    for (const auto& g : groups)
      if (g->group == group) return *g;
    auto g = std::make_unique<GroupParams>();
    g->group = group;
    g->scale.assign(static_cast<size_t>(N * K / group), 0.02f);
    g->shift.assign(g->scale.size(), 0.1f);
    for (size_t i = 0; i < g->scale.size(); ++i) {
      g->scale_b16.push_back(bf16_from_float(g->scale[i]));
      g->shift_b16.push_back(bf16_from_float(g->shift[i]));
    }
    groups.push_back(std::move(g));
    return *groups.back();
  }
  mutable std::vector<std::unique_ptr<GroupParams>> groups;
};

const LinearData& linear_data(int64_t N, int64_t K) {
  static std::vector<std::unique_ptr<LinearData>> cache;
  for (const auto& d : cache)
    if (d->N == N && d->K == K) return *d;
  cache.push_back(std::make_unique<LinearData>(N, K));
  return *cache.back();
}

template <typename T>
std::vector<T> activations(int64_t M, int64_t K) {
  std::mt19937 gen(1);
  std::normal_distribution<float> d;
  std::vector<T> x(static_cast<size_t>(M * K));
  for (auto& v : x) v = static_cast<T>(d(gen));
  return x;
}

// Args: ISA, N, K, M (rows of x; default 1). Labels name the ISA and the shape; bytes = weights +
// their parameters, read once per call whatever M.
struct LinearCase {
  const KernelTable& t;
  const LinearData& d;
  LinearShape s;
  explicit LinearCase(benchmark::State& state, int64_t M = 0)
      : t(kernel_table(static_cast<CpuIsa>(state.range(0)))),
        d(linear_data(state.range(1), state.range(2))),
        s{M > 0 ? M : state.range(3), d.K, d.N, 0, d.N} {
    state.SetLabel(std::string(isa_name(t.isa)) + " " + std::to_string(d.N) + "x" + std::to_string(d.K) +
                   " M=" + std::to_string(s.M));
  }
  // GFLOPS counter: prefill rows are compute-bound, bytes/s says little there.
  void count_flops(benchmark::State& state) const {
    state.counters["GFLOPS"] = benchmark::Counter(static_cast<double>(2 * s.M * s.N * s.K) * state.iterations() / 1e9,
                                                  benchmark::Counter::kIsRate);
  }
};

template <typename T>
std::vector<T> activation_rows(const LinearCase& c) {
  std::vector<T> x;
  for (float v : activations<float>(c.s.M, c.d.K)) {
    if constexpr (std::is_same_v<T, bf16>) x.push_back(bf16_from_float(v));
    else x.push_back(v);
  }
  return x;
}

void BM_linear_w8(benchmark::State& state) {
  LinearCase c(state);
  const auto x = activation_rows<float>(c);
  std::vector<float> y(static_cast<size_t>(c.s.M * c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_w8(x.data(), c.d.w8.data(), c.d.scale.data(), 1, nullptr, c.s, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K + c.d.scale_bytes()));
  c.count_flops(state);
}

void BM_linear_fp8(benchmark::State& state) {
  LinearCase c(state);
  const auto x = activation_rows<float>(c);
  std::vector<float> y(static_cast<size_t>(c.s.M * c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_fp8(x.data(), c.d.fp8.data(), Fp8Format::e4m3fn, c.d.scale.data(), 1, nullptr, c.s, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K + c.d.scale_bytes()));
  c.count_flops(state);
}

// W8 / FP8 on bf16 activations where the ISA has those kernels (the op layer's path for bf16 x,
// M >= 4).
void BM_linear_w8_bf16x(benchmark::State& state) {
  LinearCase c(state);
  if (c.t.linear.linear_w8_bf16x == nullptr) return state.SkipWithError("no bf16-activation W8 kernel on this ISA");
  const auto x = activation_rows<bf16>(c);
  std::vector<float> y(static_cast<size_t>(c.s.M * c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_w8_bf16x(x.data(), c.d.w8.data(), c.d.scale.data(), 1, nullptr, c.s, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K + c.d.scale_bytes()));
  c.count_flops(state);
}

void BM_linear_fp8_bf16x(benchmark::State& state) {
  LinearCase c(state);
  if (c.t.linear.linear_fp8_bf16x == nullptr) return state.SkipWithError("no bf16-activation FP8 kernel on this ISA");
  const auto x = activation_rows<bf16>(c);
  std::vector<float> y(static_cast<size_t>(c.s.M * c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_fp8_bf16x(x.data(), c.d.fp8.data(), Fp8Format::e4m3fn, c.d.scale.data(), 1, nullptr, c.s,
                                y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K + c.d.scale_bytes()));
  c.count_flops(state);
}

// W4 tiled (group 128, or 32 with the extra arg), on float activations and on bf16 activations
// where the ISA has that kernel. Args: ISA, N, K, M, group.
template <typename T>
void run_w4(benchmark::State& state) {
  LinearCase c(state);
  const int64_t group = state.range(4);
  const auto& gs = c.d.group_params(group);
  state.SetLabel(std::string(isa_name(c.t.isa)) + " " + std::to_string(c.d.N) + "x" + std::to_string(c.d.K) +
                 " M=" + std::to_string(c.s.M) + " g" + std::to_string(group));
  const auto x = activation_rows<T>(c);
  std::vector<float> y(static_cast<size_t>(c.s.M * c.d.N));
  for (auto _ : state) {
    if constexpr (std::is_same_v<T, bf16>)
      c.t.linear.linear_w4_tiled_bf16x(x.data(), c.d.tiled4.data(), group, gs.scale.data(), gs.shift.data(), nullptr,
                                       c.s, y.data());
    else
      c.t.linear.linear_w4_tiled(x.data(), c.d.tiled4.data(), group, gs.scale.data(), gs.shift.data(), nullptr, c.s,
                                 y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K / 2 + gs.bytes()));
  c.count_flops(state);
}

void BM_linear_w4_tiled(benchmark::State& state) { run_w4<float>(state); }

void BM_linear_w4_tiled_bf16x(benchmark::State& state) {
  if (kernel_table(static_cast<CpuIsa>(state.range(0))).linear.linear_w4_tiled_bf16x == nullptr)
    return state.SkipWithError("no bf16-activation W4 kernel on this ISA");
  run_w4<bf16>(state);
}

// "isa NxK gGROUP": a batch-1 case's label.
std::string gemv_label(const LinearCase& c, int64_t group) {
  return std::string(isa_name(c.t.isa)) + " " + std::to_string(c.d.N) + "x" + std::to_string(c.d.K) + " g" +
         std::to_string(group);
}

// n int8 activation codes in [-127, 127] (a quantized row, as quantize_per_token writes it).
std::vector<int8_t> int8_activations(int64_t n, uint32_t seed) {
  std::vector<int8_t> x(static_cast<size_t>(n));
  std::mt19937 gen(seed);
  for (auto& v : x) v = static_cast<int8_t>(static_cast<int>(gen() % 255) - 127);
  return x;
}

// Batch 1 with bf16 x and a bf16 model's scales and shifts (a decode step's 4-bit call, one
// thread, weights as warm as the cache keeps them). Args: ISA, N, K, 1, group.
void BM_linear_w4_gemv_bf16_params(benchmark::State& state) {
  LinearCase c(state);
  if (c.t.linear.linear_w4_gemv_bf16_params == nullptr)
    return state.SkipWithError("no bf16-parameter W4 GEMV on this ISA");
  const int64_t group = state.range(4);
  const auto& gs = c.d.group_params(group);
  state.SetLabel(gemv_label(c, group));
  const auto x = activation_rows<bf16>(c);
  std::vector<float> y(static_cast<size_t>(c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_w4_gemv_bf16_params(x.data(), c.d.tiled4.data(), group, gs.scale_b16.data(),
                                          gs.shift_b16.data(), nullptr, c.s, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K / 2 + gs.bytes() / 2));
  c.count_flops(state);
}

template <typename T>
void run_w2(benchmark::State& state) {
  LinearCase c(state);
  const auto& gs = c.d.group_params(LinearData::kGroup);
  const auto x = activation_rows<T>(c);
  std::vector<float> y(static_cast<size_t>(c.s.M * c.d.N));
  for (auto _ : state) {
    if constexpr (std::is_same_v<T, bf16>)
      c.t.linear.linear_w2_tiled_bf16x(x.data(), c.d.tiled2.data(), LinearData::kGroup, gs.scale.data(),
                                       gs.shift.data(), nullptr, c.s, y.data());
    else
      c.t.linear.linear_w2_tiled(x.data(), c.d.tiled2.data(), LinearData::kGroup, gs.scale.data(), gs.shift.data(),
                                 nullptr, c.s, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K / 4 + gs.bytes()));
  c.count_flops(state);
}

void BM_linear_w2_tiled(benchmark::State& state) { run_w2<float>(state); }

void BM_linear_w2_tiled_bf16x(benchmark::State& state) {
  if (kernel_table(static_cast<CpuIsa>(state.range(0))).linear.linear_w2_tiled_bf16x == nullptr)
    return state.SkipWithError("no bf16-activation W2 kernel on this ISA");
  run_w2<bf16>(state);
}

// Batch 1 with int8 x (dynamic activations) against 4-bit weights with a bf16 model's scales and
// shifts (a decode step's W4A8 call, one thread, weights as warm as the cache keeps them): the
// integer-dot counterpart of BM_linear_w4_gemv_bf16_params. Args: ISA, N, K, 1, group.
void BM_linear_w4a8_gemv_bf16_params(benchmark::State& state) {
  LinearCase c(state);
  if (c.t.linear.linear_w4a8_gemv_bf16_params == nullptr)
    return state.SkipWithError("no bf16-parameter W4A8 GEMV on this ISA");
  const int64_t group = state.range(4);
  const auto& gs = c.d.group_params(group);
  state.SetLabel(gemv_label(c, group));
  const std::vector<int8_t> x = int8_activations(c.d.K, 3);
  const float xs = 0.02f;
  std::vector<float> y(static_cast<size_t>(c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_w4a8_gemv_bf16_params(x.data(), &xs, 0, c.d.tiled4.data(), group, gs.scale_b16.data(),
                                            gs.shift_b16.data(), nullptr, c.s, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (c.d.N * c.d.K / 2 + gs.bytes() / 2));
  c.count_flops(state);
}

// W8A8 on the packed layout; Args: ISA, N, K, M (per-token activation scales).
void BM_linear_w8a8_packed(benchmark::State& state) {
  const int64_t M = state.range(3);
  LinearCase c(state, M);
  const std::vector<int8_t> x = int8_activations(M * c.d.K, 2);
  std::vector<float> xs(static_cast<size_t>(M), 0.02f), y(static_cast<size_t>(M * c.d.N));
  for (auto _ : state) {
    c.t.linear.linear_w8a8_packed(x.data(), xs.data(), 1, c.d.packed8a8.data(), c.d.scale.data(), 1, nullptr, c.s,
                                  y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * (static_cast<int64_t>(c.d.packed8a8.size()) + c.d.scale_bytes()));
  state.counters["GOPS"] = benchmark::Counter(static_cast<double>(2 * M * c.d.N * c.d.K) * state.iterations(),
                                              benchmark::Counter::kIsRate);
}

// The SIMD tiers only: the scalar references on 14336 x 4096 take seconds per call. Batches of
// 1-8 rows read the weights from DRAM (14336 x 4096, larger than the LLC); prefill rows (32,
// 128) are compute-bound, measured on 4096 x 4096.
constexpr int64_t kLinearShapes[][2] = {{4096, 4096}, {14336, 4096}};
void linear_args(benchmark::internal::Benchmark* b) {
  for (CpuIsa isa : supported_isas())
    if (isa != CpuIsa::generic) {
      for (const auto& nk : kLinearShapes) b->Args({static_cast<int>(isa), nk[0], nk[1], 1});
      for (int64_t M : {2, 8}) b->Args({static_cast<int>(isa), 14336, 4096, M});
      for (int64_t M : {32, 128}) b->Args({static_cast<int>(isa), 4096, 4096, M});
    }
}
// The W4 benches also run groups of 32 at batch 1 and 8.
void w4_args(benchmark::internal::Benchmark* b) {
  for (CpuIsa isa : supported_isas())
    if (isa != CpuIsa::generic) {
      for (const auto& nk : kLinearShapes) b->Args({static_cast<int>(isa), nk[0], nk[1], 1, 128});
      for (int64_t M : {2, 8}) b->Args({static_cast<int>(isa), 14336, 4096, M, 128});
      for (int64_t M : {1, 8}) b->Args({static_cast<int>(isa), 14336, 4096, M, 32});
      for (int64_t M : {32, 128}) b->Args({static_cast<int>(isa), 4096, 4096, M, 128});
    }
}
// SmolLM2's fused gate/up and its down projection (groups of 32, as its GGUF's), and a Llama
// MLP's widest layer.
void w4_gemv_bf16_args(benchmark::internal::Benchmark* b) {
  for (CpuIsa isa : supported_isas())
    if (isa != CpuIsa::generic)
      for (const auto& nk : {std::array<int64_t, 2>{3072, 576}, {576, 1536}, {14336, 4096}})
        b->Args({static_cast<int>(isa), nk[0], nk[1], 1, 32});
}
void w8a8_args(benchmark::internal::Benchmark* b) {
  for (CpuIsa isa : supported_isas())
    if (isa != CpuIsa::generic)
      for (const auto& nk : kLinearShapes)
        for (int64_t M : {1, 128}) b->Args({static_cast<int>(isa), nk[0], nk[1], M});
}

// ---- decode attention: one query per head against a bf16 cache, one thread over every item ----

// SmolLM2's heads (9 query heads on 3 kv heads, dim 64) and Llama-3-8B's (32 on 8, dim 128) at
// range(1) kept positions of a 4096-long static cache (the mask keeps a prefix). Bytes: the kept
// key and value rows, read once per kv head.
void BM_decode_attention_bf16(benchmark::State& state) {
  const KernelTable& t = kernel_table(static_cast<CpuIsa>(state.range(0)));
  state.SetLabel(isa_name(t.isa));
  const int64_t used = state.range(1), heads = state.range(2), kv_heads = state.range(3), dim = state.range(4);
  constexpr int64_t kCapacity = 4096;
  DecodeAttentionShape s{};
  s.batch = 1, s.heads = heads, s.kv_heads = kv_heads, s.kv_len = used, s.head_dim = s.v_dim = dim;
  s.q_b = heads * dim, s.q_h = dim;
  s.k_l = s.v_l = dim, s.k_h = s.v_h = kCapacity * dim, s.k_b = s.v_b = kv_heads * kCapacity * dim;
  s.chunk_len = used;  // one item per kv head, as the op layer makes them on one thread
  std::mt19937 gen(0);
  std::normal_distribution<float> d;
  auto values = [&](int64_t n) {
    std::vector<bf16> v(static_cast<size_t>(n));
    for (auto& e : v) e = bf16_from_float(d(gen));
    return v;
  };
  const auto q = values(heads * dim), k = values(kv_heads * kCapacity * dim), v = values(kv_heads * kCapacity * dim);
  std::vector<uint8_t> keep(kCapacity, 0);
  std::fill(keep.begin(), keep.begin() + used, uint8_t{1});
  DecodeAttentionMask m{};
  m.keep = keep.data(), m.keep_l = 1;
  std::vector<float> partial(static_cast<size_t>(s.items() * s.partial_floats()));
  const float scale = 0.125f;
  for (auto _ : state) {
    t.attention.decode_bf16(q.data(), k.data(), v.data(), m, scale, s, 0, s.items(), partial.data());
    benchmark::DoNotOptimize(partial.data());
  }
  state.SetBytesProcessed(state.iterations() * 2 * kv_heads * used * dim * 2);
}
void attention_args(benchmark::internal::Benchmark* b) {
  for (CpuIsa isa : supported_isas())
    for (int64_t used : {256, 2048}) {
      b->Args({static_cast<int>(isa), used, 9, 3, 64});
      b->Args({static_cast<int>(isa), used, 32, 8, 128});
    }
}

BENCHMARK(BM_absmax_rows_f32)->Apply(isa_args)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_symmetric_quantize_int8_f32)->Apply(isa_args)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_affine_quantize_int4_f32)->Apply(isa_args)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pack_int4)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_read_bandwidth)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_linear_w8)->Apply(linear_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_fp8)->Apply(linear_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w8_bf16x)->Apply(linear_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_fp8_bf16x)->Apply(linear_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w4_tiled)->Apply(w4_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w4_tiled_bf16x)->Apply(w4_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w4_gemv_bf16_params)->Apply(w4_gemv_bf16_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w4a8_gemv_bf16_params)->Apply(w4_gemv_bf16_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w2_tiled)->Apply(linear_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w2_tiled_bf16x)->Apply(linear_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_linear_w8a8_packed)->Apply(w8a8_args)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_decode_attention_bf16)->Apply(attention_args)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace quanto::kernels

BENCHMARK_MAIN();
