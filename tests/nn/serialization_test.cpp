// quanto::save -> quanto::requantize into a freshly built model: identical outputs, optimum-quanto
// keys, files without quanto metadata, and clear errors.
#include <gtest/gtest.h>

#include <quanto/qmap.h>
#include <quanto/quantize.h>
#include <quanto/safetensors_aten.h>
#include <quanto/serialization.h>

#include <filesystem>
#include <fstream>

#include "models.h"
#include "test_util.h"

namespace {

namespace fs = std::filesystem;
using quanto_test::Net;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("quanto_nn_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter()++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  static int& counter() {
    static int c = 0;
    return c;
  }
  std::string str(const std::string& sub = "") const { return (path / sub).string(); }
};

at::Tensor tokens() { return at::tensor({1, 5, 7, 2, 9, 11, 3, 0}, at::kLong).reshape({2, 4}); }

// Quantizes, calibrates and (optionally) freezes a Net.
Net quantized_net(const std::string& weights, const std::string& activations, bool freeze, uint64_t seed = 0) {
  torch::manual_seed(seed);
  Net net(40, 64, 96, 5);
  quanto::Config cfg;
  cfg.weights = weights;
  cfg.activations = activations;
  Net q = quanto::quantize(net, cfg);
  if (activations != "none") {
    quanto::Calibration c;
    at::NoGradGuard g;
    for (int i = 0; i < 3; ++i) q(at::randint(0, 40, {4, 6}, at::kLong));
  }
  if (freeze) quanto::freeze(*q);
  return q;
}

TEST(Serialization, SaveRequantizeGivesIdenticalOutputsForEveryQType) {
  for (const std::string wq : {"qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fnuz", "qfloat8_e5m2"}) {
    for (const std::string aq : {"none", "qint8", "qfloat8"}) {
      SCOPED_TRACE(wq + " / " + aq);
      Net q = quantized_net(wq, aq, true);
      TempDir dir;
      quanto::save(*q, dir.str());
      torch::manual_seed(123);  // a fresh model with other random weights
      Net fresh(40, 64, 96, 5);
      quanto::requantize(*fresh, dir.str());
      EXPECT_TRUE(fresh->fc1->is_frozen());
      EXPECT_FALSE(fresh->fc1->weight.defined());  // no float weights
      at::NoGradGuard g;
      EXPECT_TRUE(at::equal(fresh(tokens()), q(tokens())));
      EXPECT_EQ(quanto::state_nbytes(*fresh), quanto::state_nbytes(*q));
    }
  }
}

TEST(Serialization, KeysAndMapAreOptimumQuantos) {
  quanto::ops::ForceGenericPath cpu_kernels(false);  // the CPU kernels' layouts, even under QUANTO_FORCE_GENERIC
  Net q = quantized_net("qint4", "qint8", true);
  TempDir dir;
  quanto::save(*q, dir.str());
  auto file = quanto::safetensors::File::open(dir.str("model.safetensors"));
  const auto names = file.names();
  const std::set<std::string> keys(names.begin(), names.end());
  const std::set<std::string> expected = {
      "embed.weight._data._data", "embed.weight._scale", "embed.weight._shift", "embed.input_scale",
      "embed.output_scale",       "norm.weight",         "norm.bias",           "norm.input_scale",
      "norm.output_scale",        "fc1.weight._data._data", "fc1.weight._scale", "fc1.weight._shift",
      "fc1.bias",                 "fc1.input_scale",     "fc1.output_scale",    "fc2.weight._data._data",
      "fc2.weight._scale",        "fc2.weight._shift",   "fc2.bias",            "fc2.input_scale",
      "fc2.output_scale",         "head.weight",         "head.bias"};
  EXPECT_EQ(keys, expected);
  // canonical layout on disk even though fc1 runs tiled in memory (64 in-features, one group of 64)
  EXPECT_EQ(q->fc1->qweight().bits.layout(), quanto::QBitsWeight::Layout::tiled);
  EXPECT_TRUE(at::equal(file.tensor("fc1.weight._data._data"), q->fc1->qweight().bits.canonical_data()));
  EXPECT_EQ(file.tensor("fc1.input_scale").dim(), 0);
  EXPECT_EQ(file.metadata().at("quanto.format_version"), "1");
  const auto map = quanto::qmap::read(dir.str("quanto_qmap.json"));
  EXPECT_EQ(map.size(), 4u);
  EXPECT_EQ(map.at("fc1").weights, "qint4");
  EXPECT_EQ(map.at("fc1").activations, "qint8");
  EXPECT_EQ(map.at("norm").weights, "none");
  EXPECT_EQ(map.at("embed").activations, "none");
}

TEST(Serialization, NotFrozenSavesLikeFrozen) {
  Net a = quantized_net("qint8", "none", false, 7);
  Net b = quantized_net("qint8", "none", true, 7);
  TempDir da, db;
  quanto::save(*a, da.str());
  quanto::save(*b, db.str());
  EXPECT_FALSE(a->fc1->is_frozen());  // save does not modify the model
  auto fa = quanto::safetensors::File::open(da.str("model.safetensors"));
  auto fb = quanto::safetensors::File::open(db.str("model.safetensors"));
  for (const auto& n : fb.names()) EXPECT_TRUE(at::equal(fa.tensor(n), fb.tensor(n))) << n;
}

TEST(Serialization, FileWithoutQuantoMetadataLoads) {
  // Group sizes are rebuilt from the shapes (docs/format.md's default rule), as for optimum-quanto's files.
  torch::manual_seed(3);
  Net net(40, 256, 160, 5);  // fc1: 256 in -> group 128; fc2: 160 in -> group 32
  quanto::Config cfg;
  cfg.weights = "qint4";
  Net q = quanto::quantize(net, cfg);
  quanto::freeze(*q);
  EXPECT_EQ(q->fc2->weight_group_size(), 32);
  TempDir dir, bare;
  quanto::save(*q, dir.str());
  auto file = quanto::safetensors::File::open(dir.str("model.safetensors"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& n : file.names()) tensors.emplace_back(n, file.tensor(n));
  quanto::safetensors::save(bare.str("model.safetensors"), tensors);  // no metadata
  fs::copy_file(dir.str("quanto_qmap.json"), bare.str("quanto_qmap.json"));
  Net fresh(40, 256, 160, 5);
  quanto::requantize(*fresh, bare.str());
  EXPECT_EQ(fresh->fc2->weight_group_size(), 32);
  at::NoGradGuard g;
  EXPECT_TRUE(at::equal(fresh(tokens()), q(tokens())));
}

// Copies `dir` to `bare` without the safetensors quanto metadata: what the map alone carries (the
// CLI's and Python quanto's files).
void copy_without_metadata(const TempDir& dir, const TempDir& bare) {
  auto file = quanto::safetensors::File::open(dir.str("model.safetensors"));
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& n : file.names()) tensors.emplace_back(n, file.tensor(n));
  quanto::safetensors::save(bare.str("model.safetensors"), tensors);
  fs::copy_file(dir.str("quanto_qmap.json"), bare.str("quanto_qmap.json"));
}

TEST(Serialization, NonDefaultGroupSizeTravelsInTheMap) {
  torch::manual_seed(4);
  Net net(40, 256, 160, 5);  // fc1: 256 in (default group 128); fc2: 160 in (default group 32)
  quanto::Config cfg;
  cfg.weights = "qint4";
  cfg.group_size = 32;
  Net q = quanto::quantize(net, cfg);
  quanto::freeze(*q);
  TempDir dir, bare;
  quanto::save(*q, dir.str());
  const auto map = quanto::qmap::read(dir.str("quanto_qmap.json"));
  EXPECT_EQ(map.at("fc1").group_size, std::optional<int64_t>(32));
  EXPECT_EQ(map.at("fc2").group_size, std::nullopt) << "the default group size is not written";
  copy_without_metadata(dir, bare);
  Net fresh(40, 256, 160, 5);
  quanto::requantize(*fresh, bare.str());
  EXPECT_EQ(fresh->fc1->weight_group_size(), 32);
  at::NoGradGuard g;
  EXPECT_TRUE(at::equal(fresh(tokens()), q(tokens())));

  // Without the entry the default group size is rebuilt, and the file's shapes do not fit it.
  TempDir nogs;
  auto m2 = map;
  m2.at("fc1").group_size.reset();
  fs::copy_file(bare.str("model.safetensors"), nogs.str("model.safetensors"));
  quanto::qmap::write(nogs.str("quanto_qmap.json"), m2);
  Net other(40, 256, 160, 5);
  EXPECT_THROW(quanto::requantize(*other, nogs.str()), c10::Error);

  // A group size that does not divide the layer's input features is an error naming the layer.
  TempDir bad;
  auto m3 = map;
  m3.at("fc1").group_size = 96;
  fs::copy_file(bare.str("model.safetensors"), bad.str("model.safetensors"));
  quanto::qmap::write(bad.str("quanto_qmap.json"), m3);
  try {
    Net third(40, 256, 160, 5);
    quanto::requantize(*third, bad.str());
    ADD_FAILURE() << "no error";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("fc1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("group_size 96"), std::string::npos) << msg;
  }
}

TEST(Serialization, StreamlinedOutputsTravelInTheMap) {
  Net q = quantized_net("qint8", "qint8", true, 5);
  TempDir dir, bare;
  quanto::save(*q, dir.str());
  const auto map = quanto::qmap::read(dir.str("quanto_qmap.json"));
  size_t off = 0;
  for (const auto& [name, e] : map) {
    if (e.quantize_output) {
      EXPECT_FALSE(*e.quantize_output) << name << ": only false is written";
      ++off;
    }
  }
  ASSERT_GT(off, 0u) << "Calibration streamlined no output of the test net";
  copy_without_metadata(dir, bare);
  Net fresh(40, 64, 96, 5);
  quanto::requantize(*fresh, bare.str());
  for (const auto& item : q->named_modules()) {
    const auto* a = quanto::nn::as_qmodule(*item.value());
    if (!a) continue;
    const auto* b = quanto::nn::as_qmodule(*fresh->named_modules()[item.key()]);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(a->quantizes_output(), b->quantizes_output()) << item.key();
  }
  at::NoGradGuard g;
  EXPECT_TRUE(at::equal(fresh(tokens()), q(tokens())));
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

TEST(Serialization, ClearErrors) {
  Net q = quantized_net("qint8", "none", true);
  TempDir dir;
  quanto::save(*q, dir.str());
  // a model with other shapes
  expect_error([&] { Net other(40, 64, 48, 5); quanto::requantize(*other, dir.str()); }, {"fc1", "shape"});
  // a map naming a module the model lacks
  {
    TempDir d2;
    fs::copy_file(dir.str("model.safetensors"), d2.str("model.safetensors"));
    auto map = quanto::qmap::read(dir.str("quanto_qmap.json"));
    map["decoder.fc9"] = {"qint8", "none"};
    quanto::qmap::write(d2.str("quanto_qmap.json"), map);
    expect_error([&] { Net fresh(40, 64, 96, 5); quanto::requantize(*fresh, d2.str()); }, {"decoder.fc9", "does not have"});
  }
  // a map naming a torch (non-quanto) layer
  {
    TempDir d2;
    fs::copy_file(dir.str("model.safetensors"), d2.str("model.safetensors"));
    auto map = quanto::qmap::read(dir.str("quanto_qmap.json"));
    map["head"] = {"qint8", "none"};
    quanto::qmap::write(d2.str("quanto_qmap.json"), map);
    expect_error([&] { Net fresh(40, 64, 96, 5); quanto::requantize(*fresh, d2.str()); }, {"head", "not a quanto layer"});
  }
  // a missing key, and an unexpected one
  {
    auto file = quanto::safetensors::File::open(dir.str("model.safetensors"));
    std::vector<std::pair<std::string, at::Tensor>> missing, extra;
    for (const auto& n : file.names()) {
      if (n != "fc2.weight._scale") missing.emplace_back(n, file.tensor(n));
      extra.emplace_back(n, file.tensor(n));
    }
    extra.emplace_back("fc3.weight", at::zeros({2}));
    TempDir d2, d3;
    quanto::safetensors::save(d2.str("model.safetensors"), missing);
    quanto::safetensors::save(d3.str("model.safetensors"), extra);
    fs::copy_file(dir.str("quanto_qmap.json"), d2.str("quanto_qmap.json"));
    fs::copy_file(dir.str("quanto_qmap.json"), d3.str("quanto_qmap.json"));
    expect_error([&] { Net fresh(40, 64, 96, 5); quanto::requantize(*fresh, d2.str()); },
                 {"fc2", "missing key 'weight._scale'"});
    expect_error([&] { Net fresh(40, 64, 96, 5); quanto::requantize(*fresh, d3.str()); }, {"fc3.weight"});
  }
  // not a safetensors file; no such directory
  {
    TempDir d2;
    std::ofstream(d2.str("model.safetensors")) << "this is not a safetensors file";
    fs::copy_file(dir.str("quanto_qmap.json"), d2.str("quanto_qmap.json"));
    expect_error([&] { Net fresh(40, 64, 96, 5); quanto::requantize(*fresh, d2.str()); }, {"model.safetensors"});
    expect_error([&] { Net fresh(40, 64, 96, 5); quanto::requantize(*fresh, d2.str("nope")); }, {"does not exist"});
  }
  // requantize into an already quantized model
  expect_error([&] { quanto::requantize(*q, dir.str()); }, {"already frozen"});
}

}  // namespace
