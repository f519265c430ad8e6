// Parsing and validation of a safetensors file image. Every rule of the format has its own
// message, so a user (and a test) can tell which one a file breaks.
#include <quanto/safetensors.h>

#include "json_guard.h"
#include "utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>

namespace quanto::safetensors {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& message) { throw FormatError(message); }
void fail_guard(const std::string& message) { fail(message); }

std::string quoted(const std::string& s) {
  // Names come from the file: keep messages printable and bounded.
  std::string q = "\"";
  for (size_t i = 0; i < s.size() && i < 200; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) {
      q += "\\x";
      const char* hex = "0123456789abcdef";
      q += hex[c >> 4];
      q += hex[c & 15];
    } else {
      q += static_cast<char>(c);
    }
  }
  if (s.size() > 200) q += "...";
  return q + "\"";
}

std::string describe_duplicate(size_t level, const std::string& owner, const std::string& key) {
  if (level == 1) {
    if (key == "__metadata__") return "header has more than one \"__metadata__\"";
    return "duplicate tensor name " + quoted(key) + " in header";
  }
  if (level == 2 && owner == "__metadata__") return "duplicate __metadata__ key " + quoted(key);
  if (level == 2) return "tensor " + quoted(owner) + ": duplicate field " + quoted(key);
  return "duplicate JSON key " + quoted(key) + " in header";
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

const json& field(const json& entry, const char* key, const std::string& name) {
  auto it = entry.find(key);
  if (it == entry.end()) fail("tensor " + quoted(name) + ": missing field \"" + key + "\"");
  return *it;
}

std::vector<uint64_t> unsigned_array(const json& value, const std::string& name, const char* key) {
  if (!value.is_array()) {
    fail("tensor " + quoted(name) + ": \"" + key + "\" is not an array");
  }
  std::vector<uint64_t> out;
  out.reserve(value.size());  // bounded by the header's size
  for (const json& v : value) {
    if (!v.is_number_unsigned()) {
      fail("tensor " + quoted(name) + ": \"" + key + "\" has a value that is not a non-negative integer: " +
           v.dump().substr(0, 40));
    }
    out.push_back(v.get<uint64_t>());
  }
  return out;
}

TensorEntry parse_entry(const std::string& name, const json& entry) {
  if (!entry.is_object()) fail("tensor " + quoted(name) + ": entry is not a JSON object");
  TensorEntry t;
  t.name = name;

  const json& dtype = field(entry, "dtype", name);
  if (!dtype.is_string()) fail("tensor " + quoted(name) + ": \"dtype\" is not a string");
  const std::string& dtype_str = dtype.get_ref<const std::string&>();
  const std::optional<Dtype> d = dtype_from_name(dtype_str);
  if (!d) {
    fail("tensor " + quoted(name) + ": unknown dtype " + quoted(dtype_str) +
         " (supported: BOOL U8 I8 F8_E5M2 F8_E4M3 F8_E8M0 F8_E4M3FNUZ F8_E5M2FNUZ I16 U16 F16 BF16 "
         "I32 U32 F32 F64 I64 U64 C64)");
  }
  t.dtype = *d;

  t.shape = unsigned_array(field(entry, "shape", name), name, "shape");
  uint64_t nbytes = element_size(t.dtype);
  for (uint64_t dim : t.shape) {
    if (__builtin_mul_overflow(nbytes, dim, &nbytes)) {
      fail("tensor " + quoted(name) + ": shape x element size overflows 64 bits");
    }
  }

  const std::vector<uint64_t> offsets = unsigned_array(field(entry, "data_offsets", name), name, "data_offsets");
  if (offsets.size() != 2) {
    fail("tensor " + quoted(name) + ": \"data_offsets\" must hold exactly 2 values [begin, end], got " +
         std::to_string(offsets.size()));
  }
  t.begin = offsets[0];
  t.end = offsets[1];
  if (t.end < t.begin) {
    fail("tensor " + quoted(name) + ": data_offsets end " + std::to_string(t.end) + " is before begin " +
         std::to_string(t.begin));
  }
  if (t.end - t.begin != nbytes) {
    fail("tensor " + quoted(name) + ": byte range of " + std::to_string(t.end - t.begin) +
         " bytes does not match dtype x shape (" + std::to_string(nbytes) + " bytes)");
  }
  return t;
}

}  // namespace

Header parse(const uint8_t* file, size_t size) {
  if (size < 8) {
    fail("file is shorter than 8 bytes (" + std::to_string(size) + "): no header length");
  }
  const uint64_t n = read_le64(file);
  if (n > kMaxHeaderSize) {
    fail("header length N = " + std::to_string(n) + " is too large (limit " + std::to_string(kMaxHeaderSize) +
         " bytes)");
  }
  if (n > size - 8) {
    fail("header length N = " + std::to_string(n) + " runs past the end of the file (" +
         std::to_string(size - 8) + " bytes after the length)");
  }
  const uint8_t* text = file + 8;
  const size_t bad = io_detail::find_invalid_utf8(text, n);
  if (bad != n) fail("header is not valid UTF-8 (invalid byte at header offset " + std::to_string(bad) + ")");

  json root;
  try {
    io_detail::JsonGuard guard(32, describe_duplicate, fail_guard, "header JSON");
    root = json::parse(reinterpret_cast<const char*>(text), reinterpret_cast<const char*>(text) + n,
                       std::ref(guard), /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    fail(std::string("header is not valid JSON: ") + e.what());
  }
  if (!root.is_object()) fail(std::string("header is not a JSON object (it is a JSON ") + root.type_name() + ")");

  Header h;
  h.data_start = 8 + n;
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (it.key() == "__metadata__") {
      const json& m = it.value();
      if (!m.is_object()) fail("\"__metadata__\" is not a JSON object (string -> string map)");
      for (auto mit = m.begin(); mit != m.end(); ++mit) {
        if (!mit.value().is_string()) {
          fail("\"__metadata__\" value of key " + quoted(mit.key()) + " is not a string");
        }
        h.metadata.emplace(mit.key(), mit.value().get<std::string>());
      }
      continue;
    }
    h.tensors.push_back(parse_entry(it.key(), it.value()));
  }

  std::sort(h.tensors.begin(), h.tensors.end(), [](const TensorEntry& a, const TensorEntry& b) {
    if (a.begin != b.begin) return a.begin < b.begin;
    if (a.end != b.end) return a.end < b.end;
    return a.name < b.name;
  });
  uint64_t cursor = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& t : h.tensors) {
    if (t.begin > cursor) {
      fail("tensor " + quoted(t.name) + ": gap in the data buffer (offsets not contiguous): begins at " +
           std::to_string(t.begin) + ", previous data ends at " + std::to_string(cursor));
    }
    if (t.begin < cursor) {
      fail("tensor " + quoted(t.name) + ": data_offsets overlap tensor " + quoted(previous->name) + " (begins at " +
           std::to_string(t.begin) + ", previous data ends at " + std::to_string(cursor) + ")");
    }
    cursor = t.end;
    previous = &t;
  }
  const uint64_t available = size - h.data_start;
  if (cursor > available) {
    fail("data buffer runs past the end of the file: tensors need " + std::to_string(cursor) + " bytes, the file has " +
         std::to_string(available) + " after the header");
  }
  if (cursor < available) {
    fail("data buffer does not end at the end of the file: " + std::to_string(available - cursor) +
         " trailing bytes after the last tensor");
  }
  return h;
}

}  // namespace quanto::safetensors
