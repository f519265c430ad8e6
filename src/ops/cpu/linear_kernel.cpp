// CPU: matmuls linear_qbytes / linear_qbits / linear_w8a8 / linear_w4a8_tiled (correctness first; the
// fast kernels replace the bodies, not the contracts).
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/ref/linear_ref.h"
#include "ops/cpu/cpu_utils.h"
#include "ops/generic/force_generic.h"
#include "ops/generic/generic_ops.h"
#include "ops/specs.h"

namespace quanto::ops::cpu {
namespace {

// t as a flat float tensor. Scales and shifts are held in the model's dtype (the file format's),
// so bf16 models convert them on every call. Small tensors take a plain loop, where
// at::Tensor::to's TensorIterator cost about as much as a small decode-time layer's x
// preparation; large ones (a 1.1B model's layers hold ~10^5 scales) keep ATen's vectorized,
// parallel conversion, which a single-threaded loop made several times slower.
at::Tensor as_float(const at::Tensor& t) {
  constexpr int64_t kPlainLoopMax = 16384;
  if (t.scalar_type() == at::kFloat) return t.contiguous().view(-1);
  if ((t.scalar_type() != at::kBFloat16 && t.scalar_type() != at::kHalf) || t.numel() > kPlainLoopMax)
    return t.to(at::kFloat).contiguous().view(-1);
  const at::Tensor tc = t.contiguous();
  at::Tensor out = at::empty({tc.numel()}, tc.options().dtype(at::kFloat));
  float* o = out.data_ptr<float>();
  const int64_t n = tc.numel();
  if (tc.scalar_type() == at::kBFloat16) {
    const at::BFloat16* p = tc.data_ptr<at::BFloat16>();
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(p[i]);
  } else {
    const at::Half* p = tc.data_ptr<at::Half>();
    for (int64_t i = 0; i < n; ++i) o[i] = static_cast<float>(p[i]);
  }
  return out;
}
// A 2/4-bit weight's shift as float; a zero-point becomes the equivalent float shift:
// (q - zp) * s = q * s - zp * s (scale: the weight's scale, already float).
at::Tensor float_shift(const at::Tensor& shift, const at::Tensor& scale) {
  return shift.scalar_type() == at::kByte ? as_float(shift).mul(scale) : as_float(shift);
}
const float* float_or_null(const std::optional<at::Tensor>& t) { return t ? t->data_ptr<float>() : nullptr; }
// Prefetches the cache lines of src's elements [begin, end).
void prefetch_range(const at::Tensor& src, int64_t begin, int64_t end) {
  const auto* p = static_cast<const char*>(src.const_data_ptr());
  const int64_t size = static_cast<int64_t>(src.element_size());
  for (int64_t byte = begin * size; byte < end * size; byte += 64) __builtin_prefetch(p + byte);
}

// dst[i - begin] = src[i] as float for i in [begin, end).
void to_float_range(const at::Tensor& src, int64_t begin, int64_t end, float* dst) {
  auto copy = [&](const auto* p) {
    for (int64_t i = begin; i < end; ++i) dst[i - begin] = static_cast<float>(p[i]);
  };
  switch (src.scalar_type()) {
    case at::kFloat: return copy(src.data_ptr<float>());
    case at::kBFloat16:  // in vectors: per call, a layer's rows of parameters
      return kernels::kernels().convert.from_bf16(data_as<const kernels::bf16>(src) + begin, dst, end - begin);
    case at::kHalf: return copy(src.data_ptr<at::Half>());
    case at::kByte: return copy(src.data_ptr<uint8_t>());
    default: TORCH_CHECK(false, "quanto: unsupported scale/shift dtype ", src.scalar_type());
  }
}

// A 2/4-bit weight's per-group scales and shifts as the float arrays the kernels read. In the
// model's dtype (bf16, fp16, or a uint8 zero-point) they are converted by the thread that uses
// them, rows [n0, n1) just before its kernel call: in parallel, and still in cache when read.
// A whole-tensor conversion up front (ATen's .to(), twice) cost about 6 us a call on SmolLM2's
// MLP layers, a third of their kernel time at batch 1.
class GroupParams {
 public:
  // whole_layer: convert into float arrays of the whole layer (rows()/scale()/shift()); without
  // it only rows_at() (into a caller's scratch) serves.
  GroupParams(const at::Tensor& scale, const at::Tensor& shift, int64_t groups, bool whole_layer = true)
      : scale_(scale.contiguous()), shift_(shift.contiguous()), groups_(groups),
        ready_(scale.scalar_type() == at::kFloat && shift.scalar_type() == at::kFloat) {
    if (ready_) {
      sf_ = scale_.view(-1), hf_ = shift_.view(-1);
    } else if (whole_layer) {
      sf_ = at::empty({scale_.numel()}, scale_.options().dtype(at::kFloat));
      hf_ = at::empty({shift_.numel()}, shift_.options().dtype(at::kFloat));
    }
  }
  // Makes rows [n0, n1) of scale()/shift() readable; call from the thread that then reads them.
  void rows(int64_t n0, int64_t n1) const {
    if (!ready_) convert(n0, n1, sf_.data_ptr<float>() + n0 * groups_, hf_.data_ptr<float>() + n0 * groups_);
  }
  const float* scale() const { return sf_.data_ptr<float>(); }
  const float* shift() const { return hf_.data_ptr<float>(); }
  // The stored (contiguous) tensors.
  const at::Tensor& scale_tensor() const { return scale_; }
  const at::Tensor& shift_tensor() const { return shift_; }
  // Floats of scratch that rows_at() needs for `rows` rows (none for float parameters).
  int64_t scratch_floats(int64_t rows) const { return ready_ ? 0 : 2 * rows * groups_; }
  // Rows [n0, n1) as float (scale, shift), indexed from row n0: the stored tensors for float
  // parameters, else converted into scratch (scratch_floats(n1 - n0) floats).
  std::pair<const float*, const float*> rows_at(int64_t n0, int64_t n1, float* scratch) const {
    if (ready_) return {scale() + n0 * groups_, shift() + n0 * groups_};
    float* hf = scratch + (n1 - n0) * groups_;
    convert(n0, n1, scratch, hf);
    return {scratch, hf};
  }
  // Both tensors are bf16 (a bf16 model's), which bf16_rows_at() then serves.
  bool bf16() const { return scale_.scalar_type() == at::kBFloat16 && shift_.scalar_type() == at::kBFloat16; }
  // The stored rows from n0 on as bf16 (scale, shift) when both tensors are bf16, else nulls.
  std::pair<const kernels::bf16*, const kernels::bf16*> bf16_rows_at(int64_t n0) const {
    if (!bf16()) return {nullptr, nullptr};
    return {data_as<const kernels::bf16>(scale_) + n0 * groups_, data_as<const kernels::bf16>(shift_) + n0 * groups_};
  }

 private:
  void convert(int64_t n0, int64_t n1, float* sf, float* hf) const {
    const int64_t b = n0 * groups_, e = n1 * groups_;
    // Every line requested before the conversion reads any: at batch 1 a layer's parameters come
    // from memory, and the plain loop waited on them a miss at a time.
    prefetch_range(scale_, b, e);
    prefetch_range(shift_, b, e);
    to_float_range(scale_, b, e, sf);
    to_float_range(shift_, b, e, hf);
    if (shift_.scalar_type() == at::kByte)  // a zero-point: (q - zp) * s = q * s - zp * s
      for (int64_t i = 0; i < e - b; ++i) hf[i] *= sf[i];
  }
  at::Tensor scale_, shift_, sf_, hf_;
  int64_t groups_;
  bool ready_;
};
std::optional<at::Tensor> float_bias(const std::optional<at::Tensor>& bias) {
  return bias ? std::optional<at::Tensor>(as_float(*bias)) : std::nullopt;
}

// Runs fn(shape) over output-channel ranges; y is [M, N].
template <typename Fn>
void over_channels(int64_t M, int64_t K, int64_t N, Fn&& fn) {
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(M * K, 1));
  parallel_rows(N, grain, [&](int64_t n0, int64_t n1) { fn(kernels::LinearShape{M, K, N, n0, n1}); });
}

// y[M, N] in out_dtype from kernels that write float: they write a float scratch tensor, and each
// thread converts the channels it computed while they are in its cache (the kernel table's
// vector conversion: rounding to nearest even, as ATen does). A separate y.to(out_dtype) was a
// second parallel pass through ATen's TensorIterator, about a tenth of a small decode-time
// linear layer; a scalar conversion loop, ~5% of a prefill layer at K = 384.
class FloatOutput {
 public:
  FloatOutput(int64_t M, int64_t N, at::IntArrayRef sizes, const at::TensorOptions& options,
              c10::ScalarType out_dtype)
      : M_(M), N_(N), yf_(at::empty(sizes, options.dtype(at::kFloat))) {
    TORCH_CHECK(out_dtype == at::kFloat || out_dtype == at::kBFloat16 || out_dtype == at::kHalf,
                "quanto: unsupported output dtype ", out_dtype);
    if (out_dtype != at::kFloat) y_ = at::empty(sizes, options.dtype(out_dtype));
  }
  float* data() { return yf_.data_ptr<float>(); }
  // Converts channels [n0, n1) of every row (nothing to do for a float output).
  void finish(int64_t n0, int64_t n1) {
    if (!y_.defined() || n1 <= n0) return;
    const float* f = yf_.data_ptr<float>();
    const kernels::ConvertKernels& cv = kernels::kernels().convert;
    for (int64_t m = 0; m < M_; ++m) {
      const int64_t at = m * N_ + n0;
      if (y_.scalar_type() == at::kBFloat16) cv.to_bf16(f + at, data_as<kernels::bf16>(y_) + at, n1 - n0);
      else cv.to_fp16(f + at, data_as<kernels::fp16>(y_) + at, n1 - n0);
    }
  }
  at::Tensor result() const { return y_.defined() ? y_ : yf_; }

 private:
  int64_t M_, N_;
  at::Tensor yf_, y_;
};

// fn(shape, y_float) over channel ranges, into y[M, N] in out_dtype (FloatOutput).
template <typename Fn>
at::Tensor over_channels_into(int64_t M, int64_t K, int64_t N, at::IntArrayRef sizes, const at::TensorOptions& options,
                              c10::ScalarType out_dtype, Fn&& fn) {
  FloatOutput out(M, N, sizes, options, out_dtype);
  over_channels(M, K, N, [&](kernels::LinearShape s) {
    fn(s, out.data());
    out.finish(s.n_begin, s.n_end);
  });
  return out.result();
}

// The fused kernels take float activations: x is converted once (M·K values, small next to the
// N·K weights it multiplies) and y converted back, in the op layer.
template <typename Kernel>
at::Tensor run_float_kernel(const at::Tensor& x, const TensorSpec& spec, int64_t K, int64_t N, Kernel kernel) {
  const at::Tensor xf = x.to(at::kFloat).contiguous();
  const int64_t M = xf.numel() / K;
  return over_channels_into(M, K, N, concrete(spec.sizes), x.options(), x.scalar_type(),
                            [&](kernels::LinearShape s, float* y) { kernel(xf.data_ptr<float>(), s, y); });
}

at::Tensor linear_qbytes(const at::Tensor& x, const at::Tensor& w_data, const at::Tensor& w_scale,
                         const std::optional<at::Tensor>& bias) {
  const TensorSpec spec = linear_qbytes_spec(x, w_data, w_scale, bias);
  const int64_t N = w_data.size(0), K = w_data.size(1), M = x.numel() / K;
  const at::Tensor wc = w_data.contiguous(), sc = as_float(w_scale);
  const auto bc = float_bias(bias);
  const int64_t stride = sc.numel() == 1 ? 0 : 1;
  const kernels::LinearKernels& table = kernels::kernels().linear;
  const bool int8 = wc.scalar_type() == at::kChar;
  const auto format = fp8_format(wc.scalar_type());
  const bool has_bf16_kernel = int8 ? table.linear_w8_bf16x != nullptr : table.linear_fp8_bf16x != nullptr;
  if (x.scalar_type() == at::kBFloat16 && M >= 2 && K % 32 == 0 && has_bf16_kernel) {
    // Batched bf16 activations: bf16 dot products on exactly converted 8-bit weights (batch 1,
    // bandwidth-bound, runs the float GEMV).
    const at::Tensor xb = x.contiguous();
    return over_channels_into(M, K, N, concrete(spec.sizes), x.options(), at::kBFloat16,
                              [&](kernels::LinearShape s, float* y) {
                                const auto* xd = data_as<const kernels::bf16>(xb);
                                if (int8)
                                  table.linear_w8_bf16x(xd, data_as<const int8_t>(wc), sc.data_ptr<float>(), stride,
                                                        float_or_null(bc), s, y);
                                else
                                  table.linear_fp8_bf16x(xd, data_as<const uint8_t>(wc), format, sc.data_ptr<float>(),
                                                         stride, float_or_null(bc), s, y);
                              });
  }
  return run_float_kernel(x, spec, K, N, [&](const float* xf, kernels::LinearShape s, float* y) {
    if (int8)
      table.linear_w8(xf, data_as<const int8_t>(wc), sc.data_ptr<float>(), stride, float_or_null(bc), s, y);
    else
      table.linear_fp8(xf, data_as<const uint8_t>(wc), format, sc.data_ptr<float>(), stride, float_or_null(bc), s, y);
  });
}

// One row of x against several int8 / float8 weights (a decode step's q/k/v or gate/up): x
// converted to float once, every part's rows split over the threads as one layer, each part
// writing its channels of y; other batches run linear_qbytes part by part into y's columns.
at::Tensor linear_qbytes_cat(const at::Tensor& x, at::TensorList w_data, at::TensorList w_scale,
                             const c10::List<std::optional<at::Tensor>>& bias) {
  const TensorSpec spec = linear_qbytes_cat_spec(x, w_data, w_scale, bias);
  const int64_t K = x.size(-1);
  if (x.numel() != K)
    return cat_parts(w_data.size(),
                     [&](size_t i) { return linear_qbytes(x, w_data[i], w_scale[i], bias_entry(bias, i)); });
  struct Part {
    at::Tensor w, scale;
    std::optional<at::Tensor> bias;
    int64_t first, rows;
  };
  std::vector<Part> parts;
  int64_t N = 0;
  for (size_t i = 0; i < w_data.size(); ++i) {
    parts.push_back({w_data[i].contiguous(), as_float(w_scale[i]), float_bias(bias_entry(bias, i)), N,
                     w_data[i].size(0)});
    N += w_data[i].size(0);
  }
  const kernels::LinearKernels& table = kernels::kernels().linear;
  return run_float_kernel(x, spec, K, N, [&](const float* xf, kernels::LinearShape s, float* y) {
    for (const Part& p : parts) {
      const int64_t n0 = std::max(s.n_begin, p.first), n1 = std::min(s.n_end, p.first + p.rows);
      if (n0 >= n1) continue;
      const kernels::LinearShape local{1, K, p.rows, n0 - p.first, n1 - p.first};
      const int64_t stride = p.scale.numel() == 1 ? 0 : 1;
      if (p.w.scalar_type() == at::kChar)
        table.linear_w8(xf, data_as<const int8_t>(p.w), p.scale.data_ptr<float>(), stride, float_or_null(p.bias),
                        local, y + p.first);
      else
        table.linear_fp8(xf, data_as<const uint8_t>(p.w), fp8_format(p.w.scalar_type()), p.scale.data_ptr<float>(),
                         stride, float_or_null(p.bias), local, y + p.first);
    }
  });
}

// The canonical packed 2/4-bit layout (weights whose groups do not fill the tiled layout's
// blocks, such as 2-bit groups of 96): blocks of rows are decoded to float, each weight once a
// call, and multiplied by ATen's float GEMM, accumulating in float as linear_qbits_ref does. The
// reference itself decodes every weight once per row of x (30 ms for a 1536 x 576 layer at 9
// rows, against well under 1 ms here).
at::Tensor linear_qbits(const at::Tensor& x, const at::Tensor& w_packed, const at::Tensor& w_scale,
                        const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                        const std::optional<at::Tensor>& bias) {
  const TensorSpec spec = linear_qbits_spec(x, w_packed, w_scale, w_shift, bits, group_size, bias);
  const int64_t K = x.size(-1), M = x.numel() / K, N = spec.sizes.back().expect_int();
  const at::Tensor xf = x.reshape({M, K}).to(at::kFloat).contiguous(), pc = w_packed.contiguous();
  const at::Tensor sc = as_float(w_scale), shc = float_shift(w_shift, sc);
  at::Tensor yf = at::empty({M, N}, x.options().dtype(at::kFloat));
  // Blocks of at most 16 MiB of float weights.
  const int64_t block = std::clamp<int64_t>((int64_t{1} << 22) / std::max<int64_t>(K, 1), 1, std::max<int64_t>(N, 1));
  at::Tensor w = at::empty({std::min(block, N), K}, xf.options());
  for (int64_t n0 = 0; n0 < N; n0 += block) {
    const int64_t nb = std::min(block, N - n0);
    at::Tensor wb = w.narrow(0, 0, nb);
    float* wd = wb.data_ptr<float>();
    parallel_rows(nb, std::max<int64_t>(1, 65536 / std::max<int64_t>(K, 1)), [&](int64_t r0, int64_t r1) {
      kernels::dequantize_qbits_rows_ref(data_as<const uint8_t>(pc), static_cast<int>(bits), group_size, N, K,
                                         sc.data_ptr<float>(), shc.data_ptr<float>(), n0 + r0, n0 + r1,
                                         wd + r0 * K);
    });
    yf.narrow(1, n0, nb).copy_(at::mm(xf, wb.t()));
  }
  if (bias) yf.add_(as_float(*bias));
  return yf.to(x.scalar_type()).reshape(concrete(spec.sizes));
}

// Rows of a decode-step range whose cache lines are requested up front (prefetch_head).
constexpr int64_t kGemvHeadRows = 16;

// One weight of a batch-1 call: its tiled codes, 2/4-bit parameters and bias, and where its bf16
// outputs go (rows = its output channels).
struct GemvPart {
  GemvPart(const at::Tensor& tiled, const at::Tensor& scale, const at::Tensor& shift,
           const std::optional<at::Tensor>& bias, int64_t groups, kernels::bf16* y)
      : tiled(tiled.contiguous()), params(scale, shift, groups, /*whole_layer=*/false),
        bias(bias ? bias->contiguous() : at::Tensor()), y(y), rows(tiled.size(0)) {}
  at::Tensor tiled;
  GroupParams params;
  at::Tensor bias;
  kernels::bf16* y;
  int64_t rows;
};

// The parts of a *_cat decode call, each writing its channels of y (bf16, one row) side by side.
std::vector<GemvPart> gemv_parts_of(const at::Tensor& y, at::TensorList w_tiled, at::TensorList w_scale,
                                    at::TensorList w_shift, const c10::List<std::optional<at::Tensor>>& bias,
                                    int64_t groups) {
  std::vector<GemvPart> parts;
  parts.reserve(w_tiled.size());
  kernels::bf16* yd = data_as<kernels::bf16>(y);
  for (size_t i = 0; i < w_tiled.size(); ++i) {
    parts.emplace_back(w_tiled[i], w_scale[i], w_shift[i], bias_entry(bias, i), groups, yd);
    yd += w_tiled[i].size(0);
  }
  return parts;
}

// One row of x (a decode step: K values, or their int8 codes) against the rows of every part,
// split over the threads as one layer (a thread's range may span parts). Each thread hands the
// kernel a layer of just its rows of a part, with float outputs (and bias) in scratch of its own,
// so a call allocates only the outputs. The whole-layer float parameters and output of the
// batched path were three allocations (and frees) a call, ~1 us of a small layer's ~10; separate
// calls for the parts (a layer's q, k and v) each paid a fork and join of the threads. A bf16
// model's scales and shifts go as stored to in_place(codes, scale, shift, bias, local shape, y)
// when the ISA has a kernel reading them so (has_in_place); otherwise each thread converts its
// rows first and calls kernel(...) with float ones.
template <typename InPlace, typename Kernel>
void gemv_parts(int64_t K, const std::vector<GemvPart>& parts, int64_t bits, int64_t group_size, bool has_in_place,
                InPlace in_place, Kernel kernel) {
  const int64_t row_bytes = K * bits / 8;
  int64_t N = 0;
  for (const GemvPart& p : parts) N += p.rows;
  // Rows [n0, n1) of part p.
  auto run = [&](const GemvPart& p, int64_t n0, int64_t n1) {
    const bool params_in_place = has_in_place && p.params.bf16();
    const int64_t rows = n1 - n0, params_floats = params_in_place ? 0 : p.params.scratch_floats(rows);
    thread_local std::vector<float> scratch;
    scratch.resize(static_cast<size_t>(params_floats + 2 * rows));
    float* yf = scratch.data() + params_floats;
    float* bf = p.bias.defined() ? yf + rows : nullptr;
    if (bf != nullptr) to_float_range(p.bias, n0, n1, bf);
    const uint8_t* codes = data_as<const uint8_t>(p.tiled) + n0 * row_bytes;
    const kernels::LinearShape local{1, K, rows, 0, rows};
    if (params_in_place) {
      const auto [sb, hb] = p.params.bf16_rows_at(n0);
      in_place(codes, sb, hb, bf, local, yf);
    } else {
      const auto [sf, hf] = p.params.rows_at(n0, n1, scratch.data());
      kernel(codes, sf, hf, bf, local, yf);
    }
    kernels::kernels().convert.to_bf16(yf, p.y + n0, rows);
  };
  // The first rows of a range, requested before their kernel starts: the kernels prefetch a fixed
  // distance ahead within their range, so without this each range began with a serial wait on
  // memory (at batch 1 a layer's weights are cold).
  auto prefetch_head = [&](const GemvPart& p, int64_t n0, int64_t n1) {
    const int64_t head = std::min(n1, n0 + kGemvHeadRows);
    prefetch_range(p.tiled, n0 * row_bytes, head * row_bytes);
    const int64_t groups = K / group_size;
    prefetch_range(p.params.scale_tensor(), n0 * groups, head * groups);
    prefetch_range(p.params.shift_tensor(), n0 * groups, head * groups);
  };
  over_channels(1, K, N, [&](kernels::LinearShape s) {
    struct Range {
      const GemvPart* part;
      int64_t n0, n1;
    };
    std::vector<Range> ranges;  // this thread's rows, part by part
    int64_t first = 0;          // the first of part p's rows in the whole [0, N)
    for (const GemvPart& p : parts) {
      const int64_t n0 = std::max(s.n_begin, first), n1 = std::min(s.n_end, first + p.rows);
      if (n0 < n1) ranges.push_back({&p, n0 - first, n1 - first});
      first += p.rows;
    }
    if (!ranges.empty()) prefetch_head(*ranges[0].part, ranges[0].n0, ranges[0].n1);
    for (size_t i = 0; i < ranges.size(); ++i) {
      if (i + 1 < ranges.size()) prefetch_head(*ranges[i + 1].part, ranges[i + 1].n0, ranges[i + 1].n1);
      run(*ranges[i].part, ranges[i].n0, ranges[i].n1);
    }
  });
}

// A decode step (one row of bf16 x) through the fused GEMV, for every part.
void decode_qbits_tiled(const at::Tensor& x, const std::vector<GemvPart>& parts, int64_t bits, int64_t group_size) {
  const kernels::LinearKernels& table = kernels::kernels().linear;
  const auto bf16_fn = bits == 4 ? table.linear_w4_tiled_bf16x : table.linear_w2_tiled_bf16x;
  const auto in_place_fn = bits == 4 ? table.linear_w4_gemv_bf16_params : nullptr;
  const auto* xd = data_as<const kernels::bf16>(x);
  auto in_place = [&](const uint8_t* codes, const kernels::bf16* sb, const kernels::bf16* hb, const float* bf,
                      kernels::LinearShape local, float* yf) {
    in_place_fn(xd, codes, group_size, sb, hb, bf, local, yf);
  };
  if (bf16_fn != nullptr) {
    gemv_parts(x.numel(), parts, bits, group_size, in_place_fn != nullptr, in_place,
               [&](const uint8_t* codes, const float* sf, const float* hf, const float* bf, kernels::LinearShape local,
                   float* yf) { bf16_fn(xd, codes, group_size, sf, hf, bf, local, yf); });
    return;
  }
  // No bf16-activation kernel: the float one, on x converted once, for the parts whose
  // parameters the bf16-parameter GEMV (which takes bf16 x) does not read in place.
  const auto float_fn = bits == 4 ? table.linear_w4_tiled : table.linear_w2_tiled;
  const bool all_in_place = in_place_fn != nullptr &&
                            std::all_of(parts.begin(), parts.end(), [](const GemvPart& p) { return p.params.bf16(); });
  const at::Tensor xf = all_in_place ? at::Tensor() : x.to(at::kFloat);
  gemv_parts(x.numel(), parts, bits, group_size, in_place_fn != nullptr, in_place,
             [&](const uint8_t* codes, const float* sf, const float* hf, const float* bf, kernels::LinearShape local,
                 float* yf) { float_fn(xf.data_ptr<float>(), codes, group_size, sf, hf, bf, local, yf); });
}

// Whether float, bf16 or fp16 x holds an infinity (one pass over its bits, which the compiler
// vectorizes: ~0.05 us for a 576-wide decode row). The fused 2/4-bit kernels compute
// sum(s * code * x) - h * sum(x) per group, which for an infinite x_k is inf - inf (NaN) where the
// dequantized weights' product gives +-inf; such calls take the device-generic path (dequantized
// weights and a matmul), whose results are the reference's.
template <typename U>
bool any_infinity(const U* p, int64_t n, U magnitude, U infinity) {
  bool found = false;
  for (int64_t i = 0; i < n; ++i) found |= (p[i] & magnitude) == infinity;
  return found;
}
bool has_infinity(const at::Tensor& x) {
  const at::Tensor xc = x.contiguous();
  switch (xc.scalar_type()) {
    case at::kFloat:
      return any_infinity<uint32_t>(data_as<const uint32_t>(xc), xc.numel(), 0x7fffffffu, 0x7f800000u);
    case at::kBFloat16:
      return any_infinity<uint16_t>(data_as<const uint16_t>(xc), xc.numel(), 0x7fff, 0x7f80);
    case at::kHalf:
      return any_infinity<uint16_t>(data_as<const uint16_t>(xc), xc.numel(), 0x7fff, 0x7c00);
    default:
      return false;
  }
}

bool is_decode_step(const at::Tensor& x) { return x.scalar_type() == at::kBFloat16 && x.numel() == x.size(-1); }

at::Tensor linear_qbits_tiled(const at::Tensor& x, const at::Tensor& w_tiled, const at::Tensor& w_scale,
                              const at::Tensor& w_shift, int64_t bits, int64_t group_size,
                              const std::optional<at::Tensor>& bias) {
  const TensorSpec spec = linear_qbits_tiled_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  if (has_infinity(x)) return generic::linear_qbits_tiled(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  const int64_t N = w_tiled.size(0), K = x.size(-1);
  if (is_decode_step(x)) {
    at::Tensor y = at::empty(concrete(spec.sizes), x.options());
    std::vector<GemvPart> parts;
    parts.emplace_back(w_tiled, w_scale, w_shift, bias, K / group_size, data_as<kernels::bf16>(y));
    decode_qbits_tiled(x.contiguous(), parts, bits, group_size);
    return y;
  }
  const at::Tensor tc = w_tiled.contiguous();
  const kernels::LinearKernels& table = kernels::kernels().linear;
  const auto bf16_fn = bits == 4 ? table.linear_w4_tiled_bf16x : table.linear_w2_tiled_bf16x;
  const auto float_fn = bits == 4 ? table.linear_w4_tiled : table.linear_w2_tiled;
  const GroupParams params(w_scale, w_shift, K / group_size);
  const auto bc = float_bias(bias);
  if (x.scalar_type() == at::kBFloat16 && bf16_fn != nullptr) {
    // bf16 activations go straight to the bf16 dot-product kernel (exact products, no conversion).
    const at::Tensor xc = x.contiguous();
    const int64_t M = xc.numel() / K;
    return over_channels_into(M, K, N, concrete(spec.sizes), x.options(), at::kBFloat16,
                              [&](kernels::LinearShape s, float* y) {
                                params.rows(s.n_begin, s.n_end);
                                bf16_fn(data_as<const kernels::bf16>(xc), data_as<const uint8_t>(tc), group_size,
                                        params.scale(), params.shift(), float_or_null(bc), s, y);
                              });
  }
  return run_float_kernel(x, spec, K, N, [&](const float* xf, kernels::LinearShape s, float* y) {
    params.rows(s.n_begin, s.n_end);
    float_fn(xf, data_as<const uint8_t>(tc), group_size, params.scale(), params.shift(), float_or_null(bc), s, y);
  });
}

// A decode step runs every part's rows in one pass (decode_qbits_tiled), each part writing its
// channels of y; larger batches are compute-bound and gain nothing from it, so they run
// linear_qbits_tiled part by part into y's columns.
at::Tensor linear_qbits_tiled_cat(const at::Tensor& x, at::TensorList w_tiled, at::TensorList w_scale,
                                  at::TensorList w_shift, int64_t bits, int64_t group_size,
                                  const c10::List<std::optional<at::Tensor>>& bias) {
  const TensorSpec spec = linear_qbits_tiled_cat_spec(x, w_tiled, w_scale, w_shift, bits, group_size, bias);
  if (!is_decode_step(x) || has_infinity(x))
    return cat_parts(w_tiled.size(), [&](size_t i) {
      return linear_qbits_tiled(x, w_tiled[i], w_scale[i], w_shift[i], bits, group_size, bias_entry(bias, i));
    });
  at::Tensor y = at::empty(concrete(spec.sizes), x.options());
  decode_qbits_tiled(x.contiguous(), gemv_parts_of(y, w_tiled, w_scale, w_shift, bias, x.size(-1) / group_size), bits,
                     group_size);
  return y;
}

// A decode step with int8 activations (one row of codes and its scale) against every part, into
// bf16 outputs: the W4A8 kernel through gemv_parts.
void decode_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const std::vector<GemvPart>& parts,
                       int64_t group_size) {
  const at::Tensor xc = x_data.contiguous(), xs = as_float(x_scale);
  const kernels::LinearKernels& table = kernels::kernels().linear;
  const auto fn = table.linear_w4a8_tiled;
  const auto in_place_fn = table.linear_w4a8_gemv_bf16_params;
  const auto* xd = data_as<const int8_t>(xc);
  const float* sd = xs.data_ptr<float>();
  gemv_parts(
      xc.numel(), parts, 4, group_size, in_place_fn != nullptr,
      [&](const uint8_t* codes, const kernels::bf16* sb, const kernels::bf16* hb, const float* bf,
          kernels::LinearShape local, float* yf) { in_place_fn(xd, sd, 0, codes, group_size, sb, hb, bf, local, yf); },
      [&](const uint8_t* codes, const float* sf, const float* hf, const float* bf, kernels::LinearShape local,
          float* yf) { fn(xd, sd, 0, codes, group_size, sf, hf, bf, local, yf); });
}

bool is_w4a8_decode_step(const at::Tensor& x_data, c10::ScalarType out_dtype) {
  return out_dtype == at::kBFloat16 && x_data.numel() == x_data.size(-1);
}

at::Tensor linear_w4a8_tiled(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_tiled,
                             const at::Tensor& w_scale, const at::Tensor& w_shift, int64_t group_size,
                             const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  const TensorSpec spec =
      linear_w4a8_tiled_spec(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype);
  const int64_t N = w_tiled.size(0), K = x_data.size(-1), M = x_data.numel() / K;
  if (is_w4a8_decode_step(x_data, out_dtype)) {
    at::Tensor y = at::empty(concrete(spec.sizes), x_data.options().dtype(out_dtype));
    std::vector<GemvPart> parts;
    parts.emplace_back(w_tiled, w_scale, w_shift, bias, K / group_size, data_as<kernels::bf16>(y));
    decode_w4a8_tiled(x_data, x_scale, parts, group_size);
    return y;
  }
  const at::Tensor xc = x_data.contiguous(), tc = w_tiled.contiguous();
  const at::Tensor xs = as_float(x_scale);
  const GroupParams params(w_scale, w_shift, K / group_size);
  const auto bc = float_bias(bias);
  const auto fn = kernels::kernels().linear.linear_w4a8_tiled;
  FloatOutput out(M, N, concrete(spec.sizes), x_data.options(), out_dtype);
  auto run = [&](kernels::LinearShape s) {
    params.rows(s.n_begin, s.n_end);
    fn(data_as<const int8_t>(xc), xs.data_ptr<float>(), xs.numel() == 1 ? 0 : 1, data_as<const uint8_t>(tc), group_size,
       params.scale(), params.shift(), float_or_null(bc), s, out.data());
    out.finish(s.n_begin, s.n_end);
  };
  if (M < kernels::kW4A8PrefillMinRows) {
    over_channels(M, K, N, run);
  } else {
    // Prefill: threads take whole blocks of channels (the VNNI kernel unpacks a block at a time).
    const int64_t blocks = (N + kernels::kW4A8ChannelBlock - 1) / kernels::kW4A8ChannelBlock;
    parallel_rows(blocks, 1, [&](int64_t b0, int64_t b1) {
      run(kernels::LinearShape{M, K, N, b0 * kernels::kW4A8ChannelBlock,
                               std::min(N, b1 * kernels::kW4A8ChannelBlock)});
    });
  }
  return out.result();
}

// A decode step runs every part's rows in one pass (decode_w4a8_tiled); larger batches part by
// part, as linear_qbits_tiled_cat.
at::Tensor linear_w4a8_tiled_cat(const at::Tensor& x_data, const at::Tensor& x_scale, at::TensorList w_tiled,
                                 at::TensorList w_scale, at::TensorList w_shift, int64_t group_size,
                                 const c10::List<std::optional<at::Tensor>>& bias, c10::ScalarType out_dtype) {
  const TensorSpec spec =
      linear_w4a8_tiled_cat_spec(x_data, x_scale, w_tiled, w_scale, w_shift, group_size, bias, out_dtype);
  if (!is_w4a8_decode_step(x_data, out_dtype))
    return cat_parts(w_tiled.size(), [&](size_t i) {
      return linear_w4a8_tiled(x_data, x_scale, w_tiled[i], w_scale[i], w_shift[i], group_size, bias_entry(bias, i),
                               out_dtype);
    });
  at::Tensor y = at::empty(concrete(spec.sizes), x_data.options().dtype(out_dtype));
  decode_w4a8_tiled(x_data, x_scale, gemv_parts_of(y, w_tiled, w_scale, w_shift, bias, x_data.size(-1) / group_size),
                    group_size);
  return y;
}

at::Tensor linear_w8a8(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_data,
                       const at::Tensor& w_scale, const std::optional<at::Tensor>& bias, c10::ScalarType out_dtype) {
  const TensorSpec spec = linear_w8a8_spec(x_data, x_scale, w_data, w_scale, bias, out_dtype);
  const int64_t N = w_data.size(0), K = w_data.size(1), M = x_data.numel() / K;
  const at::Tensor xc = x_data.contiguous(), wc = w_data.contiguous();
  const at::Tensor xs = as_float(x_scale), ws = as_float(w_scale);
  const auto bc = float_bias(bias);
  const auto fn = kernels::kernels().linear.linear_w8a8;
  return over_channels_into(M, K, N, concrete(spec.sizes), x_data.options(), out_dtype,
                            [&](kernels::LinearShape s, float* y) {
                              fn(data_as<const int8_t>(xc), xs.data_ptr<float>(), xs.numel() == 1 ? 0 : 1,
                                 data_as<const int8_t>(wc), ws.data_ptr<float>(), ws.numel() == 1 ? 0 : 1,
                                 float_or_null(bc), s, y);
                            });
}

at::Tensor pack_w8a8(const at::Tensor& w_data) {
  const TensorSpec spec = pack_w8a8_spec(w_data);
  const int64_t N = w_data.size(0), K = w_data.size(1);
  const at::Tensor wc = w_data.contiguous();
  at::Tensor packed = at::empty(concrete(spec.sizes), w_data.options().dtype(at::kByte));
  parallel_rows(kernels::w8a8_block_count(N), 1, [&](int64_t b0, int64_t b1) {
    kernels::pack_w8a8_ref(data_as<const int8_t>(wc), N, K, b0, b1, data_as<uint8_t>(packed));
  });
  return packed;
}

at::Tensor unpack_w8a8(const at::Tensor& w_packed, int64_t out_features, int64_t in_features) {
  const TensorSpec spec = unpack_w8a8_spec(w_packed, out_features, in_features);
  const at::Tensor pc = w_packed.contiguous();
  at::Tensor w = at::empty(concrete(spec.sizes), w_packed.options().dtype(at::kChar));
  parallel_rows(kernels::w8a8_block_count(out_features), 1, [&](int64_t b0, int64_t b1) {
    kernels::unpack_w8a8_ref(data_as<const uint8_t>(pc), out_features, in_features, b0, b1, data_as<int8_t>(w));
  });
  return w;
}

at::Tensor linear_w8a8_packed(const at::Tensor& x_data, const at::Tensor& x_scale, const at::Tensor& w_packed,
                              const at::Tensor& w_scale, int64_t out_features, const std::optional<at::Tensor>& bias,
                              c10::ScalarType out_dtype) {
  const TensorSpec spec = linear_w8a8_packed_spec(x_data, x_scale, w_packed, w_scale, out_features, bias, out_dtype);
  const int64_t N = out_features, K = x_data.size(-1), M = x_data.numel() / K;
  const at::Tensor xc = x_data.contiguous(), pc = w_packed.contiguous();
  const at::Tensor xs = as_float(x_scale), ws = as_float(w_scale);
  const auto bc = float_bias(bias);
  const auto fn = kernels::kernels().linear.linear_w8a8_packed;
  FloatOutput out(M, N, concrete(spec.sizes), x_data.options(), out_dtype);
  // Threads take whole 64-channel blocks.
  const int64_t blocks = kernels::w8a8_block_count(N);
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(M * K * kernels::kW8A8BlockN, 1));
  parallel_rows(blocks, grain, [&](int64_t b0, int64_t b1) {
    const kernels::LinearShape s{M, K, N, b0 * kernels::kW8A8BlockN, std::min(N, b1 * kernels::kW8A8BlockN)};
    fn(data_as<const int8_t>(xc), xs.data_ptr<float>(), xs.numel() == 1 ? 0 : 1, data_as<const uint8_t>(pc),
       ws.data_ptr<float>(), ws.numel() == 1 ? 0 : 1, float_or_null(bc), s, out.data());
    out.finish(s.n_begin, s.n_end);
  });
  return out.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(quanto, CPU, m) {
  // Each entry runs the device-generic implementation instead while the generic path is forced.
  using generic::CpuOrGeneric;
  m.impl("linear_qbytes", &CpuOrGeneric<&linear_qbytes, &generic::linear_qbytes>::call);
  m.impl("linear_qbits", &CpuOrGeneric<&linear_qbits, &generic::linear_qbits>::call);
  m.impl("linear_qbits_tiled", &CpuOrGeneric<&linear_qbits_tiled, &generic::linear_qbits_tiled>::call);
  m.impl("linear_qbits_tiled_cat",
         &CpuOrGeneric<&linear_qbits_tiled_cat, &generic::linear_qbits_tiled_cat>::call);
  m.impl("linear_qbytes_cat", &CpuOrGeneric<&linear_qbytes_cat, &generic::linear_qbytes_cat>::call);
  m.impl("linear_w4a8_tiled", &CpuOrGeneric<&linear_w4a8_tiled, &generic::linear_w4a8_tiled>::call);
  m.impl("linear_w4a8_tiled_cat", &CpuOrGeneric<&linear_w4a8_tiled_cat, &generic::linear_w4a8_tiled_cat>::call);
  m.impl("linear_w8a8", &CpuOrGeneric<&linear_w8a8, &generic::linear_w8a8>::call);
  m.impl("pack_w8a8", &CpuOrGeneric<&pack_w8a8, &generic::pack_w8a8>::call);
  m.impl("unpack_w8a8", &CpuOrGeneric<&unpack_w8a8, &generic::unpack_w8a8>::call);
  m.impl("linear_w8a8_packed", &CpuOrGeneric<&linear_w8a8_packed, &generic::linear_w8a8_packed>::call);
}


}  // namespace quanto::ops::cpu
