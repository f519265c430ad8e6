// libFuzzer target: the safetensors header parser. Any input must either be rejected with a
// FormatError or parse into a header that satisfies the format's invariants and survives a
// write/parse round trip unchanged. Anything else (a crash, a sanitizer report, another
// exception, a broken invariant) is a bug.
#include <quanto/safetensors.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace st = quanto::safetensors;

namespace {
void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "invariant broken: %s\n", what);
    std::abort();
  }
}

void check_file(const uint8_t* data, size_t size) {
  st::Header h;
  try {
    h = st::parse(data, size);
  } catch (const st::FormatError&) {
    return;
  }
  // Invariants of an accepted file.
  check(h.data_start >= 8 && h.data_start <= size, "data_start inside the file");
  uint64_t cursor = 0;
  std::vector<st::TensorView> views;
  for (const st::TensorEntry& t : h.tensors) {
    check(t.begin == cursor, "offsets contiguous from 0");
    check(t.end >= t.begin && t.end <= size - h.data_start, "range inside the buffer");
    check(t.nbytes() == t.numel() * st::element_size(t.dtype), "nbytes = numel x element size");
    cursor = t.end;
    views.push_back({t.name, t.dtype, t.shape, data + h.data_start + t.begin, static_cast<size_t>(t.nbytes())});
  }
  check(h.data_start + cursor == size, "buffer ends at the end of the file");

  // Round trip: our writer's image of the same tensors parses back to the same header.
  const st::Layout l = st::layout(views, h.metadata);
  std::vector<uint8_t> image(l.header.begin(), l.header.end());
  for (const st::TensorView* v : l.order) {
    const auto* p = static_cast<const uint8_t*>(v->data);
    image.insert(image.end(), p, p + v->nbytes);
  }
  const st::Header back = st::parse(image.data(), image.size());
  check(back.metadata == h.metadata, "metadata round trip");
  check(back.tensors.size() == h.tensors.size(), "tensor count round trip");
  for (const st::TensorEntry& t : back.tensors) {
    const st::TensorEntry* o = h.find(t.name);
    check(o != nullptr && o->dtype == t.dtype && o->shape == t.shape, "entry round trip");
    check(std::equal(image.begin() + static_cast<std::ptrdiff_t>(back.data_start + t.begin),
                     image.begin() + static_cast<std::ptrdiff_t>(back.data_start + t.end),
                     data + h.data_start + o->begin),
          "data round trip");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  check_file(data, size);
  // The same bytes as a whole header behind a matching length: mutations of the JSON are not
  // all lost to a header length that no longer fits.
  std::vector<uint8_t> framed(8 + size);
  for (int i = 0; i < 8; ++i) framed[i] = static_cast<uint8_t>((uint64_t{size} >> (8 * i)) & 0xFF);
  std::copy(data, data + size, framed.begin() + 8);
  check_file(framed.data(), framed.size());
  return 0;
}
