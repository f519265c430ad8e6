#include "input.h"

#include "options.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

namespace quanto::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string lower_ext(const fs::path& p) {
  std::string e = p.extension().string();
  for (char& c : e) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return e;
}

[[noreturn]] void refuse_pickle(const std::string& what) {
  throw CliError(what + " is a pickle checkpoint (PyTorch .bin/.pt): quanto reads only safetensors, which can "
                 "be memory-mapped and cannot run code when loaded. Convert it first, e.g. in Python: "
                 "AutoModel.from_pretrained(path).save_pretrained(out, safe_serialization=True)");
}

json read_json(const fs::path& p) {
  std::ifstream in(p);
  if (!in) throw CliError("cannot read '" + p.string() + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw CliError("'" + p.string() + "' is not valid JSON");
  return j;
}

// Other weight formats: never copied into a quantized folder (they would be the float model again).
bool is_other_weight_file(const fs::path& p) {
  static const std::set<std::string> exts = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".safetensors", ".gguf",
                                             ".onnx", ".h5", ".msgpack", ".ot", ".tflite", ".mlmodel"};
  return exts.count(lower_ext(p)) > 0;
}

}  // namespace

bool is_pickle_file(const std::string& name) {
  static const std::set<std::string> exts = {".bin", ".pt", ".pth", ".ckpt", ".pkl"};
  return exts.count(lower_ext(name)) > 0;
}

Input discover_input(const std::string& path) {
  Input in;
  in.path = path;
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) throw CliError("input '" + path + "' does not exist");
  if (fs::is_regular_file(p, ec)) {
    if (is_pickle_file(path)) refuse_pickle("'" + path + "'");
    if (lower_ext(p) == ".gguf")
      throw CliError("'" + path + "' is a GGUF file: quanto reads safetensors; convert it with transformers "
                     "(from_pretrained(folder, gguf_file=...) then save_pretrained)");
    if (lower_ext(p) != ".safetensors")
      throw CliError("'" + path + "' is not a .safetensors file (give a .safetensors file or a model folder)");
    in.folder = p.has_parent_path() ? p.parent_path().string() : ".";
    in.shards = {p.filename().string()};
    return in;
  }
  if (!fs::is_directory(p, ec)) throw CliError("input '" + path + "' is neither a file nor a folder");
  in.is_folder = true;
  in.folder = path;

  const fs::path index = p / kIndexName;
  std::set<std::string> weight_files;
  if (fs::is_regular_file(index, ec)) {
    const json j = read_json(index);
    if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
      throw CliError("'" + index.string() + "' has no \"weight_map\" object");
    for (const auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) throw CliError("'" + index.string() + "': weight_map[\"" + name + "\"] is not a string");
      const std::string f = file.get<std::string>();
      if (fs::path(f).filename().string() != f)
        throw CliError("'" + index.string() + "' names shard '" + f + "' outside the folder");
      if (weight_files.insert(f).second) in.shards.push_back(f);
    }
    if (in.shards.empty()) throw CliError("'" + index.string() + "' lists no tensors");
    for (const auto& f : in.shards)
      if (!fs::is_regular_file(p / f, ec))
        throw CliError("shard '" + f + "' listed in '" + index.string() + "' is missing");
    std::sort(in.shards.begin(), in.shards.end());
    in.sharded = true;
  } else if (fs::is_regular_file(p / kWeightsName, ec)) {
    in.shards = {kWeightsName};
    weight_files.insert(kWeightsName);
  } else {
    for (const char* pk : {"pytorch_model.bin", "model.pt", "model.pth", "pytorch_model.bin.index.json"})
      if (fs::exists(p / pk, ec)) refuse_pickle("'" + (p / pk).string() + "'");
    throw CliError("'" + path + "' holds neither " + std::string(kWeightsName) + " nor " + kIndexName +
                   " (a Hugging Face model folder saved with safetensors)");
  }

  if (fs::is_regular_file(p / "config.json", ec)) {
    try {
      in.config = read_json(p / "config.json");
    } catch (const CliError&) {
      in.config = nullptr;  // copied as it is; only the tie/model-type hints are lost
    }
  }

  // Every other file is copied: config, tokenizer, generation config, sentence-transformers
  // sub-folders. Hidden folders (.git, .cache) and other weight formats are left out.
  for (auto it = fs::recursive_directory_iterator(p, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) throw CliError("cannot list '" + path + "': " + ec.message());
    const fs::path rel = fs::relative(it->path(), p);
    const std::string name = it->path().filename().string();
    if (it->is_directory()) {
      if (!name.empty() && name[0] == '.') it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    const std::string r = rel.string();
    if (weight_files.count(r) || r == kIndexName || r == kQmapName) continue;
    if (is_other_weight_file(rel) || r == "pytorch_model.bin.index.json") {
      in.skipped.push_back(r);
      continue;
    }
    in.copy_files.push_back(r);
  }
  std::sort(in.copy_files.begin(), in.copy_files.end());
  std::sort(in.skipped.begin(), in.skipped.end());
  return in;
}

}  // namespace quanto::cli
