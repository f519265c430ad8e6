#include "ops/checks.h"

#include <c10/core/SymBool.h>
#include <c10/util/Exception.h>

#include <sstream>

namespace quanto::ops {

std::string sizes_str(c10::SymIntArrayRef sizes) {
  std::ostringstream s;
  s << "[";
  for (size_t i = 0; i < sizes.size(); ++i) s << (i ? ", " : "") << sizes[i];
  s << "]";
  return s.str();
}

std::vector<int64_t> concrete(const SymSizes& s) {
  std::vector<int64_t> out;
  out.reserve(s.size());
  for (const auto& v : s) out.push_back(v.expect_int());
  return out;
}

const QType& checked_qtype(const char* op, std::string_view name) {
  const QType* q = find_qtype(name);
  if (q == nullptr)
    C10_THROW_ERROR(ValueError, c10::str(op, ": unknown qtype '", name, "'; valid qtypes: ", qtype_names()));
  return *q;
}

const QType& checked_affine_qtype(const char* op, std::string_view name) {
  const QType& q = checked_qtype(op, name);
  TORCH_CHECK_VALUE(!q.is_floating_point && (q.bits == 2 || q.bits == 4), op,
                    ": affine quantization needs qint2 or qint4, got ", q.name);
  return q;
}

int64_t checked_bits(const char* op, int64_t bits) {
  TORCH_CHECK_VALUE(bits == 2 || bits == 4, op, ": bits must be 2 or 4, got ", bits);
  return bits;
}

void check_nonempty(const char* op, const char* arg, const at::Tensor& t) {
  TORCH_CHECK_VALUE(t.sym_numel() != 0, op, ": ", arg, " is empty (shape ", sizes_str(t.sym_sizes()), ")");
}

void check_float(const char* op, const char* arg, const at::Tensor& t) {
  const auto d = t.scalar_type();
  TORCH_CHECK_TYPE(d == at::kFloat || d == at::kBFloat16 || d == at::kHalf, op, ": ", arg,
                   " must be float32, bfloat16 or float16, got ", d);
  check_nonempty(op, arg, t);
}

void check_dtype(const char* op, const char* arg, const at::Tensor& t, c10::ScalarType expected) {
  TORCH_CHECK_TYPE(t.scalar_type() == expected, op, ": ", arg, " must be ", expected, ", got ",
                   t.scalar_type());
}

void check_same_device(const char* op, const at::Tensor& a, const char* arg_b, const at::Tensor& b) {
  TORCH_CHECK_VALUE(a.device() == b.device(), op, ": ", arg_b, " is on ", b.device(),
                    " but the input is on ", a.device());
}

int64_t checked_axis(const char* op, int64_t nd, int64_t axis) {
  TORCH_CHECK_VALUE(nd >= 2, op, ": per-axis quantization needs a tensor of 2 or more dims, got ",
                    nd, "-d; use axis=None for per-tensor");
  TORCH_CHECK_VALUE(axis == 0 || axis == -1 || axis == nd - 1, op,
                    ": axis must be 0 (first dim) or -1 (last dim), got ", axis, " for a ", nd,
                    "-d tensor");
  return axis == 0 ? 0 : -1;
}

Grouping grouping_for(const char* op, c10::SymIntArrayRef x_sizes, int64_t axis,
                      std::optional<int64_t> group_size) {
  Grouping g;
  g.axis = axis;
  g.group_size = group_size;
  c10::SymInt numel = 1;
  for (const auto& s : x_sizes) numel = numel * s;
  const c10::SymInt D = axis == 0 ? x_sizes.front() : x_sizes.back();
  const c10::SymInt per_index = numel / D;  // elements sharing an index along the axis
  if (!group_size) {
    g.data_sizes = SymSizes(x_sizes.begin(), x_sizes.end());
    g.param_sizes = SymSizes(x_sizes.size(), 1);
    if (axis == 0) {
      g.param_sizes.front() = D;
      g.rows = D;
      g.cols = per_index;
    } else {
      g.param_sizes.back() = D;
      g.rows = per_index;
      g.cols = D;
    }
    return g;
  }
  const int64_t gs = *group_size;
  TORCH_CHECK_VALUE(gs > 0, op, ": group_size must be positive, got ", gs);
  QUANTO_SYM_CHECK_VALUE((per_index % gs).sym_eq(0), op, ": group_size ", gs, " does not divide the ",
                  per_index, " elements per index along axis ", axis, " (shape ",
                  sizes_str(x_sizes), ")");
  const c10::SymInt groups = numel / gs;
  if (axis == 0) {
    g.data_sizes = {groups, gs};
    g.param_sizes = {groups, 1};
    g.rows = groups;
    g.cols = gs;
  } else {
    g.data_sizes = {gs, groups};
    g.param_sizes = {1, groups};
    g.rows = gs;
    g.cols = groups;
  }
  return g;
}

void check_param_shape(const char* op, const char* arg, const at::Tensor& p, const SymSizes& expected,
                       std::string_view what) {
  bool same = static_cast<size_t>(p.dim()) == expected.size();
  for (size_t i = 0; same && i < expected.size(); ++i)
    same = p.sym_size(static_cast<int64_t>(i)).sym_eq(expected[i]).guard_bool(__FILE__, __LINE__);
  TORCH_CHECK_VALUE(same, op, ": ", arg, " must have shape ", sizes_str(expected), " for ", what,
                    ", got ", sizes_str(p.sym_sizes()));
}

SymSizes absmax_scale_sizes(const char* op, const at::Tensor& x, std::optional<int64_t> axis) {
  if (!axis) return {};
  const int64_t a = checked_axis(op, x.dim(), *axis);
  SymSizes s(static_cast<size_t>(x.dim()), 1);
  if (a == 0) s.front() = x.sym_size(0);
  else s.back() = x.sym_size(-1);
  return s;
}

SymSizes packed_sizes(c10::SymIntArrayRef codes_sizes, int64_t bits) {
  const int64_t k = 8 / bits;
  SymSizes s(codes_sizes.begin(), codes_sizes.end());
  s.front() = (s.front() + (k - 1)) / k;
  return s;
}

SymSizes linear_out_sizes(const char* op, const at::Tensor& x, const c10::SymInt& K, const c10::SymInt& N) {
  TORCH_CHECK_VALUE(x.dim() >= 1, op, ": x must have at least 1 dim");
  QUANTO_SYM_CHECK_VALUE(x.sym_size(-1).sym_eq(K), op, ": x has ", x.sym_size(-1),
                  " features in its last dim but the weight has ", K, " in_features");
  SymSizes out(x.sym_sizes().begin(), x.sym_sizes().end());
  out.back() = N;
  return out;
}

void check_channel_scale(const char* op, const char* arg, const at::Tensor& scale, const c10::SymInt& N) {
  check_float(op, arg, scale);
  const c10::SymInt n = scale.sym_numel();
  const bool per_tensor = n.sym_eq(1).guard_bool(__FILE__, __LINE__);
  TORCH_CHECK_VALUE(per_tensor || n.sym_eq(N).guard_bool(__FILE__, __LINE__), op, ": ", arg,
                    " must hold 1 value or one per output channel (", N, "), got shape ",
                    sizes_str(scale.sym_sizes()));
}

void check_bias(const char* op, const std::optional<at::Tensor>& bias, const c10::SymInt& N) {
  if (!bias) return;
  check_float(op, "bias", *bias);
  TORCH_CHECK_VALUE(bias->dim() == 1 && bias->sym_size(0).sym_eq(N).guard_bool(__FILE__, __LINE__), op,
                    ": bias must have shape [", N, "], got ", sizes_str(bias->sym_sizes()));
}

c10::SymInt qbits_out_features(const char* op, const at::Tensor& x, const at::Tensor& packed,
                               const at::Tensor& scale, const at::Tensor& shift, int64_t bits,
                               int64_t group_size) {
  checked_bits(op, bits);
  check_float(op, "x", x);
  check_dtype(op, "w_packed", packed, at::kByte);
  TORCH_CHECK_VALUE(packed.dim() == 2, op, ": w_packed must be 2-d [packed rows, group_size], got ",
                    sizes_str(packed.sym_sizes()));
  TORCH_CHECK_VALUE(group_size > 0, op, ": group_size must be positive, got ", group_size);
  QUANTO_SYM_CHECK_VALUE(packed.sym_size(1).sym_eq(group_size), op, ": w_packed has ", packed.sym_size(1),
                  " columns but group_size is ", group_size);
  const c10::SymInt K = x.sym_size(-1);
  QUANTO_SYM_CHECK_VALUE((K % group_size).sym_eq(0), op, ": group_size ", group_size,
                  " does not divide in_features ", K);
  check_float(op, "w_scale", scale);
  const c10::SymInt groups = scale.sym_numel();
  const c10::SymInt N = groups * group_size / K;
  QUANTO_SYM_CHECK_VALUE((groups * group_size % K).sym_eq(0), op, ": w_scale has ", groups,
                  " groups, which is not a whole number of rows of ", K, " in_features");
  TORCH_CHECK_VALUE(shift.scalar_type() == at::kByte || shift.is_floating_point(), op,
                    ": w_shift must be a float shift or a uint8 zero-point, got ", shift.scalar_type());
  QUANTO_SYM_CHECK_VALUE(shift.sym_numel().sym_eq(groups), op, ": w_shift has ", shift.sym_numel(),
                  " values but w_scale has ", groups);
  QUANTO_SYM_CHECK_VALUE(packed.sym_size(0).sym_eq((groups + (8 / bits - 1)) / (8 / bits)), op,
                  ": w_packed has ", packed.sym_size(0), " rows; ", groups, " groups of ", bits,
                  "-bit codes pack into ", (groups + (8 / bits - 1)) / (8 / bits));
  return N;
}

void check_int8_activations(const char* op, const at::Tensor& x_data, const at::Tensor& x_scale,
                            c10::ScalarType out_dtype) {
  check_dtype(op, "x_data", x_data, at::kChar);
  check_nonempty(op, "x_data", x_data);
  check_float(op, "x_scale", x_scale);
  const c10::SymInt rows = x_data.sym_numel() / x_data.sym_size(-1);
  TORCH_CHECK_VALUE(x_scale.sym_numel().sym_eq(1).guard_bool(__FILE__, __LINE__) ||
                        x_scale.sym_numel().sym_eq(rows).guard_bool(__FILE__, __LINE__),
                    op, ": x_scale must hold one value (static, per tensor) or one per row of x (dynamic, per token: ",
                    rows, "), got shape ", sizes_str(x_scale.sym_sizes()));
  TORCH_CHECK_TYPE(out_dtype == at::kFloat || out_dtype == at::kBFloat16 || out_dtype == at::kHalf,
                   op, ": out_dtype must be float32, bfloat16 or float16, got ", out_dtype);
}

void check_w8a8(const char* op, const at::Tensor& x_data, const at::Tensor& x_scale,
                const at::Tensor& w_data, const at::Tensor& w_scale, c10::ScalarType out_dtype) {
  check_int8_activations(op, x_data, x_scale, out_dtype);
  check_dtype(op, "w_data", w_data, at::kChar);
  TORCH_CHECK_VALUE(w_data.dim() == 2, op, ": w_data must be 2-d [N, K], got ", sizes_str(w_data.sym_sizes()));
  check_channel_scale(op, "w_scale", w_scale, w_data.sym_size(0));
}

}  // namespace quanto::ops
