// Both directions with the real Python `safetensors` package (tests/io/interop.py): files it
// writes load here bit for bit, and files saved here load there bit for bit.
#include <quanto/safetensors_aten.h>

#include "test_util.h"

#include <ATen/ops/from_blob.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

namespace st = quanto::safetensors;
using quanto::io_test::read_bytes;
using quanto::io_test::TempDir;
using quanto::io_test::write_bytes;

namespace {

const std::string kSource = QUANTO_SOURCE_DIR;

int run_python(const std::string& args) {
  const std::string cmd = "'" + kSource + "/.venv/bin/python' '" + kSource + "/tests/io/interop.py' " + args;
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

std::vector<uint8_t> bytes_of(const at::Tensor& t) {
  const auto* p = static_cast<const uint8_t*>(t.const_data_ptr());
  return std::vector<uint8_t>(p, p + t.nbytes());
}

}  // namespace

TEST(Interop, PythonWrittenLoadsBitExactAndOursLoadsInPython) {
  TempDir dir;
  ASSERT_EQ(run_python("write '" + dir.path().string() + "'"), 0) << "interop.py write failed";
  std::ifstream mf(dir.file("manifest.json"));
  const nlohmann::json manifest = nlohmann::json::parse(mf);

  const st::File f = st::File::open(dir.file("python.safetensors"));
  std::map<std::string, std::string> metadata;
  for (const auto& [k, v] : manifest["metadata"].items()) metadata[k] = v.get<std::string>();
  EXPECT_EQ(f.metadata(), metadata);
  ASSERT_EQ(f.names().size(), manifest["tensors"].size());
  ASSERT_GE(f.names().size(), 20u);

  std::vector<std::pair<std::string, at::Tensor>> loaded;
  for (const auto& [name, m] : manifest["tensors"].items()) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.contains(name));
    const at::Tensor t = f.tensor(name);
    EXPECT_EQ(st::from_scalar_type(t.scalar_type()), st::dtype_from_name(m["dtype"].get<std::string>()).value());
    EXPECT_EQ(t.sizes().vec(), m["shape"].get<std::vector<int64_t>>());
    EXPECT_EQ(bytes_of(t), from_hex(m["hex"].get<std::string>()));
    loaded.emplace_back(name, t);
  }

  // Saved here from the loaded tensors -> Python reads the same tensors and metadata.
  const std::string ours = dir.file("cpp.safetensors");
  st::save(ours, loaded, f.metadata());
  EXPECT_EQ(run_python("check '" + ours + "' '" + dir.file("manifest.json") + "'"), 0);
  // Same data layout as Python's writer (alignment, then name): the data buffers match.
  const st::File back = st::File::open(ours);
  EXPECT_EQ(back.names(), f.names());
  const std::vector<uint8_t> a = read_bytes(dir.file("python.safetensors")), b = read_bytes(ours);
  EXPECT_TRUE(std::equal(a.begin() + static_cast<std::ptrdiff_t>(f.header().data_start), a.end(),
                         b.begin() + static_cast<std::ptrdiff_t>(back.header().data_start), b.end()));

  // The check can fail: flip one data byte of a copy and Python must report a mismatch.
  std::vector<uint8_t> corrupted = b;
  corrupted.at(back.header().data_start + 5) ^= 0x5A;
  write_bytes(dir.file("corrupted.safetensors"), corrupted);
  EXPECT_NE(run_python("check '" + dir.file("corrupted.safetensors") + "' '" + dir.file("manifest.json") + "' 2>/dev/null"), 0);
}
