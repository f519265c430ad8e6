// Scalar number formats used by the kernels: bfloat16, float16 and the three float8 formats.
//
// Torch-free on purpose (kernels build and test with gtest alone). Every conversion rounds to
// nearest, ties to even, exactly as c10 does, because quanto must be bit-exact with PyTorch
// arithmetic (and therefore with optimum-quanto) on bf16/fp16 inputs.
//
// Everything here is `static inline`: ISA translation units include this header with wider
// -m flags, and internal linkage keeps the linker from picking an AVX-512 copy for generic code.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace quanto::kernels {

// Storage types with the same layout as c10::BFloat16 / c10::Half, so the op layer can pass
// tensor data pointers straight through.
struct bf16 {
  uint16_t bits;
};
struct fp16 {
  uint16_t bits;
};
static_assert(sizeof(bf16) == 2 && sizeof(fp16) == 2, "16-bit storage types");

static inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}
static inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// ---- bfloat16 ----
static inline float to_float(bf16 h) { return bits_float(static_cast<uint32_t>(h.bits) << 16); }
static inline bf16 bf16_from_float(float f) {
  if (std::isnan(f)) return bf16{0x7FC0};
  uint32_t u = float_bits(f);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// ---- float16 (IEEE binary16) ----
static inline float to_float(fp16 h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exp = (h.bits >> 10) & 0x1Fu;
  const uint32_t man = h.bits & 0x3FFu;
  if (exp == 0x1F) return bits_float(sign | 0x7F800000u | (man << 13));
  if (exp == 0) {
    // Zero or subnormal: man * 2^-24, exact in float.
    const float v = std::ldexp(static_cast<float>(man), -24);
    return sign ? -v : v;
  }
  return bits_float(sign | ((exp + 112u) << 23) | (man << 13));
}
static inline fp16 fp16_from_float(float f) {
  const uint32_t u = float_bits(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return fp16{static_cast<uint16_t>(sign | 0x7E00u)};  // NaN
  if (a >= 0x477FF000u) return fp16{static_cast<uint16_t>(sign | 0x7C00u)};  // rounds past 65504
  if (a < 0x38800000u) {
    // Below the smallest normal (2^-14): units of 2^-24, rounded to nearest even by the FPU.
    const float units = std::nearbyint(bits_float(a) * 16777216.0f);
    return fp16{static_cast<uint16_t>(sign | static_cast<uint16_t>(units))};
  }
  // Normal: drop 13 mantissa bits with ties-to-even; a carry moves into the exponent.
  uint32_t r = a + 0xFFFu + ((a >> 13) & 1u);
  r = (r >> 13) - (112u << 10);
  return fp16{static_cast<uint16_t>(sign | r)};
}

// Rounds a float to the precision of T, as a PyTorch op producing a T tensor would.
static inline float round_to(float f, const float*) { return f; }
static inline float round_to(float f, const bf16*) { return to_float(bf16_from_float(f)); }
static inline float round_to(float f, const fp16*) { return to_float(fp16_from_float(f)); }
template <typename T>
static inline float round_to(float f) {
  return round_to(f, static_cast<const T*>(nullptr));
}

static inline float to_float(float f) { return f; }
template <typename T>
static inline T from_float(float f);
template <>
inline float from_float<float>(float f) {
  return f;
}
template <>
inline bf16 from_float<bf16>(float f) {
  return bf16_from_float(f);
}
template <>
inline fp16 from_float<fp16>(float f) {
  return fp16_from_float(f);
}

// ---- float8 ----
// e4m3fn: bias 7, no inf, NaN = S.1111.111, max 448.
// e4m3fnuz: bias 8, no inf, no -0, NaN = 0x80, max 240.
// e5m2: bias 15, IEEE-like with inf, max 57344.
enum class Fp8Format : uint8_t { e4m3fn, e4m3fnuz, e5m2 };

struct Fp8Spec {
  int man_bits;
  int bias;
  float max;
};
static inline Fp8Spec fp8_spec(Fp8Format f) {
  switch (f) {
    case Fp8Format::e4m3fn:
      return {3, 7, 448.0f};
    case Fp8Format::e4m3fnuz:
      return {3, 8, 240.0f};
    case Fp8Format::e5m2:
      return {2, 15, 57344.0f};
  }
  return {3, 7, 448.0f};
}

// Encodes f, which the caller has clamped to [-max, max] (or is NaN), rounding to nearest even.
// Out-of-range inputs are the caller's bug; kernels always clamp first.
static inline uint8_t fp8_from_float(float f, Fp8Format fmt) {
  const Fp8Spec s = fp8_spec(fmt);
  const uint32_t u = float_bits(f);
  const uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  const uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) {
    if (fmt == Fp8Format::e4m3fnuz) return 0x80;
    return static_cast<uint8_t>(sign | 0x7Fu);  // c10 writes S.1111111 for both
  }
  const int min_normal_exp = 1 - s.bias;  // unbiased exponent of the smallest normal
  uint32_t code;
  if (a < static_cast<uint32_t>(min_normal_exp + 127) << 23) {
    // Subnormal range: count units of 2^(min_normal_exp - man_bits); exact scaling by 2^k.
    const float units = std::nearbyint(std::ldexp(bits_float(a), s.man_bits - min_normal_exp));
    code = static_cast<uint32_t>(units);  // may reach 1 << man_bits = smallest normal: correct
  } else {
    const int drop = 23 - s.man_bits;
    uint32_t r = a + ((1u << (drop - 1)) - 1u) + ((a >> drop) & 1u);
    code = (r >> drop) - (static_cast<uint32_t>(127 - s.bias) << s.man_bits);
  }
  if (fmt == Fp8Format::e4m3fnuz && code == 0) return 0;  // fnuz has no negative zero
  return static_cast<uint8_t>(sign | code);
}

static inline float fp8_to_float(uint8_t v, Fp8Format fmt) {
  const Fp8Spec s = fp8_spec(fmt);
  const int exp_bits = 7 - s.man_bits;
  const bool neg = (v & 0x80u) != 0;
  const uint32_t exp = (v >> s.man_bits) & ((1u << exp_bits) - 1u);
  const uint32_t man = v & ((1u << s.man_bits) - 1u);
  switch (fmt) {
    case Fp8Format::e4m3fn:
      if ((v & 0x7Fu) == 0x7Fu) return std::nanf("");
      break;
    case Fp8Format::e4m3fnuz:
      if (v == 0x80u) return std::nanf("");
      break;
    case Fp8Format::e5m2:
      if (exp == 0x1Fu) return man ? std::nanf("") : (neg ? -INFINITY : INFINITY);
      break;
  }
  float mag;
  if (exp == 0) {
    mag = std::ldexp(static_cast<float>(man), 1 - s.bias - s.man_bits);
  } else {
    mag = std::ldexp(static_cast<float>((1u << s.man_bits) | man),
                     static_cast<int>(exp) - s.bias - s.man_bits);
  }
  return neg ? -mag : mag;
}

// A float8 code as a float bit pattern, with no special cases: the byte, sign-extended and shifted
// left so its 7 magnitude bits (exponent, mantissa) land at the bottom of float's exponent field
// and the top of its mantissa, masked to sign + magnitude, is exactly w · 2^-rebias_exp (normals
// and subnormals alike; the NaN/inf codes, which quantization never writes, become finite).
// SIMD kernels decode this way (a shift and an AND) and fold 2^rebias_exp into x and the result.
struct Fp8Bits {
  int shift;
  uint32_t mask;
  int rebias_exp;
};
static inline Fp8Bits fp8_bits(Fp8Format fmt) {
  const Fp8Spec s = fp8_spec(fmt);
  const int shift = 23 - s.man_bits;
  return {shift, 0x80000000u | (0x7Fu << shift), 127 - s.bias};
}
static inline float fp8_bits_to_float(uint8_t v, const Fp8Bits& b) {
  const uint32_t widened = static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(v)));
  return bits_float((widened << b.shift) & b.mask);
}

}  // namespace quanto::kernels
