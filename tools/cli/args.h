// Command-line parsing (CLI11): the `quantize`, `export` and `inspect` sub-commands, their options,
// validators and help texts.
#pragma once

#include <CLI/CLI.hpp>

#include "options.h"

namespace quanto::cli {

struct Parsed {
  QuantizeOptions quantize;
  InspectOptions inspect;
  ExportOptions export_;
  CLI::App* quantize_cmd = nullptr;
  CLI::App* inspect_cmd = nullptr;
  CLI::App* export_cmd = nullptr;
};

// Declares everything on `app`; the values land in `parsed` when app.parse() runs.
void declare(CLI::App& app, Parsed& parsed);

}  // namespace quanto::cli
