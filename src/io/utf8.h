// Strict UTF-8 validation (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF).
#pragma once

#include <cstddef>
#include <cstdint>

namespace quanto::io_detail {

// Returns the offset of the first byte of the first invalid sequence, or `size` if valid.
size_t find_invalid_utf8(const uint8_t* s, size_t size);

}  // namespace quanto::io_detail
