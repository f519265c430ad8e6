// quanto: the command-line tool. Every failure ends in one line on stderr and a non-zero exit
// status: 2 for a usage error, 1 for anything else (bad input, I/O).
#include <c10/util/Exception.h>

#include <cstdio>
#include <exception>

#include <string>

#include "args.h"
#include "commands.h"

#ifndef QUANTO_VERSION
#error "QUANTO_VERSION (the project's version) is defined by tools/cli/CMakeLists.txt"
#endif

namespace {
// One line: messages from ATen may span several.
void fail(std::string msg) {
  for (char& c : msg)
    if (c == '\n') c = ' ';
  std::fprintf(stderr, "quanto: error: %s\n", msg.c_str());
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app;
  quanto::cli::Parsed parsed;
  quanto::cli::declare(app, parsed);
  // `quanto --version`: the same version as the Python package (quanto.__version__).
  app.set_version_flag("--version", std::string("quanto ") + QUANTO_VERSION, "Print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "quanto: error: %s (see quanto --help)\n", e.what());
    return 2;
  }
  try {
    if (parsed.quantize_cmd->parsed() && parsed.quantize.allow_reencode && parsed.quantize.format == "quanto")
      throw quanto::cli::CliError("--allow-reencode applies to --format compressed-tensors or gguf");
    if (parsed.quantize_cmd->parsed())
      return parsed.quantize.format == "quanto" ? quanto::cli::run_quantize(parsed.quantize)
                                                : quanto::cli::run_quantize_and_export(parsed.quantize);
    if (parsed.export_cmd->parsed()) return quanto::cli::run_export(parsed.export_);
    return quanto::cli::run_inspect(parsed.inspect);
  } catch (const c10::Error& e) {
    fail(e.what_without_backtrace());
  } catch (const std::exception& e) {
    fail(e.what());
  }
  return 1;
}
