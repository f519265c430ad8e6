// An input shard mapped read-only, its validated header, and tensors viewing the mapping.
// release() drops a tensor's pages from this process (they stay in the page cache), so the
// resident memory of a run stays near one tensor however large the checkpoint.
#pragma once

#include <ATen/core/Tensor.h>

#include <quanto/safetensors.h>

#include <string>

namespace quanto::cli {

class ShardReader {
 public:
  explicit ShardReader(const std::string& path);  // throws CliError naming the path and the rule broken
  const safetensors::Header& header() const { return header_; }
  const std::string& path() const { return map_.path(); }
  const uint8_t* bytes(const safetensors::TensorEntry& e) const { return map_.data() + header_.data_start + e.begin; }
  // A CPU tensor on the mapping (copied when misaligned for its dtype). Do not write to it.
  at::Tensor tensor(const safetensors::TensorEntry& e) const;
  void release(const safetensors::TensorEntry& e) const;

 private:
  safetensors::MappedFile map_;
  safetensors::Header header_;
};

}  // namespace quanto::cli
