#include "commands.h"

namespace quanto::cli {
int run_inspect(const InspectOptions&) { throw CliError("inspect: not implemented yet"); }
}  // namespace quanto::cli
