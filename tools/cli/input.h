// Input discovery: one .safetensors file, a folder with model.safetensors, or a sharded folder
// (model.safetensors.index.json). Pickle checkpoints are refused with what to do instead.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace quanto::cli {

struct Input {
  std::string path;                      // as given
  std::string folder;                    // the model folder (a file input: its parent)
  bool is_folder = false;
  bool sharded = false;                  // read through model.safetensors.index.json
  std::vector<std::string> shards;       // shard file names relative to folder, in index order
  std::vector<std::string> copy_files;   // other files (relative paths) to copy to the output
  std::vector<std::string> skipped;      // files left out of the output (other weight formats)
  nlohmann::json config;                 // config.json, or null
};

inline constexpr const char* kWeightsName = "model.safetensors";
inline constexpr const char* kIndexName = "model.safetensors.index.json";
inline constexpr const char* kQmapName = "quanto_qmap.json";

// Throws CliError naming the problem (missing path, pickle checkpoint, no safetensors, a shard
// listed in the index that is missing, a malformed index).
Input discover_input(const std::string& path);

// True for the extensions of pickle-based checkpoints (.bin, .pt, .pth, .ckpt, .pkl).
bool is_pickle_file(const std::string& name);

}  // namespace quanto::cli
