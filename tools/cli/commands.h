// The sub-commands. Each returns the process exit status; user errors throw CliError.
#pragma once

#include "options.h"

namespace quanto::cli {

int run_quantize(const QuantizeOptions& opts);
int run_inspect(const InspectOptions& opts);
int run_export(const ExportOptions& opts);
// `quanto quantize --format F` (F other than quanto): quantize into a sibling folder, export it to
// OUTPUT, remove the sibling.
int run_quantize_and_export(const QuantizeOptions& opts);

}  // namespace quanto::cli
