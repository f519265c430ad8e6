#include "python_bridge.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace quanto::cli {
namespace {

namespace fs = std::filesystem;

// Imports the module first so that a missing package gets one clear line instead of a traceback;
// the module's main(argv) returns the exit status.
const char* kBootstrap =
    "import importlib, sys\n"
    "module = sys.argv[1]\n"
    "try:\n"
    "    main = importlib.import_module(module).main\n"
    "except ImportError as e:\n"
    "    sys.exit(f'quanto: error: this command needs the quanto Python package ({module}) in {sys.executable}: '\n"
    "             f'{e}. Install it (pip install --no-build-isolation .) or set QUANTO_PYTHON to a Python that has it.')\n"
    "sys.exit(main(sys.argv[2:]))\n";

}  // namespace

std::string python_interpreter() {
  if (const char* env = std::getenv("QUANTO_PYTHON"); env && *env) return env;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path beside = self.parent_path() / "python3";
    if (fs::exists(beside, ec) && !ec) return beside.string();
  }
  return "python3";
}

int run_python_module(const std::string& module, const std::vector<std::string>& args) {
  const std::string python = python_interpreter();
  std::vector<std::string> argv_s = {python, "-c", kBootstrap, module};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "quanto: error: cannot start %s: %s\n", python.c_str(), std::strerror(errno));
    return 1;
  }
  if (pid == 0) {
    execvp(argv[0], argv.data());
    std::fprintf(stderr, "quanto: error: cannot run the Python interpreter '%s' (%s); set QUANTO_PYTHON\n",
                 python.c_str(), std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::fprintf(stderr, "quanto: error: waiting for %s: %s\n", python.c_str(), std::strerror(errno));
      return 1;
    }
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  std::fprintf(stderr, "quanto: error: %s -m %s was killed by signal %d\n", python.c_str(), module.c_str(),
               WTERMSIG(status));
  return 1;
}

}  // namespace quanto::cli
