// Atomic replacement of a file: write a temporary beside it (same folder, so rename is atomic),
// fsync it, rename it over the target, fsync the folder. Until commit() succeeds the target is
// untouched; a writer destroyed without commit() removes its temporary.
#pragma once

#include <cstddef>
#include <string>

namespace quanto::io_detail {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // creates the temporary; throws std::runtime_error
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  ~AtomicFile();

  void write(const void* data, size_t size);  // throws std::runtime_error naming the path
  void commit();                              // fsync, rename, fsync folder

 private:
  std::string path_;
  std::string temp_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace quanto::io_detail
