#include "ops/cpu/cpu_utils.h"

namespace quanto::ops::cpu {

at::Tensor grouped_2d(const at::Tensor& x, const Grouping& g) {
  const int64_t rows = g.rows.expect_int(), cols = g.cols.expect_int();
  if (g.axis == -1 && g.group_size) {
    // optimum-quanto's layout: group j of column d goes to column d * groups_per_col + j.
    const int64_t gs = *g.group_size, D = x.size(-1);
    return x.reshape({-1, gs, D}).permute({1, 2, 0}).reshape({rows, cols}).contiguous();
  }
  return x.contiguous().view({rows, cols});
}

at::Tensor ungrouped(const at::Tensor& y2d, const Grouping& g, at::IntArrayRef shape) {
  if (g.axis == -1 && g.group_size) {
    const int64_t gs = *g.group_size, D = shape.back();
    return y2d.reshape({gs, D, -1}).permute({2, 0, 1}).reshape(shape).contiguous();
  }
  return y2d.view(shape);
}

}  // namespace quanto::ops::cpu
