#include "report.h"

#include <algorithm>
#include <cmath>

#include "util.h"

namespace quanto::cli {
namespace {

std::string fmt_sqnr(double db) {
  if (std::isinf(db)) return db > 0 ? "exact" : "-inf dB";
  char b[32];
  std::snprintf(b, sizeof b, "%.1f dB", db);
  return b;
}

struct Totals {
  uint64_t in = 0, out = 0, q_numel = 0, q_out = 0, q_in = 0;
  size_t quantized = 0;
};

Totals totals(const Summary& s) {
  Totals t;
  for (const auto& r : s.records) {
    t.in += r.in_bytes;
    t.out += r.out_bytes;
    if (r.quantized) {
      ++t.quantized;
      t.q_numel += r.numel;
      t.q_out += r.out_bytes;
      t.q_in += r.in_bytes;
    }
  }
  return t;
}

std::vector<const TensorRecord*> worst(const Summary& s, size_t n) {
  std::vector<const TensorRecord*> q;
  for (const auto& r : s.records)
    if (r.quantized) q.push_back(&r);
  std::stable_sort(q.begin(), q.end(), [](auto* a, auto* b) { return a->sqnr_db < b->sqnr_db; });
  if (q.size() > n) q.resize(n);
  return q;
}

}  // namespace

std::string tensor_line(size_t index, size_t total, const TensorRecord& r) {
  const int w = static_cast<int>(std::to_string(total).size());
  char head[64];
  std::snprintf(head, sizeof head, "[%*zu/%*zu] ", w, index, w, total);
  std::string line = head + r.name + " " + shape_str(r.shape) + " " + r.dtype;
  if (r.quantized)
    line += " -> " + r.qdesc + "  " + human_bytes(r.in_bytes) + " -> " + human_bytes(r.out_bytes) + "  SQNR " +
            fmt_sqnr(r.sqnr_db);
  else if (r.out_bytes == 0 && r.in_bytes > 0)
    line += " " + r.qdesc + "  " + human_bytes(r.in_bytes);
  else
    line += " copied (" + r.qdesc + ")  " + human_bytes(r.in_bytes);
  return line;
}

Progress::Progress(size_t total, FILE* out, bool bar, bool quiet)
    : total_(total), out_(out), bar_(bar), quiet_(quiet), start_(std::chrono::steady_clock::now()) {}

void Progress::done(const TensorRecord& r) {
  ++count_;
  if (quiet_) return;
  if (!bar_) {
    std::fprintf(out_, "%s\n", tensor_line(count_, total_, r).c_str());
    std::fflush(out_);
    return;
  }
  const int width = 30;
  const int filled = total_ ? static_cast<int>(width * count_ / total_) : width;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string name = r.name.size() > 48 ? "..." + r.name.substr(r.name.size() - 45) : r.name;
  std::fprintf(out_, "\r\033[K[%s%s] %zu/%zu %5.1fs %s", std::string(filled, '#').c_str(),
               std::string(width - filled, ' ').c_str(), count_, total_, secs, name.c_str());
  std::fflush(out_);
}

void Progress::finish() {
  if (bar_ && !quiet_) {
    std::fprintf(out_, "\n");
    std::fflush(out_);
  }
}

void print_summary(FILE* out, const Summary& s) {
  const Totals t = totals(s);
  std::fprintf(out, "\n%s%s -> %s: %zu of %zu tensors quantized to %s (%s)\n", s.dry_run ? "[dry run] " : "",
               s.input.c_str(), s.output.c_str(), t.quantized, s.records.size(), s.weights.c_str(),
               s.optimizer.c_str());
  if (s.activations != "none") std::fprintf(out, "  activations of Linear-like layers: %s\n", s.activations.c_str());
  std::fprintf(out, "  size: %s -> %s (%.2fx smaller)\n", human_bytes(t.in).c_str(), human_bytes(t.out).c_str(),
               t.out ? static_cast<double>(t.in) / static_cast<double>(t.out) : 0.0);
  if (t.quantized)
    std::fprintf(out, "  quantized weights: %s -> %s, %.3f bits per weight (scales included)\n",
                 human_bytes(t.q_in).c_str(), human_bytes(t.q_out).c_str(),
                 8.0 * static_cast<double>(t.q_out) / static_cast<double>(t.q_numel));
  std::fprintf(out, "  time: %.2f s on %d thread(s)\n", s.seconds, s.threads);
  const auto w = worst(s, 5);
  if (!w.empty()) {
    std::fprintf(out, "  worst layers by SQNR:\n");
    for (const auto* r : w) std::fprintf(out, "    %-10s %s\n", fmt_sqnr(r->sqnr_db).c_str(), r->name.c_str());
  }
  if (!s.copied_files.empty()) {
    std::string l;
    for (const auto& f : s.copied_files) l += (l.empty() ? "" : ", ") + f;
    std::fprintf(out, "  files copied: %s\n", l.c_str());
  }
  if (!s.skipped_files.empty()) {
    std::string l;
    for (const auto& f : s.skipped_files) l += (l.empty() ? "" : ", ") + f;
    std::fprintf(out, "  files left out (other weight formats): %s\n", l.c_str());
  }
  for (const auto& n : s.notes) std::fprintf(out, "  note: %s\n", n.c_str());
  std::fflush(out);
}

nlohmann::json summary_json(const Summary& s) {
  using json = nlohmann::json;
  const Totals t = totals(s);
  json tensors = json::array();
  for (const auto& r : s.records) {
    json j = {{"name", r.name}, {"shape", r.shape}, {"dtype", r.dtype}, {"quantized", r.quantized},
              {"bytes_in", r.in_bytes}, {"bytes_out", r.out_bytes}};
    if (r.quantized) {
      j["qtype"] = r.qdesc;
      j["sqnr_db"] = std::isfinite(r.sqnr_db) ? json(r.sqnr_db) : json(nullptr);
    } else {
      j["reason"] = r.qdesc;
    }
    tensors.push_back(j);
  }
  json worst_layers = json::array();
  for (const auto* r : worst(s, 5))
    worst_layers.push_back({{"name", r->name}, {"sqnr_db", std::isfinite(r->sqnr_db) ? json(r->sqnr_db) : json(nullptr)}});
  return {{"input", s.input},
          {"output", s.output},
          {"dry_run", s.dry_run},
          {"weights", s.weights},
          {"optimizer", s.optimizer},
          {"activations", s.activations},
          {"tensors_total", s.records.size()},
          {"tensors_quantized", t.quantized},
          {"bytes_in", t.in},
          {"bytes_out", t.out},
          {"quantized_weights_bytes_in", t.q_in},
          {"quantized_weights_bytes_out", t.q_out},
          {"bits_per_weight", t.q_numel ? json(8.0 * static_cast<double>(t.q_out) / static_cast<double>(t.q_numel))
                                        : json(nullptr)},
          {"seconds", s.seconds},
          {"threads", s.threads},
          {"shards", s.shards},
          {"copied_files", s.copied_files},
          {"skipped_files", s.skipped_files},
          {"notes", s.notes},
          {"worst_layers", worst_layers},
          {"tensors", tensors}};
}

}  // namespace quanto::cli
