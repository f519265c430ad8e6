// Streaming safetensors writer: the header is laid out first from the tensors' names, dtypes and
// shapes (same order as every other quanto/Python writer), the file is sized, and each tensor's
// bytes are written at its offset whenever they are ready (pwrite), so only the tensor being
// processed is ever in memory. The file is fsync'ed by finish(). Atomicity comes from the
// output folder (output_dir.h): this file lives in a temporary folder until the final rename.
#pragma once

#include <quanto/safetensors.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "quantize_tensor.h"

namespace quanto::cli {

class ShardWriter {
 public:
  ShardWriter(std::string path, const std::vector<OutSpec>& specs,
              const std::map<std::string, std::string>& metadata);
  ShardWriter(const ShardWriter&) = delete;
  ShardWriter& operator=(const ShardWriter&) = delete;
  ~ShardWriter();

  // Writes the bytes of tensor `name`; nbytes must be its planned size. Throws CliError.
  void write(const std::string& name, const void* data, uint64_t nbytes);
  // Checks every tensor was written, fsyncs and closes. Throws CliError.
  void finish();

  uint64_t data_bytes() const { return data_bytes_; }  // sum of tensor sizes
  const std::string& path() const { return path_; }

 private:
  struct Slot {
    uint64_t offset;
    uint64_t nbytes;
    bool written = false;
  };
  std::string path_;
  int fd_ = -1;
  std::map<std::string, Slot> slots_;
  uint64_t data_bytes_ = 0;
};

}  // namespace quanto::cli
