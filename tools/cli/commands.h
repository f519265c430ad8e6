// The sub-commands. Each returns the process exit status; user errors throw CliError.
#pragma once

#include "options.h"

namespace quanto::cli {

int run_quantize(const QuantizeOptions& opts);
int run_inspect(const InspectOptions& opts);

}  // namespace quanto::cli
