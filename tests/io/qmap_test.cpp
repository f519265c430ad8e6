// The quantization map: parse/dump/read/write and its validation.
#include <quanto/qmap.h>

#include "test_util.h"

#include <gtest/gtest.h>

namespace qm = quanto::qmap;
using quanto::io_test::read_bytes;
using quanto::io_test::TempDir;

namespace {

// The message parse gives for a map holding one module "fc" with this entry ("accepted" if none).
std::string error_of(const std::string& entry) {
  try {
    qm::parse("{\"fc\": " + entry + "}");
  } catch (const qm::MapError& e) {
    return e.what();
  }
  return "accepted";
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(Qmap, ParsesOptimumQuantoShape) {
  // json.dump(quantization_map(model), f, indent=4) as optimum-quanto writes it.
  const char* text = R"({
    "encoder.layer.0.attention.self.query": {
        "weights": "qint4",
        "activations": "none"
    },
    "classifier": {
        "weights": "qfloat8",
        "activations": "qint8"
    }
})";
  const qm::QuantizationMap m = qm::parse(text);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m.at("encoder.layer.0.attention.self.query"), (qm::Entry{"qint4", "none"}));
  EXPECT_EQ(m.at("classifier"), (qm::Entry{"qfloat8", "qint8"}));
  EXPECT_TRUE(qm::parse("{}").empty());
}

TEST(Qmap, DumpParseRoundTripAndAtomicWrite) {
  qm::QuantizationMap m;
  for (const char* w : {"qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2", "none"}) {
    m[std::string("layers.") + w] = {w, std::string(w) == "qint8" ? "qint8" : "none"};
  }
  m["ünï.cøde"] = {"qint8", "qfloat8_e5m2"};
  EXPECT_EQ(qm::parse(qm::dump(m)), m);

  TempDir dir;
  const std::string path = dir.file("quanto_qmap.json");
  qm::write(path, m);
  EXPECT_EQ(qm::read(path), m);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"quanto_qmap.json"});
  const std::vector<uint8_t> bytes = read_bytes(path);
  EXPECT_EQ(bytes.back(), '\n');
  EXPECT_NE(std::string(bytes.begin(), bytes.end()).find("\n    \"layers.qint2\": {\n        \"activations\""),
            std::string::npos)
      << "4-space indent like optimum-quanto";
}

TEST(Qmap, KnownNamesAndErrors) {
  for (const char* n : {"none", "qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2"}) {
    EXPECT_TRUE(qm::is_known_qtype_name(n)) << n;
  }
  for (const char* n : {"", "None", "int8", "qint3", "qfloat8_e4m3", "QINT8"}) {
    EXPECT_FALSE(qm::is_known_qtype_name(n)) << n;
  }
  EXPECT_THROW(qm::dump({{"fc", {"qint3", "none"}}}), qm::MapError);
  EXPECT_THROW(qm::dump({{"fc", {"qint8", "int8"}}}), qm::MapError);
  TempDir dir;
  try {
    qm::read(dir.file("missing.json"));
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.json"), std::string::npos);
  }
  // A failed dump writes nothing.
  EXPECT_THROW(qm::write(dir.file("q.json"), {{"fc", {"bad", "none"}}}), qm::MapError);
  EXPECT_TRUE(dir.entries().empty());
}

TEST(Qmap, OptionalEntriesQuantoWrites) {
  // quanto.quantization_map: a non-default group size and Calibration streamlining.
  const char* text = R"({
    "fc1": {"weights": "qint4", "activations": "none", "group_size": 32},
    "fc2": {"weights": "qint2", "activations": "none", "group_size": null},
    "fc3": {"weights": "qint8", "activations": "qint8", "quantize_output": false},
    "fc4": {"weights": "none", "activations": "qfloat8", "quantize_output": true}
})";
  const qm::QuantizationMap m = qm::parse(text);
  EXPECT_EQ(m.at("fc1"), (qm::Entry{"qint4", "none", 32}));
  EXPECT_EQ(m.at("fc2"), (qm::Entry{"qint2", "none"})) << "null is the default rule";
  EXPECT_EQ(m.at("fc3"), (qm::Entry{"qint8", "qint8", std::nullopt, false}));
  EXPECT_EQ(m.at("fc4").quantize_output, std::optional<bool>(true));
  EXPECT_NE(m.at("fc1"), (qm::Entry{"qint4", "none"}));
  EXPECT_EQ(qm::parse(qm::dump(m)), m);
  const std::string dumped = qm::dump(m);
  EXPECT_NE(dumped.find("\"group_size\": 32"), std::string::npos) << dumped;
  EXPECT_NE(dumped.find("\"quantize_output\": false"), std::string::npos) << dumped;
  EXPECT_EQ(qm::dump({{"fc", {"qint4", "none"}}}).find("group_size"), std::string::npos) << "absent stays absent";

  EXPECT_TRUE(has(error_of(R"({"weights": "qint4", "activations": "none", "group_size": true})"),
                  "\"group_size\" must be a positive integer, got true"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint4", "activations": "none", "group_size": [32]})"),
                  "\"group_size\" must be a positive integer"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint4", "activations": "none", "group_size": -1})"), "got -1"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qfloat8", "activations": "none", "group_size": 32})"),
                  "applies to qint2/qint4 weights only, not qfloat8"));
  EXPECT_TRUE(has(error_of(R"({"weights": "none", "activations": "qint8", "group_size": 32})"), "not none"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "qint8", "quantize_output": null})"),
                  "\"quantize_output\" must be true or false, got null"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "none", "group": 64})"), "unknown field \"group\""));
  // dump refuses what parse would refuse
  EXPECT_THROW(qm::dump({{"fc", {"qint8", "none", 32}}}), qm::MapError);
  EXPECT_THROW(qm::dump({{"fc", {"qint4", "none", 0}}}), qm::MapError);
}

TEST(Qmap, DynamicActivationsEntry) {
  // Dynamic (per-token) activations: static "activations" stays "none" (optimum-quanto then runs
  // the layer weight-only), the qtype goes under "dynamic_activations"; null reads as absent.
  const char* text = R"({
    "fc1": {"weights": "qint8", "activations": "none", "dynamic_activations": "qint8"},
    "fc2": {"weights": "qint4", "activations": "none", "dynamic_activations": "qfloat8_e5m2"},
    "fc3": {"weights": "qint8", "activations": "none", "dynamic_activations": null}
})";
  const qm::QuantizationMap m = qm::parse(text);
  EXPECT_EQ(m.at("fc1"), (qm::Entry{"qint8", "none", std::nullopt, std::nullopt, "qint8"}));
  EXPECT_EQ(m.at("fc2").dynamic_activations, std::optional<std::string>("qfloat8_e5m2"));
  EXPECT_EQ(m.at("fc3"), (qm::Entry{"qint8", "none"}));
  EXPECT_NE(m.at("fc1"), (qm::Entry{"qint8", "none"}));
  EXPECT_EQ(qm::parse(qm::dump(m)), m);
  const std::string dumped = qm::dump(m);
  EXPECT_NE(dumped.find("\"dynamic_activations\": \"qint8\""), std::string::npos) << dumped;
  EXPECT_EQ(qm::dump({{"fc", {"qint8", "none"}}}).find("dynamic_activations"), std::string::npos);

  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "none", "dynamic_activations": "qint4"})"),
                  "must be qint8 or a float8 qtype")) << "4-bit activations do not exist";
  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "none", "dynamic_activations": "none"})"),
                  "must be qint8 or a float8 qtype"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "none", "dynamic_activations": "int8"})"),
                  "got \"int8\""));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "none", "dynamic_activations": 8})"), "got 8"));
  EXPECT_TRUE(has(error_of(R"({"weights": "qint8", "activations": "qint8", "dynamic_activations": "qint8"})"),
                  "needs \"activations\": \"none\""));
  // dump refuses what parse would refuse
  EXPECT_THROW(qm::dump({{"fc", {"qint8", "qint8", std::nullopt, std::nullopt, "qint8"}}}), qm::MapError);
  EXPECT_THROW(qm::dump({{"fc", {"qint8", "none", std::nullopt, std::nullopt, "qint2"}}}), qm::MapError);
}
