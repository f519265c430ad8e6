// Quantized types: what a weight or activation is stored as.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quanto {

struct QType {
  std::string_view name;
  int bits;
  bool is_floating_point;
  c10::ScalarType dtype;  // storage dtype of unpacked codes
  double qmin;            // smallest representable value (float8: -finfo.max)
  double qmax;            // largest representable value (float8: finfo.max)
};

inline constexpr QType qint2{"qint2", 2, false, c10::ScalarType::Char, -2, 1};
inline constexpr QType qint4{"qint4", 4, false, c10::ScalarType::Char, -8, 7};
inline constexpr QType qint8{"qint8", 8, false, c10::ScalarType::Char, -128, 127};
inline constexpr QType qfloat8_e4m3fn{"qfloat8_e4m3fn", 8, true, c10::ScalarType::Float8_e4m3fn, -448.0, 448.0};
inline constexpr QType qfloat8_e4m3fnuz{"qfloat8_e4m3fnuz", 8, true, c10::ScalarType::Float8_e4m3fnuz, -240.0, 240.0};
inline constexpr QType qfloat8_e5m2{"qfloat8_e5m2", 8, true, c10::ScalarType::Float8_e5m2, -57344.0, 57344.0};
// optimum-quanto's alias.
inline constexpr const QType& qfloat8 = qfloat8_e4m3fn;

// Every qtype, in a stable order (the alias "qfloat8" is not listed twice).
const std::vector<QType>& all_qtypes();

// The qtype called `name` (aliases included), or nullptr.
const QType* find_qtype(std::string_view name);

// Looks a qtype up by name ("qint4", "qfloat8", …). Throws c10::Error naming the valid names.
const QType& qtype_from_name(std::string_view name);

// "qint2, qint4, …": for error messages.
std::string qtype_names();

// optimum-quanto's default group size for 2/4-bit weights with `in_features` elements per
// output channel: 128, stepping down by 32 (not below 32) until it divides in_features;
// nullopt (one group per channel) when in_features <= 128 or no step divides it.
std::optional<int64_t> default_group_size(int64_t in_features);

}  // namespace quanto
