#include <quanto/qtype.h>

#include <c10/util/Exception.h>
#include <c10/util/StringUtil.h>

namespace quanto {

const std::vector<QType>& all_qtypes() {
  static const std::vector<QType> table{qint2, qint4, qint8, qfloat8_e4m3fn, qfloat8_e4m3fnuz,
                                        qfloat8_e5m2};
  return table;
}

const QType* find_qtype(std::string_view name) {
  if (name == "qfloat8") return &qfloat8;
  for (const QType& q : all_qtypes())
    if (q.name == name) return &q;
  return nullptr;
}

std::string qtype_names() {
  std::string s;
  for (const QType& q : all_qtypes()) s += std::string(s.empty() ? "" : ", ") + std::string(q.name);
  return s + ", qfloat8 (alias of qfloat8_e4m3fn)";
}

const QType& qtype_from_name(std::string_view name) {
  const QType* q = find_qtype(name);
  if (q == nullptr)
    C10_THROW_ERROR(ValueError, c10::str("unknown qtype '", name, "'; valid qtypes: ", qtype_names()));
  return *q;
}

std::optional<int64_t> default_group_size(int64_t in_features) {
  TORCH_CHECK_VALUE(in_features > 0, "default_group_size: in_features must be positive, got ", in_features);
  if (in_features <= 128) return std::nullopt;
  int64_t gs = 128;
  while (in_features % gs != 0 && gs > 32) gs -= 32;
  if (in_features % gs != 0) return std::nullopt;
  return gs;
}

}  // namespace quanto
