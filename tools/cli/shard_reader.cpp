#include "shard_reader.h"

#include <ATen/ATen.h>
#include <sys/mman.h>
#include <unistd.h>

#include <quanto/safetensors_aten.h>

#include <algorithm>
#include <cstring>

#include "options.h"

namespace quanto::cli {

ShardReader::ShardReader(const std::string& path) {
  try {
    map_ = safetensors::MappedFile::open(path);
    header_ = safetensors::parse(map_.data(), map_.size());
  } catch (const safetensors::FormatError& e) {
    throw CliError("'" + path + "' is not a valid safetensors file: " + e.what());
  } catch (const std::exception& e) {
    throw CliError(e.what());
  }
}

at::Tensor ShardReader::tensor(const safetensors::TensorEntry& e) const {
  std::vector<int64_t> shape(e.shape.begin(), e.shape.end());
  const auto type = safetensors::to_scalar_type(e.dtype);
  auto* p = const_cast<uint8_t*>(bytes(e));
  const auto opts = at::TensorOptions().dtype(type).device(at::kCPU);
  if (reinterpret_cast<uintptr_t>(p) % safetensors::element_size(e.dtype) != 0) {
    at::Tensor t = at::empty(shape, opts);
    std::memcpy(t.data_ptr(), p, e.nbytes());
    return t;
  }
  return at::from_blob(p, shape, opts);
}

void ShardReader::release(const safetensors::TensorEntry& e) const {
  if (e.nbytes() == 0) return;
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t base = reinterpret_cast<uintptr_t>(map_.data());
  const uintptr_t lo = reinterpret_cast<uintptr_t>(bytes(e)) & ~(page - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(bytes(e)) + e.nbytes() + page - 1) & ~(page - 1);
  hi = std::min(hi, (base + map_.size() + page - 1) & ~(page - 1));
  // The mapping is private and never written: dropped pages are read back from the file if needed.
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

}  // namespace quanto::cli
