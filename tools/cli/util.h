// Small formatting helpers shared by the commands.
#pragma once

#include <quanto/safetensors.h>

#include <cstdint>
#include <string>
#include <vector>

namespace quanto::cli {

// "32.0 MiB", "4.0 KiB", "12 B".
std::string human_bytes(uint64_t bytes);
// "[8192, 2048]".
std::string shape_str(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<uint64_t>& shape);
// "bf16", "f16", "f32", "i8", "u8", "f8_e4m3", ... (lower-case short names).
std::string short_dtype(safetensors::Dtype dtype);
// True for the float dtypes the ops quantize: F32, F16, BF16.
bool is_quantizable_float(safetensors::Dtype dtype);
// fnmatch(3) glob.
bool glob_match(const std::string& pattern, const std::string& text);
// fsync a file or folder by path; throws CliError naming the path.
void fsync_path(const std::string& path, bool directory);

}  // namespace quanto::cli
