// The switch that sends CPU tensors through the device-generic implementations (the ones every
// backend without its own kernels runs), so the generic path is testable on machines without a
// GPU. Initial value: QUANTO_FORCE_GENERIC at library load ("1", "true", "on" or "yes" turn it on).
// Process-wide, not per thread: it is a testing and debugging aid, not a per-call option.
#pragma once

#include <utility>

namespace quanto::ops::generic {

bool generic_path_forced();
// Sets the switch and returns its previous value (the op quanto::force_generic_path).
bool set_generic_path_forced(bool enabled);

// The CPU registration of an op: calls the CPU kernel, or the generic implementation while the
// switch is on. Both must have the same signature; a mismatch leaves this template undefined,
// which fails the build at the registration.
template <auto Cpu, auto Generic>
struct CpuOrGeneric;

template <typename R, typename... Args, R (*Cpu)(Args...), R (*Generic)(Args...)>
struct CpuOrGeneric<Cpu, Generic> {
  static R call(Args... args) {
    if (generic_path_forced()) return Generic(std::forward<Args>(args)...);
    return Cpu(std::forward<Args>(args)...);
  }
};

}  // namespace quanto::ops::generic
