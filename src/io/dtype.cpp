// The safetensors dtype table: one row per dtype (name, element size).
#include <quanto/safetensors.h>

#include <array>

namespace quanto::safetensors {
namespace {

struct DtypeRow {
  Dtype dtype;
  std::string_view name;
  size_t size;
};

constexpr std::array<DtypeRow, 19> kDtypes{{
    {Dtype::BOOL, "BOOL", 1},          {Dtype::U8, "U8", 1},
    {Dtype::I8, "I8", 1},              {Dtype::F8_E5M2, "F8_E5M2", 1},
    {Dtype::F8_E4M3, "F8_E4M3", 1},    {Dtype::F8_E8M0, "F8_E8M0", 1},
    {Dtype::F8_E4M3FNUZ, "F8_E4M3FNUZ", 1}, {Dtype::F8_E5M2FNUZ, "F8_E5M2FNUZ", 1},
    {Dtype::I16, "I16", 2},            {Dtype::U16, "U16", 2},
    {Dtype::F16, "F16", 2},            {Dtype::BF16, "BF16", 2},
    {Dtype::I32, "I32", 4},            {Dtype::U32, "U32", 4},
    {Dtype::F32, "F32", 4},            {Dtype::F64, "F64", 8},
    {Dtype::I64, "I64", 8},            {Dtype::U64, "U64", 8},
    {Dtype::C64, "C64", 8},
}};

const DtypeRow& row(Dtype dtype) {
  const auto i = static_cast<size_t>(dtype);
  if (i >= kDtypes.size() || kDtypes[i].dtype != dtype) {
    throw std::invalid_argument("safetensors: invalid Dtype value " + std::to_string(i));
  }
  return kDtypes[i];
}

}  // namespace

size_t element_size(Dtype dtype) { return row(dtype).size; }

std::string_view dtype_name(Dtype dtype) { return row(dtype).name; }

std::optional<Dtype> dtype_from_name(std::string_view name) {
  for (const DtypeRow& r : kDtypes) {
    if (r.name == name) return r.dtype;
  }
  return std::nullopt;
}

uint64_t TensorEntry::numel() const {
  uint64_t n = 1;
  for (uint64_t d : shape) n *= d;  // parse() has checked that this does not overflow
  return n;
}

const TensorEntry* Header::find(std::string_view name) const {
  for (const TensorEntry& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace quanto::safetensors
