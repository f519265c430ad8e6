#include "atomic_file.h"

#include <quanto/safetensors.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace quanto::io_detail {
namespace {

[[noreturn]] void fail_errno(const std::string& what, const std::string& path, int err) {
  throw std::runtime_error(path + ": " + what + ": " + std::strerror(err));
}

std::string folder_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string base_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::atomic<unsigned> g_counter{0};

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (path_.empty() || path_.back() == '/') throw std::runtime_error("'" + path_ + "': not a file path");
  // O_EXCL with a name unique to this process and call; the mode goes through the umask like
  // any new file's (mkstemp would force 0600).
  for (int attempt = 0; attempt < 100; ++attempt) {
    temp_ = folder_of(path_) + "/." + base_of(path_) + ".tmp." + std::to_string(::getpid()) + "." +
            std::to_string(g_counter.fetch_add(1));
    fd_ = ::open(temp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd_ >= 0) return;
    if (errno != EEXIST) fail_errno("cannot create a temporary file beside it", path_, errno);
  }
  throw std::runtime_error(path_ + ": cannot create a unique temporary file beside it");
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const size_t chunk = size < (size_t{1} << 30) ? size : (size_t{1} << 30);
    const ssize_t n = ::write(fd_, p, chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail_errno("write failed", path_, errno);
    }
    if (n == 0) throw std::runtime_error(path_ + ": write failed: no progress");
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0) fail_errno("fsync failed", path_, errno);
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) fail_errno("close failed", path_, errno);
  if (::rename(temp_.c_str(), path_.c_str()) != 0) fail_errno("cannot rename the temporary file over it", path_, errno);
  committed_ = true;
  const std::string folder = folder_of(path_);
  const int dfd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) fail_errno("cannot open its folder to fsync it", path_, errno);
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) fail_errno("fsync of its folder failed", path_, err);
}

}  // namespace quanto::io_detail

namespace quanto::safetensors {

void write_file_atomic(const std::string& path, std::string_view bytes) {
  io_detail::AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace quanto::safetensors
