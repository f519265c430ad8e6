// Progress (a bar on a terminal, else one line per tensor) and the final summary (text or JSON).
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace quanto::cli {

struct TensorRecord {
  std::string name;
  std::vector<int64_t> shape;
  std::string dtype;      // "bf16"
  bool quantized = false;
  std::string qdesc;      // "qint4/g128", "qint8", "qint4/ch" (quantized) or the copy reason
  uint64_t numel = 0;
  uint64_t in_bytes = 0;
  uint64_t out_bytes = 0;
  double sqnr_db = 0;     // quantized only
};

class Progress {
 public:
  // `out`: where lines/bar go; `bar`: draw a bar (a terminal) instead of lines; `quiet`: neither.
  Progress(size_t total, FILE* out, bool bar, bool quiet);
  void done(const TensorRecord& r);
  void finish();

 private:
  size_t total_, count_ = 0;
  FILE* out_;
  bool bar_, quiet_;
  std::chrono::steady_clock::time_point start_;
};

struct Summary {
  std::string input, output, weights, optimizer;
  std::string activations = "none";  // "qint8 (dynamic)" with --dynamic-activations
  bool dry_run = false;
  std::vector<TensorRecord> records;
  std::vector<std::string> notes, copied_files, skipped_files, shards;
  double seconds = 0;
  int threads = 0;
};

void print_summary(FILE* out, const Summary& s);
nlohmann::json summary_json(const Summary& s);

// One per-tensor line (also used by the tests' expectations of the format).
std::string tensor_line(size_t index, size_t total, const TensorRecord& r);

}  // namespace quanto::cli
