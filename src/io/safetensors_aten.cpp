// The ATen layer of the safetensors container: tensors viewing a shared mapping, and saving.
#include <quanto/safetensors_aten.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/util/Exception.h>

#include <cstring>

namespace quanto::safetensors {

struct File::State {
  MappedFile map;
  Header header;
};

File File::open(const std::string& path) {
  auto state = std::make_shared<State>();
  try {
    state->map = MappedFile::open(path);
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, "safetensors: ", e.what());
  }
  try {
    state->header = parse(state->map.data(), state->map.size());
  } catch (const FormatError& e) {
    TORCH_CHECK(false, "safetensors: ", path, ": not a valid safetensors file: ", e.what());
  }
  File f;
  f.state_ = std::move(state);
  return f;
}

const std::string& File::path() const { return state_->map.path(); }
const Header& File::header() const { return state_->header; }
const std::map<std::string, std::string>& File::metadata() const { return state_->header.metadata; }
bool File::contains(const std::string& name) const { return state_->header.find(name) != nullptr; }

std::vector<std::string> File::names() const {
  std::vector<std::string> out;
  out.reserve(state_->header.tensors.size());
  for (const TensorEntry& t : state_->header.tensors) out.push_back(t.name);
  return out;
}

at::Tensor File::tensor(const std::string& name) const {
  const TensorEntry* e = state_->header.find(name);
  TORCH_CHECK(e != nullptr, "safetensors: ", path(), ": no tensor named \"", name, "\" (the file holds ",
              state_->header.tensors.size(), " tensors)");
  std::vector<int64_t> sizes;
  sizes.reserve(e->shape.size());
  for (uint64_t d : e->shape) {
    // parse() bounds numel x element size by the file size, except when a dim is 0.
    TORCH_CHECK(d <= static_cast<uint64_t>(INT64_MAX), "safetensors: ", path(), ": tensor \"", name,
                "\" has a dimension too large for a tensor");
    sizes.push_back(static_cast<int64_t>(d));
  }
  const auto options = at::TensorOptions().dtype(to_scalar_type(e->dtype)).device(at::kCPU);
  uint8_t* ptr = const_cast<uint8_t*>(state_->map.data()) + state_->header.data_start + e->begin;
  if (e->nbytes() == 0) return at::empty(sizes, options);
  if (reinterpret_cast<uintptr_t>(ptr) % element_size(e->dtype) != 0) {
    at::Tensor out = at::empty(sizes, options);
    std::memcpy(out.data_ptr(), ptr, e->nbytes());
    return out;
  }
  // The mapping is private and writable (copy-on-write): in-place ops change memory, never the file.
  std::shared_ptr<const State> keep = state_;
  return at::from_blob(ptr, sizes, [keep](void*) mutable { keep.reset(); }, options);
}

c10::ScalarType to_scalar_type(Dtype dtype) {
  switch (dtype) {
    case Dtype::BOOL: return c10::ScalarType::Bool;
    case Dtype::U8: return c10::ScalarType::Byte;
    case Dtype::I8: return c10::ScalarType::Char;
    case Dtype::F8_E5M2: return c10::ScalarType::Float8_e5m2;
    case Dtype::F8_E4M3: return c10::ScalarType::Float8_e4m3fn;
    case Dtype::F8_E8M0: return c10::ScalarType::Float8_e8m0fnu;
    case Dtype::F8_E4M3FNUZ: return c10::ScalarType::Float8_e4m3fnuz;
    case Dtype::F8_E5M2FNUZ: return c10::ScalarType::Float8_e5m2fnuz;
    case Dtype::I16: return c10::ScalarType::Short;
    case Dtype::U16: return c10::ScalarType::UInt16;
    case Dtype::F16: return c10::ScalarType::Half;
    case Dtype::BF16: return c10::ScalarType::BFloat16;
    case Dtype::I32: return c10::ScalarType::Int;
    case Dtype::U32: return c10::ScalarType::UInt32;
    case Dtype::F32: return c10::ScalarType::Float;
    case Dtype::F64: return c10::ScalarType::Double;
    case Dtype::I64: return c10::ScalarType::Long;
    case Dtype::U64: return c10::ScalarType::UInt64;
    case Dtype::C64: return c10::ScalarType::ComplexFloat;
  }
  TORCH_CHECK(false, "safetensors: invalid Dtype value ", static_cast<int>(dtype));
}

Dtype from_scalar_type(c10::ScalarType type) {
  switch (type) {
    case c10::ScalarType::Bool: return Dtype::BOOL;
    case c10::ScalarType::Byte: return Dtype::U8;
    case c10::ScalarType::Char: return Dtype::I8;
    case c10::ScalarType::Float8_e5m2: return Dtype::F8_E5M2;
    case c10::ScalarType::Float8_e4m3fn: return Dtype::F8_E4M3;
    case c10::ScalarType::Float8_e8m0fnu: return Dtype::F8_E8M0;
    case c10::ScalarType::Float8_e4m3fnuz: return Dtype::F8_E4M3FNUZ;
    case c10::ScalarType::Float8_e5m2fnuz: return Dtype::F8_E5M2FNUZ;
    case c10::ScalarType::Short: return Dtype::I16;
    case c10::ScalarType::UInt16: return Dtype::U16;
    case c10::ScalarType::Half: return Dtype::F16;
    case c10::ScalarType::BFloat16: return Dtype::BF16;
    case c10::ScalarType::Int: return Dtype::I32;
    case c10::ScalarType::UInt32: return Dtype::U32;
    case c10::ScalarType::Float: return Dtype::F32;
    case c10::ScalarType::Double: return Dtype::F64;
    case c10::ScalarType::Long: return Dtype::I64;
    case c10::ScalarType::UInt64: return Dtype::U64;
    case c10::ScalarType::ComplexFloat: return Dtype::C64;
    default: break;
  }
  TORCH_CHECK(false, "safetensors cannot store dtype ", c10::toString(type));
}

void save(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
          const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> host;  // keeps the CPU contiguous copies alive while writing
  std::vector<TensorView> views;
  host.reserve(tensors.size());
  views.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    TORCH_CHECK(t.defined(), "safetensors: ", path, ": tensor \"", name, "\" is undefined");
    TORCH_CHECK(!t.is_sparse() && t.layout() == at::kStrided, "safetensors: ", path, ": tensor \"", name,
                "\" is not a dense strided tensor");
    const Dtype dtype = from_scalar_type(t.scalar_type());
    at::Tensor c = t.is_cpu() ? t : t.cpu();
    c = c.is_conj() ? c.resolve_conj() : c;
    c = c.is_neg() ? c.resolve_neg() : c;
    c = c.contiguous();
    host.push_back(c);
    TensorView v;
    v.name = name;
    v.dtype = dtype;
    for (int64_t d : c.sizes()) v.shape.push_back(static_cast<uint64_t>(d));
    v.data = c.numel() > 0 ? c.const_data_ptr() : nullptr;
    v.nbytes = c.nbytes();
    views.push_back(std::move(v));
  }
  try {
    write_file(path, views, metadata);
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "safetensors: cannot save ", path, ": ", e.what());
  }
}

}  // namespace quanto::safetensors
