#include "writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "options.h"

namespace quanto::cli {
namespace {

void pwrite_all(int fd, const void* data, uint64_t n, uint64_t offset, const std::string& path) {
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const size_t step = static_cast<size_t>(std::min<uint64_t>(n, uint64_t(1) << 30));
    const ssize_t w = ::pwrite(fd, p, step, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw CliError("cannot write '" + path + "': " + std::strerror(errno));
    }
    p += w;
    n -= static_cast<uint64_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

}  // namespace

ShardWriter::ShardWriter(std::string path, const std::vector<OutSpec>& specs,
                         const std::map<std::string, std::string>& metadata)
    : path_(std::move(path)) {
  // layout() wants a data pointer per tensor but reads none: the bytes come later.
  static const char placeholder = 0;
  std::vector<safetensors::TensorView> views;
  views.reserve(specs.size());
  for (const auto& s : specs) {
    uint64_t n = safetensors::element_size(s.dtype);
    for (auto d : s.shape) n *= d;
    views.push_back({s.name, s.dtype, s.shape, &placeholder, static_cast<size_t>(n)});
  }
  safetensors::Layout layout;
  try {
    layout = safetensors::layout(views, metadata);
  } catch (const std::exception& e) {
    throw CliError("'" + path_ + "': " + e.what());
  }
  uint64_t offset = layout.header.size();
  for (const auto* v : layout.order) {
    slots_[v->name] = Slot{offset, v->nbytes};
    offset += v->nbytes;
    data_bytes_ += v->nbytes;
  }
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) throw CliError("cannot create '" + path_ + "': " + std::strerror(errno));
  if (::ftruncate(fd_, static_cast<off_t>(offset)) != 0)
    throw CliError("cannot size '" + path_ + "' to " + std::to_string(offset) + " bytes: " + std::strerror(errno));
  pwrite_all(fd_, layout.header.data(), layout.header.size(), 0, path_);
}

ShardWriter::~ShardWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void ShardWriter::write(const std::string& name, const void* data, uint64_t nbytes) {
  auto it = slots_.find(name);
  if (it == slots_.end()) throw CliError("internal: '" + name + "' is not planned in '" + path_ + "'");
  Slot& s = it->second;
  if (s.written) throw CliError("internal: '" + name + "' written twice in '" + path_ + "'");
  if (nbytes != s.nbytes)
    throw CliError("internal: '" + name + "' has " + std::to_string(nbytes) + " bytes, " + std::to_string(s.nbytes) +
                   " planned");
  pwrite_all(fd_, data, nbytes, s.offset, path_);
  s.written = true;
}

void ShardWriter::finish() {
  for (const auto& [name, s] : slots_)
    if (!s.written) throw CliError("internal: '" + name + "' was never written to '" + path_ + "'");
  if (::fsync(fd_) != 0) throw CliError("cannot fsync '" + path_ + "': " + std::strerror(errno));
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw CliError("cannot close '" + path_ + "': " + std::strerror(errno));
  }
  fd_ = -1;
}

}  // namespace quanto::cli
