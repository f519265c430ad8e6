// Decode attention: the reference (chunked, then merged) against a direct double-precision
// softmax, and every ISA build against the reference — float and bf16 caches, grouped-query
// heads, strided (padded) caches, boolean / per-head / additive masks, chunks of every size,
// fully masked queries and NaN.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/ref/attention_ref.h"
#include "test_util.h"

namespace quanto::kernels {
namespace {

using testing::random_values;

// A cache of `heads` heads x `len` positions x `dim` values, each position padded to `dim + pad`
// elements (a view into a larger buffer, as a static cache's slice can be).
struct Case {
  int64_t batch, heads, kv_heads, len, dim, pad, chunk;
};

struct Inputs {
  Case c;
  DecodeAttentionShape shape;
  std::vector<float> q, k, v;  // float values; converted per element type by `as`
  std::vector<uint8_t> keep;   // [batch, heads, len], or empty
  std::vector<float> bias;     // [batch, heads, len], or empty
  DecodeAttentionMask mask() const {
    DecodeAttentionMask m;
    if (!keep.empty()) m.keep = keep.data(), m.keep_b = c.heads * c.len, m.keep_h = c.len, m.keep_l = 1;
    if (!bias.empty()) m.bias = bias.data(), m.bias_b = c.heads * c.len, m.bias_h = c.len, m.bias_l = 1;
    return m;
  }
};

enum class MaskKind { none, shared_bool, per_head_bool, additive };

Inputs make_inputs(const Case& c, MaskKind kind, uint32_t seed) {
  Inputs in{c, {}, {}, {}, {}, {}, {}};
  const int64_t row = c.dim + c.pad;
  DecodeAttentionShape& s = in.shape;
  s.batch = c.batch, s.heads = c.heads, s.kv_heads = c.kv_heads, s.kv_len = c.len, s.head_dim = c.dim;
  s.v_dim = c.dim, s.chunk_len = c.chunk;
  s.q_b = c.heads * c.dim, s.q_h = c.dim;
  s.k_l = s.v_l = row, s.k_h = s.v_h = c.len * row, s.k_b = s.v_b = c.kv_heads * c.len * row;
  in.q = random_values<float>(static_cast<size_t>(c.batch * c.heads * c.dim), seed);
  in.k = random_values<float>(static_cast<size_t>(c.batch * c.kv_heads * c.len * row), seed + 1, 0.5f);
  in.v = random_values<float>(in.k.size(), seed + 2);
  const size_t n = static_cast<size_t>(c.batch * c.heads * c.len);
  std::mt19937 gen(seed + 3);
  if (kind == MaskKind::shared_bool || kind == MaskKind::per_head_bool) {
    in.keep.resize(n);
    for (int64_t b = 0; b < c.batch; ++b)
      for (int64_t h = 0; h < c.heads; ++h)
        for (int64_t l = 0; l < c.len; ++l) {
          const bool shared = kind == MaskKind::shared_bool;
          // shared: every head of a batch row sees the pattern of head 0.
          const uint32_t r = shared ? static_cast<uint32_t>((b * 131 + l * 7) % 5) : gen() % 5;
          in.keep[static_cast<size_t>((b * c.heads + h) * c.len + l)] = r != 0;
        }
  }
  if (kind == MaskKind::additive) {
    in.bias = random_values<float>(n, seed + 4, 2.0f);
    for (size_t i = 0; i < n; i += 3) in.bias[i] = -std::numeric_limits<float>::infinity();
  }
  return in;
}

template <typename T>
std::vector<T> as(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_float<T>(v[i]);
  return out;
}

// Runs every item of fn, then the merge into float [batch, heads, dim].
template <typename T>
std::vector<float> run(DecodeAttentionFn<T> fn, const Inputs& in, float scale) {
  const auto q = as<T>(in.q), k = as<T>(in.k), v = as<T>(in.v);
  const DecodeAttentionShape& s = in.shape;
  std::vector<float> partial(static_cast<size_t>(s.items() * s.partial_floats()), NAN);
  // Two calls over halves of the items, as two threads would.
  const int64_t half = s.items() / 2;
  fn(q.data(), k.data(), v.data(), in.mask(), scale, s, 0, half, partial.data());
  fn(q.data(), k.data(), v.data(), in.mask(), scale, s, half, s.items(), partial.data());
  std::vector<float> out(static_cast<size_t>(s.batch * s.heads * s.v_dim));
  decode_attention_merge(partial.data(), s, out.data());
  return out;
}

// Softmax attention in double, straight from the definition, on the same (element-rounded) values.
template <typename T>
std::vector<float> direct(const Inputs& in, float scale) {
  const auto q = as<T>(in.q), k = as<T>(in.k), v = as<T>(in.v);
  const DecodeAttentionShape& s = in.shape;
  const DecodeAttentionMask m = in.mask();
  std::vector<float> out(static_cast<size_t>(s.batch * s.heads * s.v_dim), 0.0f);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / s.group();
      std::vector<double> sc(static_cast<size_t>(s.kv_len), -INFINITY);
      double mx = -INFINITY;
      for (int64_t l = 0; l < s.kv_len; ++l) {
        if (m.keep && !m.keep[b * m.keep_b + h * m.keep_h + l]) continue;
        const double add = m.bias ? m.bias[b * m.bias_b + h * m.bias_h + l] : 0.0;
        if (std::isinf(add)) continue;
        double dot = 0;
        for (int64_t d = 0; d < s.head_dim; ++d)
          dot += double(to_float(q[b * s.q_b + h * s.q_h + d])) * to_float(k[b * s.k_b + g * s.k_h + l * s.k_l + d]);
        sc[static_cast<size_t>(l)] = dot * scale + add;
        mx = std::max(mx, sc[static_cast<size_t>(l)]);
      }
      double total = 0;
      std::vector<double> acc(static_cast<size_t>(s.v_dim), 0.0);
      for (int64_t l = 0; l < s.kv_len; ++l) {
        if (std::isinf(sc[static_cast<size_t>(l)])) continue;
        const double p = std::exp(sc[static_cast<size_t>(l)] - mx);
        total += p;
        for (int64_t e = 0; e < s.v_dim; ++e) acc[static_cast<size_t>(e)] += p * to_float(v[b * s.v_b + g * s.v_h + l * s.v_l + e]);
      }
      for (int64_t e = 0; e < s.v_dim; ++e)
        out[static_cast<size_t>((b * s.heads + h) * s.v_dim + e)] =
            total > 0 ? static_cast<float>(acc[static_cast<size_t>(e)] / total) : 0.0f;
    }
  return out;
}

void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1.0 + std::fabs(want[i]))) << what << " at " << i;
}

const Case kCases[] = {
    {1, 9, 3, 128, 64, 0, 128},  // SmolLM2's decode step, one chunk per kv head
    {2, 8, 2, 300, 64, 16, 64},  // padded cache rows, chunks with a short last one
    {1, 4, 4, 1, 16, 0, 1},      // one position
    {1, 6, 3, 37, 80, 3, 5},     // odd sizes, many chunks
    {3, 2, 1, 17, 7, 1, 4},      // head_dim below one vector
    {1, 8, 1, 50, 129, 0, 50},   // multi-query, head_dim past a vector
    {1, 10, 2, 70, 128, 0, 32},  // groups of 5 (head blocks of 4 + 1, 2 + 2 + 1), Llama's head_dim
    {2, 12, 4, 9, 48, 0, 9},     // head_dim of 3 zmm / 6 ymm, positions not a multiple of 4
};

// (A stream, not string +: GCC 12 flags chained std::string concatenation with a false -Wrestrict.)
std::string label(const Case& c, MaskKind kind, const char* prefix = "", const char* suffix = "") {
  std::ostringstream s;
  s << prefix << " B" << c.batch << " H" << c.heads << "/" << c.kv_heads << " L" << c.len << " D" << c.dim << " chunk"
    << c.chunk << " mask" << static_cast<int>(kind) << suffix;
  return s.str();
}

TEST(DecodeAttention, ReferenceMatchesDirectSoftmax) {
  for (const Case& c : kCases)
    for (MaskKind kind : {MaskKind::none, MaskKind::shared_bool, MaskKind::per_head_bool, MaskKind::additive}) {
      const Inputs in = make_inputs(c, kind, 7);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
      expect_close(run<float>(&decode_attention_ref<float>, in, scale), direct<float>(in, scale), 2e-5,
                   label(c, kind));
      expect_close(run<bf16>(&decode_attention_ref<bf16>, in, scale), direct<bf16>(in, scale), 2e-5,
                   label(c, kind, "", " bf16"));
    }
}

TEST(DecodeAttention, FullyMaskedQueryGivesZerosAndNanSpreads) {
  Inputs in = make_inputs({1, 2, 1, 20, 16, 0, 8}, MaskKind::shared_bool, 3);
  std::fill(in.keep.begin(), in.keep.begin() + 20, uint8_t{0});  // head 0 sees nothing
  const auto out = run<float>(&decode_attention_ref<float>, in, 0.25f);
  for (int64_t e = 0; e < 16; ++e) EXPECT_EQ(out[static_cast<size_t>(e)], 0.0f);
  in.k[6 * 16 + 3] = NAN;  // position 6, kept for head 1
  ASSERT_TRUE(in.keep[20 + 6]);
  for (CpuIsa isa : supported_isas()) {
    const auto nan_out = run<float>(kernel_table(isa).attention.decode_f32, in, 0.25f);
    EXPECT_TRUE(std::isnan(nan_out[16])) << isa_name(isa);
  }
}

class DecodeAttentionPerIsa : public ::testing::TestWithParam<CpuIsa> {};

// Each ISA build against the reference: the same sums in another order and a polynomial exp
// (relative error below 1e-6), so agreement to a few float ulps of the output's scale.
TEST_P(DecodeAttentionPerIsa, MatchesReference) {
  const AttentionKernels& t = kernel_table(GetParam()).attention;
  for (const Case& c : kCases)
    for (MaskKind kind : {MaskKind::none, MaskKind::shared_bool, MaskKind::per_head_bool, MaskKind::additive}) {
      const Inputs in = make_inputs(c, kind, 11);
      const float scale = 1.0f / std::sqrt(static_cast<float>(c.dim));
      const std::string what = label(c, kind, isa_name(GetParam()));
      expect_close(run<float>(t.decode_f32, in, scale), run<float>(&decode_attention_ref<float>, in, scale), 5e-6,
                   what);
      expect_close(run<bf16>(t.decode_bf16, in, scale), run<bf16>(&decode_attention_ref<bf16>, in, scale), 5e-6,
                   label(c, kind, isa_name(GetParam()), " bf16"));
    }
}

INSTANTIATE_TEST_SUITE_P(Isas, DecodeAttentionPerIsa, ::testing::ValuesIn(supported_isas()),
                         [](const ::testing::TestParamInfo<CpuIsa>& i) { return std::string(isa_name(i.param)); });

}  // namespace
}  // namespace quanto::kernels
