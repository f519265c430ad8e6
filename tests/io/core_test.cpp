// The torch-free safetensors layer: dtype table, write/parse round trips, header layout,
// mapping, atomic replacement.
#include <quanto/safetensors.h>

#include "test_util.h"

#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <random>
#include <sys/resource.h>

namespace st = quanto::safetensors;
using quanto::io_test::read_bytes;
using quanto::io_test::TempDir;
using quanto::io_test::write_bytes;

namespace {

const std::vector<st::Dtype> kAllDtypes = {
    st::Dtype::BOOL, st::Dtype::U8, st::Dtype::I8, st::Dtype::F8_E5M2, st::Dtype::F8_E4M3,
    st::Dtype::F8_E8M0, st::Dtype::F8_E4M3FNUZ, st::Dtype::F8_E5M2FNUZ, st::Dtype::I16, st::Dtype::U16,
    st::Dtype::F16, st::Dtype::BF16, st::Dtype::I32, st::Dtype::U32, st::Dtype::F32, st::Dtype::F64,
    st::Dtype::I64, st::Dtype::U64, st::Dtype::C64};

std::vector<uint8_t> random_bytes(size_t n, std::mt19937& rng) {
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

std::string header_json(const std::vector<uint8_t>& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file.at(i);
  return std::string(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
}

}  // namespace

TEST(Dtype, NamesAndSizes) {
  EXPECT_EQ(kAllDtypes.size(), 19u);
  for (st::Dtype d : kAllDtypes) {
    EXPECT_EQ(st::dtype_from_name(st::dtype_name(d)), d);
  }
  EXPECT_EQ(st::element_size(st::Dtype::BOOL), 1u);
  EXPECT_EQ(st::element_size(st::Dtype::F8_E4M3), 1u);
  EXPECT_EQ(st::element_size(st::Dtype::BF16), 2u);
  EXPECT_EQ(st::element_size(st::Dtype::U32), 4u);
  EXPECT_EQ(st::element_size(st::Dtype::C64), 8u);
  EXPECT_EQ(st::dtype_name(st::Dtype::F8_E4M3FNUZ), "F8_E4M3FNUZ");
  EXPECT_FALSE(st::dtype_from_name("F4").has_value());
  EXPECT_FALSE(st::dtype_from_name("f32").has_value());
  EXPECT_FALSE(st::dtype_from_name("").has_value());
}

TEST(Safetensors, RoundTripEveryDtypeZeroDimEmptyAndMetadata) {
  TempDir dir;
  std::mt19937 rng(1234);
  std::vector<std::vector<uint8_t>> storage;
  std::vector<st::TensorView> views;
  for (st::Dtype d : kAllDtypes) {
    const std::vector<uint64_t> shape = {3, 5};
    storage.push_back(random_bytes(15 * st::element_size(d), rng));
    views.push_back({"t_" + std::string(st::dtype_name(d)), d, shape, storage.back().data(), storage.back().size()});
  }
  storage.push_back(random_bytes(4, rng));
  views.push_back({"scalar", st::Dtype::F32, {}, storage.back().data(), 4});  // 0-dim
  views.push_back({"empty", st::Dtype::F16, {0, 7}, nullptr, 0});
  views.push_back({"empty_scalarish", st::Dtype::I64, {3, 0}, nullptr, 0});
  views.push_back({"ünïcode name ✓", st::Dtype::U8, {1}, storage.back().data(), 1});
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"quanto.version", "1"}, {"quote\"and\\slash", "line\nbreak ✓"}};
  const std::string path = dir.file("model.safetensors");
  st::write_file(path, views, metadata);

  const std::vector<uint8_t> file = read_bytes(path);
  const st::Header h = st::parse(file.data(), file.size());
  EXPECT_EQ(h.metadata, metadata);
  ASSERT_EQ(h.tensors.size(), views.size());
  for (const st::TensorView& v : views) {
    SCOPED_TRACE(v.name);
    const st::TensorEntry* e = h.find(v.name);
    ASSERT_NE(e, nullptr);
    EXPECT_EQ(e->dtype, v.dtype);
    EXPECT_EQ(e->shape, v.shape);
    ASSERT_EQ(e->nbytes(), v.nbytes);
    if (v.nbytes) {
      EXPECT_EQ(std::memcmp(file.data() + h.data_start + e->begin, v.data, v.nbytes), 0);
    }
  }
  EXPECT_EQ(h.find("missing"), nullptr);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});  // no temporary left
}

TEST(Safetensors, LayoutOrdersByAlignmentThenNameAndPadsWithSpaces) {
  std::vector<uint8_t> b(64, 0);
  const std::vector<st::TensorView> views = {
      {"z8", st::Dtype::U8, {3}, b.data(), 3},   {"a8", st::Dtype::I8, {1}, b.data(), 1},
      {"m64", st::Dtype::F64, {1}, b.data(), 8}, {"b16", st::Dtype::BF16, {2}, b.data(), 4},
      {"a32", st::Dtype::F32, {1}, b.data(), 4}, {"c64", st::Dtype::I64, {1}, b.data(), 8},
  };
  const st::Layout l = st::layout(views, {{"k", "v"}});
  std::vector<std::string> order;
  for (const st::TensorView* v : l.order) order.push_back(v->name);
  EXPECT_EQ(order, (std::vector<std::string>{"c64", "m64", "a32", "b16", "a8", "z8"}));
  EXPECT_EQ(l.header.size() % 8, 0u);
  const std::vector<uint8_t> bytes(l.header.begin(), l.header.end());
  const std::string json = header_json(bytes);
  EXPECT_EQ(json.size() + 8, l.header.size());
  EXPECT_EQ(json.front(), '{');
  const size_t close = json.find_last_of('}');
  EXPECT_EQ(json.find_first_not_of(' ', close + 1), std::string::npos) << "padding must be spaces";
  EXPECT_LT(json.size() - close - 1, 8u);
  // Offsets follow the order, contiguous from 0.
  std::vector<uint8_t> file(bytes);
  file.resize(file.size() + 28);
  const st::Header h = st::parse(file.data(), file.size());
  std::vector<std::string> parsed;
  for (const auto& t : h.tensors) parsed.push_back(t.name);
  EXPECT_EQ(parsed, order);
  EXPECT_EQ(h.data_start % 8, 0u);
}

TEST(Safetensors, WriterRefusesBadInput) {
  TempDir dir;
  std::vector<uint8_t> b(16, 0);
  const std::string path = dir.file("x.safetensors");
  EXPECT_THROW(st::write_file(path, {{"a", st::Dtype::F32, {2}, b.data(), 8}, {"a", st::Dtype::F32, {2}, b.data(), 8}}),
               std::invalid_argument);
  EXPECT_THROW(st::write_file(path, {{"a", st::Dtype::F32, {2}, b.data(), 7}}), std::invalid_argument);
  EXPECT_THROW(st::write_file(path, {{"a", st::Dtype::F32, {3}, b.data(), 8}}), std::invalid_argument);
  EXPECT_THROW(st::write_file(path, {{"__metadata__", st::Dtype::U8, {1}, b.data(), 1}}), std::invalid_argument);
  EXPECT_THROW(st::write_file(path, {{"a", st::Dtype::U8, {1}, nullptr, 1}}), std::invalid_argument);
  EXPECT_THROW(st::write_file(path, {{"a", st::Dtype::F64, {1ull << 62}, b.data(), 8}}), std::invalid_argument);
  EXPECT_THROW(st::write_file(path, {{"bad\xff", st::Dtype::U8, {1}, b.data(), 1}}), std::invalid_argument);
  try {
    st::write_file(path, {{"w", st::Dtype::F32, {2}, b.data(), 8}, {"w", st::Dtype::F32, {2}, b.data(), 8}});
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("duplicate tensor name \"w\""), std::string::npos) << e.what();
  }
  EXPECT_TRUE(dir.entries().empty()) << "a refused write must create nothing";
}

TEST(Safetensors, ParseAcceptsLeadingSpacesAndZeroSizedTensorsAnywhere) {
  // Leading spaces in the header; zero-sized tensors share offsets with neighbours.
  const std::string json =
      R"(   {"e":{"dtype":"F32","shape":[0],"data_offsets":[4,4]},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]}})";
  std::vector<uint8_t> file(8);
  file[0] = static_cast<uint8_t>(json.size());
  file.insert(file.end(), json.begin(), json.end());
  file.insert(file.end(), {1, 2, 3, 4, 5, 6});
  const st::Header h = st::parse(file.data(), file.size());
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[1].name, "e");
  EXPECT_EQ(h.tensors[2].name, "b");
  EXPECT_EQ(h.tensors[2].numel(), 2u);
}

TEST(MappedFile, MapsWholeFileAndNamesPathOnErrors) {
  TempDir dir;
  write_bytes(dir.file("a.bin"), {1, 2, 3});
  st::MappedFile m = st::MappedFile::open(dir.file("a.bin"));
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m.data()[2], 3);
  st::MappedFile moved = std::move(m);
  EXPECT_EQ(m.data(), nullptr);
  EXPECT_EQ(moved.size(), 3u);

  write_bytes(dir.file("empty.bin"), {});
  const st::MappedFile e = st::MappedFile::open(dir.file("empty.bin"));
  EXPECT_EQ(e.size(), 0u);
  EXPECT_THROW(st::parse(e.data(), e.size()), st::FormatError);

  try {
    st::MappedFile::open(dir.file("nope.bin"));
    ADD_FAILURE();
  } catch (const std::runtime_error& err) {
    EXPECT_NE(std::string(err.what()).find("nope.bin"), std::string::npos) << err.what();
  }
  try {
    st::MappedFile::open(dir.path().string());
    ADD_FAILURE();
  } catch (const std::runtime_error& err) {
    EXPECT_NE(std::string(err.what()).find("not a regular file"), std::string::npos) << err.what();
  }
}

// A write that fails half-way (the file-size limit makes write() fail with EFBIG) leaves the
// previous file byte for byte and no temporary behind.
TEST(Atomicity, FailedWriteLeavesTheOldFile) {
  TempDir dir;
  const std::string path = dir.file("model.safetensors");
  std::vector<uint8_t> small(16, 7);
  st::write_file(path, {{"old", st::Dtype::U8, {16}, small.data(), 16}}, {{"v", "old"}});
  const std::vector<uint8_t> before = read_bytes(path);

  std::vector<uint8_t> big(1 << 20, 9);
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
  auto* previous_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);
  bool threw = false;
  try {
    st::write_file(path, {{"new", st::Dtype::U8, {big.size()}, big.data(), big.size()}});
  } catch (const std::runtime_error& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, previous_handler);
  EXPECT_TRUE(threw);
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});

  // And a successful write replaces it whole.
  st::write_file(path, {{"new", st::Dtype::U8, {big.size()}, big.data(), big.size()}});
  const std::vector<uint8_t> after = read_bytes(path);
  const st::Header h = st::parse(after.data(), after.size());
  ASSERT_NE(h.find("new"), nullptr);
  EXPECT_EQ(h.find("old"), nullptr);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"model.safetensors"});
}

TEST(Atomicity, WriteIntoMissingFolderFailsClearly) {
  TempDir dir;
  try {
    st::write_file(dir.file("no/such/folder/x.safetensors"), {});
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("x.safetensors"), std::string::npos) << e.what();
  }
  // A folder in the way of the target: rename fails and nothing is left behind.
  std::filesystem::create_directory(dir.file("taken"));
  EXPECT_THROW(st::write_file(dir.file("taken"), {}), std::runtime_error);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"taken"});
}
