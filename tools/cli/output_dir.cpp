#include "output_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "options.h"
#include "util.h"

namespace quanto::cli {
namespace {

namespace fs = std::filesystem;

// The folder a signal handler removes; written before the handlers are installed.
char g_cleanup_path[4096] = {0};

// Async-signal-safe recursive removal (no malloc, no stdio): openat / getdents64 / unlinkat.
void remove_tree_at(int parent_fd, const char* name, int depth) {
  if (depth > 32) return;
  if (::unlinkat(parent_fd, name, 0) == 0) return;
  const int fd = ::openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  alignas(8) char buf[4096];
  for (;;) {
    const long n = ::syscall(SYS_getdents64, fd, buf, sizeof buf);
    if (n <= 0) break;
    bool removed_any = false;
    for (long off = 0; off < n;) {
      auto* d = reinterpret_cast<struct dirent64*>(buf + off);
      off += d->d_reclen;
      if (std::strcmp(d->d_name, ".") == 0 || std::strcmp(d->d_name, "..") == 0) continue;
      remove_tree_at(fd, d->d_name, depth + 1);
      removed_any = true;
    }
    if (removed_any) ::lseek(fd, 0, SEEK_SET);  // entries moved under us: list again
  }
  ::close(fd);
  ::unlinkat(parent_fd, name, AT_REMOVEDIR);
}

extern "C" void on_fatal_signal(int sig) {
  if (g_cleanup_path[0] != 0) remove_tree_at(AT_FDCWD, g_cleanup_path, 0);
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(sig, &sa, nullptr);
}

fs::path absolute_clean(const std::string& p) {
  std::error_code ec;
  fs::path a = fs::weakly_canonical(fs::absolute(p), ec);
  return ec ? fs::absolute(p).lexically_normal() : a;
}

bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin(), o = outer.begin();
  for (; o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// Temporaries of earlier runs killed by SIGKILL: OUTPUT.tmp-<pid> whose process is gone.
void remove_stale_temps(const fs::path& out) {
  std::error_code ec;
  const fs::path parent = out.parent_path();
  const std::string prefix = out.filename().string() + ".tmp-";
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string n = e.path().filename().string();
    if (n.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string pid = n.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    if (::kill(static_cast<pid_t>(std::stol(pid)), 0) == 0 || errno == EPERM) continue;  // still running
    fs::remove_all(e.path(), ec);
  }
}

}  // namespace

void check_output_path(const std::string& input, bool input_is_folder, const std::string& output, bool force) {
  const fs::path in = absolute_clean(input), out = absolute_clean(output);
  const fs::path in_folder = input_is_folder ? in : in.parent_path();
  if (out == in || (input_is_folder && is_within(out, in_folder)))
    throw CliError("refusing to write OUTPUT '" + output + "' into the input '" + input + "'");
  if (is_within(in, out))
    throw CliError("refusing OUTPUT '" + output + "': it contains the input '" + input + "'");
  std::error_code ec;
  if (fs::exists(fs::symlink_status(output, ec)) && !force)
    throw CliError("OUTPUT '" + output + "' already exists (use --force to replace it)");
}

OutputDir::OutputDir(std::string output) : output_(std::move(output)) {
  const fs::path out = absolute_clean(output_);
  std::error_code ec;
  fs::create_directories(out.parent_path(), ec);
  if (ec) throw CliError("cannot create the folder of OUTPUT '" + output_ + "': " + ec.message());
  remove_stale_temps(out);
  temp_ = out.string() + ".tmp-" + std::to_string(::getpid());
  if (temp_.size() >= sizeof g_cleanup_path) throw CliError("OUTPUT path is too long: '" + output_ + "'");
  fs::remove_all(temp_, ec);
  if (!fs::create_directory(temp_, ec) || ec)
    throw CliError("cannot create the temporary folder '" + temp_ + "': " + (ec ? ec.message() : "exists"));
  std::memcpy(g_cleanup_path, temp_.c_str(), temp_.size() + 1);
  install_handlers();
}

OutputDir::~OutputDir() {
  if (committed_) return;
  g_cleanup_path[0] = 0;
  std::error_code ec;
  fs::remove_all(temp_, ec);
}

void OutputDir::commit() {
  fsync_path(temp_, /*directory=*/true);
  const fs::path out = absolute_clean(output_);
  std::error_code ec;
  std::string old;
  if (fs::exists(fs::symlink_status(out, ec))) {
    old = out.string() + ".old-" + std::to_string(::getpid());
    fs::rename(out, old, ec);
    if (ec) throw CliError("cannot move the existing OUTPUT '" + output_ + "' aside: " + ec.message());
  }
  fs::rename(temp_, out, ec);
  if (ec) {
    std::error_code ec2;
    if (!old.empty()) fs::rename(old, out, ec2);
    throw CliError("cannot rename '" + temp_ + "' to '" + output_ + "': " + ec.message());
  }
  committed_ = true;
  g_cleanup_path[0] = 0;
  fsync_path(out.parent_path().string(), /*directory=*/true);
  if (!old.empty()) fs::remove_all(old, ec);
}

}  // namespace quanto::cli
