// Writing safetensors files: the header layout (what Python's safetensors writes: tensors by
// dtype alignment, largest first, then by name; JSON padded with spaces to a multiple of 8),
// then the data, streamed into an atomically replaced file.
#include <quanto/safetensors.h>

#include "atomic_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>

namespace quanto::safetensors {
namespace {

std::string json_string(const std::string& s, const char* what) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw std::invalid_argument(std::string("safetensors: ") + what + " is not valid UTF-8");
  }
}

// Rank of a dtype in the reference writer's order: increasing element size, and within one
// size the order of the format's dtype list, except that C64 comes first among 8-byte types.
int write_rank(Dtype d) {
  switch (d) {
    case Dtype::C64: return 2 * static_cast<int>(Dtype::F32) + 1;
    case Dtype::F64: case Dtype::I64: case Dtype::U64: return 2 * static_cast<int>(d) + 2;
    default: return 2 * static_cast<int>(d);
  }
}

}  // namespace

Layout layout(const std::vector<TensorView>& tensors, const std::map<std::string, std::string>& metadata) {
  Layout out;
  std::set<std::string_view> names;
  for (const TensorView& t : tensors) {
    if (t.name == "__metadata__") throw std::invalid_argument("safetensors: \"__metadata__\" is reserved, not a tensor name");
    if (!names.insert(t.name).second) {
      throw std::invalid_argument("safetensors: duplicate tensor name \"" + t.name + "\"");
    }
    uint64_t nbytes = element_size(t.dtype);
    for (uint64_t d : t.shape) {
      if (__builtin_mul_overflow(nbytes, d, &nbytes)) {
        throw std::invalid_argument("safetensors: tensor \"" + t.name + "\": shape x element size overflows 64 bits");
      }
    }
    if (nbytes != t.nbytes) {
      throw std::invalid_argument("safetensors: tensor \"" + t.name + "\": " + std::to_string(t.nbytes) +
                                  " bytes given, dtype x shape needs " + std::to_string(nbytes));
    }
    if (t.nbytes > 0 && t.data == nullptr) {
      throw std::invalid_argument("safetensors: tensor \"" + t.name + "\": null data");
    }
    out.order.push_back(&t);
  }
  // Largest alignment first; within one alignment the reference writer (Python's safetensors)
  // orders by its dtype enumeration, which `write_rank` reproduces, so both writers lay the
  // data buffer out identically.
  std::sort(out.order.begin(), out.order.end(), [](const TensorView* a, const TensorView* b) {
    const int ra = write_rank(a->dtype), rb = write_rank(b->dtype);
    if (ra != rb) return ra > rb;
    return a->name < b->name;
  });

  std::string json = "{";
  bool first = true;
  if (!metadata.empty()) {
    json += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) json += ',';
      first = false;
      json += json_string(k, "a metadata key");
      json += ':';
      json += json_string(v, "a metadata value");
    }
    json += '}';
    first = false;
  }
  uint64_t offset = 0;
  for (const TensorView* t : out.order) {
    if (!first) json += ',';
    first = false;
    json += json_string(t->name, "a tensor name");
    json += ":{\"dtype\":\"";
    json += dtype_name(t->dtype);
    json += "\",\"shape\":[";
    for (size_t i = 0; i < t->shape.size(); ++i) {
      if (i) json += ',';
      json += std::to_string(t->shape[i]);
    }
    json += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + t->nbytes) + "]}";
    offset += t->nbytes;
  }
  json += '}';
  json.append((8 - json.size() % 8) % 8, ' ');
  if (json.size() > kMaxHeaderSize) {
    throw std::invalid_argument("safetensors: header of " + std::to_string(json.size()) +
                                " bytes exceeds the format's limit of " + std::to_string(kMaxHeaderSize));
  }
  uint64_t n = json.size();
  out.header.resize(8);
  for (int i = 0; i < 8; ++i) out.header[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  out.header += json;
  return out;
}

void write_file(const std::string& path, const std::vector<TensorView>& tensors,
                const std::map<std::string, std::string>& metadata) {
  const Layout l = layout(tensors, metadata);  // validates before anything touches the disk
  io_detail::AtomicFile f(path);
  f.write(l.header.data(), l.header.size());
  for (const TensorView* t : l.order) f.write(t->data, t->nbytes);
  f.commit();
}

}  // namespace quanto::safetensors
