// The ATen layer: File (zero-copy tensors from the mapping, lifetime, misaligned data) and save.
#include <quanto/qmap.h>
#include <quanto/qtype.h>
#include <quanto/safetensors_aten.h>

#include "test_util.h"

#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/Generator.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <cstring>

namespace st = quanto::safetensors;
using quanto::io_test::read_bytes;
using quanto::io_test::TempDir;
using quanto::io_test::write_bytes;

namespace {

std::vector<uint8_t> bytes_of(const at::Tensor& t) {
  const at::Tensor c = t.contiguous();
  const auto* p = static_cast<const uint8_t*>(c.const_data_ptr());
  return std::vector<uint8_t>(p, p + c.nbytes());
}

// Random bits of any dtype (NaN payloads included for floats: comparisons are on bytes).
at::Tensor random_tensor(c10::ScalarType type, std::vector<int64_t> shape, at::Generator& gen) {
  if (type == c10::ScalarType::Bool) return at::randint(0, 2, shape, gen, at::kByte).to(at::kBool);
  const int64_t size = static_cast<int64_t>(c10::elementSize(type));
  std::vector<int64_t> byte_shape = shape;
  if (byte_shape.empty()) byte_shape.push_back(1);
  byte_shape.back() *= size;
  at::Tensor raw = at::randint(0, 256, byte_shape, gen, at::kByte);
  return raw.view(type).reshape(shape);
}

std::string expect_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  }
  ADD_FAILURE() << "no c10::Error thrown";
  return {};
}

}  // namespace

TEST(AtenDtype, MappingIsABijection) {
  for (int i = 0; i <= static_cast<int>(st::Dtype::C64); ++i) {
    const auto d = static_cast<st::Dtype>(i);
    const c10::ScalarType s = st::to_scalar_type(d);
    EXPECT_EQ(st::from_scalar_type(s), d) << st::dtype_name(d);
    EXPECT_EQ(c10::elementSize(s), st::element_size(d)) << st::dtype_name(d);
  }
  EXPECT_EQ(st::to_scalar_type(st::Dtype::F8_E4M3), c10::ScalarType::Float8_e4m3fn);
  EXPECT_EQ(st::to_scalar_type(st::Dtype::BF16), c10::ScalarType::BFloat16);
  EXPECT_NE(expect_error([] { st::from_scalar_type(c10::ScalarType::ComplexDouble); }).find("ComplexDouble"),
            std::string::npos);
}

TEST(AtenFile, RoundTripEveryDtypeBitExact) {
  TempDir dir;
  at::Generator gen = at::detail::createCPUGenerator(42);
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (int i = 0; i <= static_cast<int>(st::Dtype::C64); ++i) {
    const auto d = static_cast<st::Dtype>(i);
    tensors.emplace_back("t." + std::string(st::dtype_name(d)), random_tensor(st::to_scalar_type(d), {4, 3}, gen));
  }
  tensors.emplace_back("scalar", at::scalar_tensor(3.5, at::kFloat));
  tensors.emplace_back("empty", at::zeros({0, 5}, at::kHalf));
  tensors.emplace_back("transposed", at::arange(12, at::kFloat).reshape({3, 4}).t());  // not contiguous
  const std::map<std::string, std::string> metadata = {{"quanto.format_version", "1"}, {"k", "v"}};
  const std::string path = dir.file("m.safetensors");
  st::save(path, tensors, metadata);

  const st::File f = st::File::open(path);
  EXPECT_EQ(f.metadata(), metadata);
  EXPECT_EQ(f.names().size(), tensors.size());
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(f.contains(name));
    const at::Tensor u = f.tensor(name);
    EXPECT_EQ(u.scalar_type(), t.scalar_type());
    EXPECT_EQ(u.sizes(), t.sizes());
    EXPECT_TRUE(u.is_contiguous());
    EXPECT_EQ(bytes_of(u), bytes_of(t));
  }
  EXPECT_EQ(f.tensor("scalar").dim(), 0);
  EXPECT_EQ(f.tensor("scalar").item<float>(), 3.5f);
  EXPECT_TRUE(at::equal(f.tensor("transposed"), at::arange(12, at::kFloat).reshape({3, 4}).t()));
}

TEST(AtenFile, ZeroCopyViewOutlivesTheFileAndNeverWritesIt) {
  TempDir dir;
  at::Generator gen = at::detail::createCPUGenerator(7);
  const at::Tensor w = at::randn({64, 32}, gen);
  const std::string path = dir.file("w.safetensors");
  st::save(path, {{"w", w}});
  const std::vector<uint8_t> before = read_bytes(path);

  at::Tensor view;
  {
    const st::File f = st::File::open(path);
    view = f.tensor("w");
    const st::TensorEntry* e = f.header().find("w");
    ASSERT_NE(e, nullptr);
    // The tensor's memory is inside the mapping: no copy.
    const st::File again = f;  // copies share the mapping
    EXPECT_EQ(again.tensor("w").const_data_ptr(), view.const_data_ptr());
  }
  // The File is gone; the tensor keeps the mapping alive.
  EXPECT_TRUE(at::equal(view, w));
  view.mul_(2);  // private copy-on-write pages: the file is untouched
  EXPECT_EQ(read_bytes(path), before);
  EXPECT_TRUE(at::equal(st::File::open(path).tensor("w"), w));
}

TEST(AtenFile, MisalignedDataIsCopied) {
  // A U8[3] tensor first puts the F32 data at an odd offset (valid: the format has no alignment rule).
  const std::string json = R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                           R"("f":{"dtype":"F32","shape":[2],"data_offsets":[3,11]}})";
  std::string padded = json + std::string((8 - json.size() % 8) % 8, ' ');
  const float values[2] = {1.25f, -7.5f};
  const uint8_t u8[3] = {1, 2, 3};
  // Sized once and filled in place: growing it with insert() trips GCC 12's -Warray-bounds false
  // positive in C++20 mode (a memmove it cannot bound), which -Werror turns into a build failure.
  std::vector<uint8_t> file(8 + padded.size() + sizeof(u8) + sizeof(values));
  for (int i = 0; i < 8; ++i) file[i] = static_cast<uint8_t>((padded.size() >> (8 * i)) & 0xFF);
  std::memcpy(file.data() + 8, padded.data(), padded.size());
  std::memcpy(file.data() + 8 + padded.size(), u8, sizeof(u8));
  std::memcpy(file.data() + 8 + padded.size() + sizeof(u8), values, sizeof(values));
  TempDir dir;
  write_bytes(dir.file("odd.safetensors"), file);
  const st::File f = st::File::open(dir.file("odd.safetensors"));
  const at::Tensor t = f.tensor("f");
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.const_data_ptr()) % alignof(float), 0u);
  EXPECT_EQ(t[0].item<float>(), 1.25f);
  EXPECT_EQ(t[1].item<float>(), -7.5f);
  EXPECT_EQ(f.tensor("a")[2].item<uint8_t>(), 3);
}

TEST(AtenFile, ErrorsNameThePathAndTheRule) {
  TempDir dir;
  const std::string missing = expect_error([&] { st::File::open(dir.file("none.safetensors")); });
  EXPECT_NE(missing.find("none.safetensors"), std::string::npos) << missing;

  write_bytes(dir.file("bad.safetensors"), {5, 0, 0, 0, 0, 0, 0, 0, '[', '1', ']', ' ', ' '});
  const std::string bad = expect_error([&] { st::File::open(dir.file("bad.safetensors")); });
  EXPECT_NE(bad.find("bad.safetensors"), std::string::npos) << bad;
  EXPECT_NE(bad.find("not a JSON object"), std::string::npos) << bad;

  st::save(dir.file("ok.safetensors"), {{"x", at::zeros({2})}});
  const st::File f = st::File::open(dir.file("ok.safetensors"));
  const std::string no_tensor = expect_error([&] { f.tensor("y"); });
  EXPECT_NE(no_tensor.find("\"y\""), std::string::npos) << no_tensor;
  EXPECT_NE(no_tensor.find("ok.safetensors"), std::string::npos) << no_tensor;

  const std::string dup = expect_error([&] {
    st::save(dir.file("dup.safetensors"), {{"x", at::zeros({2})}, {"x", at::zeros({3})}});
  });
  EXPECT_NE(dup.find("duplicate tensor name \"x\""), std::string::npos) << dup;
  EXPECT_NE(dup.find("dup.safetensors"), std::string::npos) << dup;
  const std::string cplx = expect_error([&] {
    st::save(dir.file("c.safetensors"), {{"c", at::zeros({2}, at::kComplexDouble)}});
  });
  EXPECT_NE(cplx.find("cannot store dtype"), std::string::npos) << cplx;
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"bad.safetensors", "ok.safetensors"}));
}

// The torch-free qmap layer keeps its own list of qtype names: it must be libquanto's.
TEST(QmapNames, AgreeWithLibquantoQtypes) {
  size_t known = 0;
  for (const quanto::QType& q : quanto::all_qtypes()) {
    EXPECT_TRUE(quanto::qmap::is_known_qtype_name(q.name)) << q.name;
    ++known;
  }
  EXPECT_TRUE(quanto::qmap::is_known_qtype_name("qfloat8"));  // alias
  EXPECT_NE(quanto::find_qtype("qfloat8"), nullptr);
  for (const char* n : {"none", "qint2", "qint4", "qint8", "qfloat8", "qfloat8_e4m3fn", "qfloat8_e4m3fnuz", "qfloat8_e5m2"}) {
    EXPECT_TRUE(quanto::qmap::is_known_qtype_name(n)) << n;
    if (std::string(n) != "none") {
      EXPECT_NE(quanto::find_qtype(n), nullptr) << n;
    }
  }
  EXPECT_EQ(known, 6u);
}
