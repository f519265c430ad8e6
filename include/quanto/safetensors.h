// The safetensors container, torch-free: parse and validate a file image, map a file read-only,
// write a file atomically. Used by the ATen layer (safetensors_aten.h), the CLI and the fuzzer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace quanto::safetensors {

// Every element type the format defines except the sub-byte F4/F6 types, which quanto refuses.
enum class Dtype {
  BOOL, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
  I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64, C64
};

// Bytes per element (also the alignment the writer orders tensors by).
size_t element_size(Dtype dtype);
// The name used in the header ("F16", "BF16", ...).
std::string_view dtype_name(Dtype dtype);
// The dtype called `name` (exact, case-sensitive), or nullopt.
std::optional<Dtype> dtype_from_name(std::string_view name);

struct TensorEntry {
  std::string name;
  Dtype dtype;
  std::vector<uint64_t> shape;
  uint64_t begin = 0;  // byte offsets relative to the data buffer (after the header);
  uint64_t end = 0;    // end is one past the last byte
  uint64_t nbytes() const { return end - begin; }
  uint64_t numel() const;
};

struct Header {
  std::vector<TensorEntry> tensors;             // in data-offset order
  std::map<std::string, std::string> metadata;  // "__metadata__", empty if absent
  uint64_t data_start = 0;                      // 8 + N: file offset of the data buffer
  // The entry called `name`, or nullptr.
  const TensorEntry* find(std::string_view name) const;
};

// A file that breaks a rule of the format. what() names the rule broken (one distinct message
// per rule); callers add the path.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The largest header length N a reader accepts.
inline constexpr uint64_t kMaxHeaderSize = 100'000'000;

// Parses and validates a whole file image (`size` bytes at `file`): header length, UTF-8 JSON
// object, every entry, offsets contiguous from 0 and ending exactly at the end of the file.
// Throws FormatError. Never allocates more than O(size) driven by the contents.
Header parse(const uint8_t* file, size_t size);

// A whole file mapped read-only. Movable, not copyable; unmaps on destruction. An empty file
// maps to data() == nullptr, size() == 0. Throws std::runtime_error naming the path.
class MappedFile {
 public:
  static MappedFile open(const std::string& path);
  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

// One tensor to write: `nbytes` raw bytes at `data` (must equal numel × element_size).
struct TensorView {
  std::string name;
  Dtype dtype;
  std::vector<uint64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// The header (8-byte length + JSON padded with spaces to a multiple of 8) and the placement of
// each tensor, in file order: alignment largest first (as Python's safetensors orders dtypes),
// then by name. Throws std::invalid_argument
// on duplicate names, a reserved/empty name, or nbytes not matching dtype × shape.
struct Layout {
  std::string header;                  // the 8 length bytes + the padded JSON
  std::vector<const TensorView*> order;  // tensors in data order
};
Layout layout(const std::vector<TensorView>& tensors,
              const std::map<std::string, std::string>& metadata = {});

// Writes a safetensors file atomically: a temporary file beside `path` in the same folder,
// fsync, rename over `path`, fsync of the folder. On any failure the old file (or no file) is
// left and the temporary removed. Throws std::invalid_argument (bad input, see layout) or
// std::runtime_error naming the path (I/O).
void write_file(const std::string& path, const std::vector<TensorView>& tensors,
                const std::map<std::string, std::string>& metadata = {});

// Writes `bytes` to `path` atomically (same protocol as write_file). Used by qmap::write.
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace quanto::safetensors
