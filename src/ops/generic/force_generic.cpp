#include "ops/generic/force_generic.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <string>

namespace quanto::ops::generic {
namespace {

bool env_enabled() {
  const char* value = std::getenv("QUANTO_FORCE_GENERIC");
  if (value == nullptr) return false;
  std::string v(value);
  std::transform(v.begin(), v.end(), v.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return v == "1" || v == "true" || v == "on" || v == "yes";
}

// A function-local static: CPU kernels may run during other libraries' static initialisation.
std::atomic<bool>& flag() {
  static std::atomic<bool> forced{env_enabled()};
  return forced;
}

}  // namespace

bool generic_path_forced() { return flag().load(std::memory_order_relaxed); }

bool set_generic_path_forced(bool enabled) { return flag().exchange(enabled); }

}  // namespace quanto::ops::generic
