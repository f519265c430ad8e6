// Kernel throughput per ISA (GB/s of input read), reference vs optimised variants.
// Run: build/quanto_kernel_bench   (part of `make bench`)
#include <benchmark/benchmark.h>

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

BENCHMARK(BM_absmax_rows_f32)->Apply(isa_args)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_symmetric_quantize_int8_f32)->Apply(isa_args)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_affine_quantize_int4_f32)->Apply(isa_args)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_pack_int4)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace quanto::kernels

BENCHMARK_MAIN();
