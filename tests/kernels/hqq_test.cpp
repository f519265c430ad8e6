// HQQ kernel against a plain loop of the same iteration (std::pow, division, one group at a
// time), and its promises: never worse than the start, iters = 0 is the identity, parameters
// rounded to the output precision, constant groups, early stop.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ref/hqq_ref.h"
#include "test_util.h"

namespace quanto::kernels {
namespace {

using testing::random_values;

struct Params {
  float scale, shift;
};

// minmax_scale_shift's start in float32 (no dtype rounding).
Params minmax_start(const float* x, int64_t n, int32_t code_max) {
  const auto [mn, mx] = std::minmax_element(x, x + n);
  float s = (*mx - *mn) / static_cast<float>(code_max);
  if (s == 0.0f) s = 1.0f;
  return {s, -*mn};
}

float plain_code(float x, Params p, int32_t code_max) {
  return std::min(std::max(std::nearbyint((x + p.shift) / p.scale), 0.0f), static_cast<float>(code_max));
}

double plain_sq_error(const float* x, int64_t n, Params p, int32_t code_max) {
  double e = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = x[i] - (plain_code(x[i], p, code_max) * p.scale - p.shift);
    e += d * d;
  }
  return e;
}

// The iteration as the paper writes it, one group, no shortcuts.
Params plain_hqq(const float* x, int64_t n, Params start, const HqqConfig& c) {
  Params cur = start, best = start;
  double best_err = plain_sq_error(x, n, start, c.code_max);
  double beta = c.beta;
  for (int it = 0; it < c.iters; ++it) {
    double sq = 0, sqq = 0, st = 0, sqt = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double q = plain_code(x[i], cur, c.code_max);
      const double d = x[i] - (q * cur.scale - cur.shift);
      const double a = std::fabs(d);
      const double mag = a > 0 ? std::max(a - std::pow(a, c.p - 1.0) / beta, 0.0) : 0.0;
      const double t = x[i] - (d < 0 ? -mag : mag);
      sq += q, sqq += q * q, st += t, sqt += q * t;
    }
    Params next{cur.scale, static_cast<float>((sq * cur.scale - st) / static_cast<double>(n))};
    if (c.optimize_scale) {
      const double den = static_cast<double>(n) * sqq - sq * sq;
      if (den > 1e-6 * static_cast<double>(n) * static_cast<double>(n)) {
        const double a = (static_cast<double>(n) * sqt - sq * st) / den;
        if (a > 0) next = {static_cast<float>(a), static_cast<float>(-(st - a * sq) / static_cast<double>(n))};
      }
    }
    const double err = plain_sq_error(x, n, next, c.code_max);
    cur = next;
    beta *= c.kappa;
    if (!(err < best_err)) break;
    best_err = err, best = next;
  }
  return best;
}

struct Case {
  int32_t code_max;
  int64_t group_size;
  bool optimize_scale;
};

class HqqVsPlain : public ::testing::TestWithParam<Case> {};

TEST_P(HqqVsPlain, SameErrorAsPlainLoopAndNeverWorseThanStart) {
  const Case k = GetParam();
  const int64_t groups = 24;
  auto x = random_values<float>(static_cast<size_t>(groups * k.group_size), 7u + static_cast<uint32_t>(k.group_size));
  // Heavy-tailed groups, where HQQ has something to do: a few outliers per group.
  for (size_t i = 0; i < x.size(); i += 37) x[i] *= 6.0f;
  HqqConfig c;
  c.code_max = k.code_max;
  c.optimize_scale = k.optimize_scale;
  std::vector<float> scale(groups), shift(groups), err(groups);
  std::vector<Params> start(groups);
  for (int64_t g = 0; g < groups; ++g) {
    start[g] = minmax_start(x.data() + g * k.group_size, k.group_size, k.code_max);
    scale[g] = start[g].scale, shift[g] = start[g].shift;
  }
  hqq_refine_ref(x.data(), groups, k.group_size, c, scale.data(), shift.data(), err.data());
  double got_total = 0, want_total = 0, start_total = 0;
  int improved = 0;
  for (int64_t g = 0; g < groups; ++g) {
    const float* xg = x.data() + g * k.group_size;
    const double got = plain_sq_error(xg, k.group_size, {scale[g], shift[g]}, k.code_max);
    const double want = plain_sq_error(xg, k.group_size, plain_hqq(xg, k.group_size, start[g], c), k.code_max);
    const double before = plain_sq_error(xg, k.group_size, start[g], k.code_max);
    // The kernel's reported error is the error of the parameters it returns.
    EXPECT_NEAR(err[g], got, 1e-4 * got + 1e-6) << "group " << g;
    EXPECT_LE(got, before * (1 + 1e-6)) << "group " << g << " ended worse than its start";
    EXPECT_GT(scale[g], 0.0f);
    improved += got < before * (1 - 1e-3);
    got_total += got, want_total += want, start_total += before;
  }
  // Same iteration: the same total error as the plain loop (a code may flip on a near-tie).
  EXPECT_NEAR(got_total, want_total, 0.01 * want_total);
  EXPECT_LT(got_total, start_total);
  EXPECT_GT(improved, groups / 2) << "HQQ improved too few groups";
}

INSTANTIATE_TEST_SUITE_P(Shapes, HqqVsPlain,
                         ::testing::Values(Case{15, 128, false}, Case{15, 64, true}, Case{3, 128, false},
                                           Case{3, 33, true}, Case{15, 257, false}, Case{15, 7, false}));

TEST(Hqq, OneUpdateMatchesPlainShift) {
  // One iteration from the same start: the shift differs from the std::pow loop only by the
  // polynomial pow's rounding.
  const int64_t gs = 128;
  auto x = random_values<float>(gs, 3u);
  HqqConfig c;
  c.code_max = 15;
  c.iters = 1;
  c.beta = 1.0f;  // a large threshold so the lp term matters
  const Params start = minmax_start(x.data(), gs, c.code_max);
  float s = start.scale, h = start.shift;
  hqq_refine_ref(x.data(), 1, gs, c, &s, &h, nullptr);
  const Params want = plain_hqq(x.data(), gs, start, c);
  EXPECT_EQ(s, want.scale);
  EXPECT_NEAR(h, want.shift, 1e-5f * std::fabs(want.shift) + 1e-6f);
}

TEST(Hqq, ZeroItersKeepsStart) {
  auto x = random_values<float>(3 * 64, 11u);
  HqqConfig c;
  c.code_max = 3;
  c.iters = 0;
  std::vector<float> s{0.5f, 1.0f, 2.0f}, h{1.0f, 2.0f, 3.0f};
  const auto s0 = s, h0 = h;
  hqq_refine_ref(x.data(), 3, 64, c, s.data(), h.data(), nullptr);
  EXPECT_EQ(s, s0);
  EXPECT_EQ(h, h0);
}

TEST(Hqq, ConstantGroupStaysExact) {
  std::vector<float> x(64, 0.25f);
  HqqConfig c;
  c.code_max = 15;
  c.optimize_scale = true;
  float s = 0.25f / 15, h = -0.25f, err = -1;
  hqq_refine_ref(x.data(), 1, 64, c, &s, &h, &err);
  EXPECT_GT(s, 0.0f);
  EXPECT_LE(err, 1e-10f);
  EXPECT_LE(plain_sq_error(x.data(), 64, {s, h}, 15), 1e-10);
}

TEST(Hqq, ParametersRoundedToOutputPrecision) {
  const int64_t gs = 64, groups = 8;
  auto x = random_values<float>(static_cast<size_t>(gs * groups), 5u);
  for (ParamPrecision prec : {ParamPrecision::bf16, ParamPrecision::fp16}) {
    HqqConfig c;
    c.code_max = 15;
    c.optimize_scale = true;
    c.precision = prec;
    std::vector<float> s(groups), h(groups);
    for (int64_t g = 0; g < groups; ++g) {
      const Params p = minmax_start(x.data() + g * gs, gs, 15);
      s[g] = round_param(p.scale, prec), h[g] = round_param(p.shift, prec);
    }
    hqq_refine_ref(x.data(), groups, gs, c, s.data(), h.data(), nullptr);
    for (int64_t g = 0; g < groups; ++g) {
      EXPECT_EQ(s[g], round_param(s[g], prec));
      EXPECT_EQ(h[g], round_param(h[g], prec));
    }
  }
}

TEST(Hqq, OptimizeScaleBeatsShiftOnlyOnHeavyTails) {
  // Outliers stretch min/max; refitting the scale recovers resolution for the bulk.
  const int64_t gs = 128, groups = 16;
  auto x = random_values<float>(static_cast<size_t>(gs * groups), 9u, 1.0f);
  for (size_t i = 0; i < x.size(); i += 61) x[i] *= 8.0f;
  double err[2] = {0, 0};
  for (int opt = 0; opt < 2; ++opt) {
    HqqConfig c;
    c.code_max = 3;
    c.optimize_scale = opt == 1;
    std::vector<float> s(groups), h(groups), e(groups);
    for (int64_t g = 0; g < groups; ++g) {
      const Params p = minmax_start(x.data() + g * gs, gs, 3);
      s[g] = p.scale, h[g] = p.shift;
    }
    hqq_refine_ref(x.data(), groups, gs, c, s.data(), h.data(), e.data());
    for (float v : e) err[opt] += v;
  }
  EXPECT_LT(err[1], err[0]);
}

}  // namespace
}  // namespace quanto::kernels

namespace quanto::kernels {
namespace {

class HqqPerIsa : public ::testing::TestWithParam<CpuIsa> {};

// Every ISA build of the loop against the baseline one: the same iteration with wider vectors
// (only the order of the float sums differs), so the same error to within rounding.
TEST_P(HqqPerIsa, MatchesBaselineBuild) {
  const HqqRefineFn fn = kernel_table(GetParam()).hqq_refine;
  for (int64_t gs : {7, 33, 64, 128, 257})
    for (bool opt : {false, true}) {
      const int64_t groups = 12;
      auto x = random_values<float>(static_cast<size_t>(groups * gs), static_cast<uint32_t>(gs) + 100u);
      HqqConfig c;
      c.code_max = 15;
      c.optimize_scale = opt;
      std::vector<float> s(groups), h(groups), e(groups);
      for (int64_t g = 0; g < groups; ++g) {
        const Params p = minmax_start(x.data() + g * gs, gs, 15);
        s[g] = p.scale, h[g] = p.shift;
      }
      auto s2 = s, h2 = h, e2 = e;
      hqq_refine_ref(x.data(), groups, gs, c, s.data(), h.data(), e.data());
      fn(x.data(), groups, gs, c, s2.data(), h2.data(), e2.data());
      double want = 0, got = 0;
      for (int64_t g = 0; g < groups; ++g) want += e[g], got += e2[g];
      EXPECT_NEAR(got, want, 0.01 * want) << isa_name(GetParam()) << " gs=" << gs << " opt=" << opt;
    }
}

INSTANTIATE_TEST_SUITE_P(Isas, HqqPerIsa, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<CpuIsa>& i) { return std::string(isa_name(i.param)); });

}  // namespace
}  // namespace quanto::kernels
