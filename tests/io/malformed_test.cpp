// The hand-made malformed corpora (tests/fuzz/corpus_*malformed, made by make_corpus.py): each
// file must be rejected with the error its row in EXPECTED.tsv names, and every file has a row.
#include <quanto/qmap.h>
#include <quanto/safetensors.h>

#include "test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace st = quanto::safetensors;
namespace fs = std::filesystem;
using quanto::io_test::read_bytes;

namespace {

std::map<std::string, std::string> read_table(const fs::path& folder) {
  std::ifstream in(folder / "EXPECTED.tsv");
  EXPECT_TRUE(in) << "missing " << (folder / "EXPECTED.tsv");
  std::map<std::string, std::string> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t tab = line.find('\t');
    EXPECT_NE(tab, std::string::npos) << line;
    if (tab == std::string::npos) continue;
    rows[line.substr(0, tab)] = line.substr(tab + 1);
  }
  return rows;
}

void expect_table_covers_folder(const fs::path& folder, const std::map<std::string, std::string>& rows) {
  size_t files = 0;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (name == "EXPECTED.tsv") continue;
    ++files;
    EXPECT_TRUE(rows.count(name)) << name << " has no expected error in EXPECTED.tsv";
  }
  EXPECT_EQ(files, rows.size()) << "EXPECTED.tsv names files that do not exist";
}

const fs::path kFuzz = fs::path(QUANTO_SOURCE_DIR) / "tests" / "fuzz";

}  // namespace

TEST(Malformed, SafetensorsCorpusEachFileHasItsError) {
  const fs::path folder = kFuzz / "corpus_malformed";
  const auto rows = read_table(folder);
  ASSERT_GE(rows.size(), 30u);
  expect_table_covers_folder(folder, rows);
  std::map<std::string, std::string> seen;  // message -> file: distinct rules give distinct messages
  for (const auto& [name, expected] : rows) {
    SCOPED_TRACE(name);
    const std::vector<uint8_t> bytes = read_bytes((folder / name).string());
    try {
      st::parse(bytes.data(), bytes.size());
      ADD_FAILURE() << name << " was accepted";
    } catch (const st::FormatError& e) {
      EXPECT_NE(std::string(e.what()).find(expected), std::string::npos)
          << name << ": error \"" << e.what() << "\" lacks \"" << expected << "\"";
    }
    // Through the mapping too (the path the ATen layer and the CLI take).
    const st::MappedFile m = st::MappedFile::open((folder / name).string());
    EXPECT_THROW(st::parse(m.data(), m.size()), st::FormatError);
  }
}

TEST(Malformed, QmapCorpusEachFileHasItsError) {
  const fs::path folder = kFuzz / "corpus_qmap_malformed";
  const auto rows = read_table(folder);
  ASSERT_GE(rows.size(), 10u);
  expect_table_covers_folder(folder, rows);
  for (const auto& [name, expected] : rows) {
    SCOPED_TRACE(name);
    try {
      quanto::qmap::read((folder / name).string());
      ADD_FAILURE() << name << " was accepted";
    } catch (const quanto::qmap::MapError& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find(expected), std::string::npos) << name << ": error \"" << what << "\" lacks \"" << expected << "\"";
      EXPECT_NE(what.find(name), std::string::npos) << "the error should name the file: " << what;
    }
  }
}

TEST(Malformed, SeedCorpusIsValid) {
  // The fuzzing seeds are valid files written by Python's safetensors: they must parse.
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(kFuzz / "corpus_seed")) {
    const std::string path = e.path().string();
    if (e.path().extension() == ".json") {
      EXPECT_NO_THROW(quanto::qmap::read(path)) << path;
    } else {
      const std::vector<uint8_t> bytes = read_bytes(path);
      EXPECT_NO_THROW(st::parse(bytes.data(), bytes.size())) << path;
    }
    ++n;
  }
  EXPECT_GE(n, 4u);
}

// Every strict prefix of a valid file is rejected (never accepted, never a crash). Each prefix is
// its own allocation so that the sanitizer build catches a read past its end.
TEST(Malformed, EveryTruncationOfAValidFileIsRejected) {
  const std::vector<uint8_t> bytes = read_bytes((kFuzz / "corpus_seed" / "small.st").string());
  ASSERT_NO_THROW(st::parse(bytes.data(), bytes.size()));
  for (size_t n = 0; n < bytes.size(); ++n) {
    const std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_THROW(st::parse(prefix.data(), prefix.size()), st::FormatError) << "prefix of " << n << " bytes";
  }
}
