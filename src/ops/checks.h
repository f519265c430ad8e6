// Argument checks and output shapes shared by the CPU and Meta implementations, so both raise
// the same errors and agree on shapes. Sizes are SymInts: the Meta kernels run under
// torch.compile with symbolic shapes, and on real tensors a SymInt is just an int.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymBool.h>
#include <c10/core/SymInt.h>
#include <c10/util/Exception.h>

#include <optional>
#include <string_view>
#include <vector>

#include <quanto/qtype.h>

// TORCH_SYM_CHECK, but raising ValueError (a bad argument) instead of a plain RuntimeError.
#define QUANTO_SYM_CHECK_VALUE(cond, ...) TORCH_CHECK_VALUE((cond).expect_true(__FILE__, __LINE__), __VA_ARGS__)

namespace quanto::ops {

using SymSizes = std::vector<c10::SymInt>;

// A checked qtype name; `op` prefixes the error message.
const QType& checked_qtype(const char* op, std::string_view name);
// A qtype of 2 or 4 bits (affine codes, packing).
const QType& checked_affine_qtype(const char* op, std::string_view name);
int64_t checked_bits(const char* op, int64_t bits);

// float32, bfloat16 or float16, non-empty.
void check_float(const char* op, const char* arg, const at::Tensor& t);
void check_dtype(const char* op, const char* arg, const at::Tensor& t, c10::ScalarType expected);
void check_nonempty(const char* op, const char* arg, const at::Tensor& t);
void check_same_device(const char* op, const at::Tensor& a, const char* arg_b, const at::Tensor& b);

// Normalises a quantization axis to 0 or -1 (ndim - 1 becomes -1); needs 2 or more dims.
int64_t checked_axis(const char* op, int64_t ndim, int64_t axis);
// Per-axis or grouped parameter layout of x along `axis` (0 or -1).
struct Grouping {
  int64_t axis;                    // 0 or -1
  std::optional<int64_t> group_size;
  SymSizes data_sizes;             // the (grouped) layout codes live in
  SymSizes param_sizes;            // scale/shift shape
  c10::SymInt rows, cols;          // data as a 2-D block
};
Grouping grouping_for(const char* op, c10::SymIntArrayRef x_sizes, int64_t axis,
                      std::optional<int64_t> group_size);
// Checks that a parameter tensor has the expected shape, naming it in the error.
void check_param_shape(const char* op, const char* arg, const at::Tensor& p, const SymSizes& expected,
                       std::string_view what);

// Shapes of the ops' outputs.
SymSizes absmax_scale_sizes(const char* op, const at::Tensor& x, std::optional<int64_t> axis);
SymSizes packed_sizes(c10::SymIntArrayRef codes_sizes, int64_t bits);

// Linear ops: checks x [..., K] against W [N, K] and returns y's sizes [..., N].
SymSizes linear_out_sizes(const char* op, const at::Tensor& x, const c10::SymInt& K, const c10::SymInt& N);
// One scale per output channel ([N] or [N, 1]) or one per tensor.
void check_channel_scale(const char* op, const char* arg, const at::Tensor& scale, const c10::SymInt& N);
void check_bias(const char* op, const std::optional<at::Tensor>& bias, const c10::SymInt& N);
// Shared by linear_qbits' CPU and Meta: checks packed/scale/shift and returns N.
c10::SymInt qbits_out_features(const char* op, const at::Tensor& x, const at::Tensor& packed,
                               const at::Tensor& scale, const at::Tensor& shift, int64_t bits,
                               int64_t group_size);
// int8 activation codes with a scale per tensor or per row of x, and a float output dtype.
void check_int8_activations(const char* op, const at::Tensor& x_data, const at::Tensor& x_scale,
                            c10::ScalarType out_dtype);
void check_w8a8(const char* op, const at::Tensor& x_data, const at::Tensor& x_scale,
                const at::Tensor& w_data, const at::Tensor& w_scale, c10::ScalarType out_dtype);

std::string sizes_str(c10::SymIntArrayRef sizes);
std::vector<int64_t> concrete(const SymSizes& s);

}  // namespace quanto::ops
