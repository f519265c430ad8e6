// `quanto export` and `quanto quantize --format F`: the formats of other engines are written by
// the Python package's exporters (python -m quanto.export), which use those formats' own Python
// writers and checkers; this file only forwards the options.
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "commands.h"
#include "python_bridge.h"

namespace quanto::cli {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> export_args(const std::string& input, const std::string& output, const std::string& format,
                                     bool allow_reencode, bool force) {
  std::vector<std::string> args = {input, "-o", output, "--format", format};
  if (allow_reencode) args.push_back("--allow-reencode");
  if (force) args.push_back("--force");
  return args;
}

// Removes the intermediate quanto folder however the export ends.
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

}  // namespace

int run_export(const ExportOptions& o) {
  return run_python_module("quanto.export.__main__", export_args(o.input, o.output, o.format, o.allow_reencode, o.force));
}

int run_quantize_and_export(const QuantizeOptions& opts) {
  if (opts.dry_run) return run_quantize(opts);  // the plan is the same; nothing is written
  if (opts.json) throw CliError("--json is not available with --format " + opts.format);
  // The quanto folder first, beside OUTPUT (same file system, cleaned up on any exit but SIGKILL).
  QuantizeOptions quantized = opts;
  quantized.format = "quanto";
  quantized.force = false;
  quantized.output = opts.output + ".quanto-tmp-" + std::to_string(getpid());
  RemoveOnExit cleanup{quantized.output};
  if (const int rc = run_quantize(quantized); rc != 0) return rc;
  return run_python_module("quanto.export.__main__",
                           export_args(quantized.output, opts.output, opts.format, opts.allow_reencode, opts.force));
}

}  // namespace quanto::cli
