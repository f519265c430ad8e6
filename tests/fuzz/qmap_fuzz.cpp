// libFuzzer target: the quantization-map parser. Any input must either be rejected with a
// MapError or parse into a map that dumps and parses back unchanged.
#include <quanto/qmap.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  quanto::qmap::QuantizationMap map;
  try {
    map = quanto::qmap::parse(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const quanto::qmap::MapError&) {
    return 0;
  }
  for (const auto& [module, e] : map) {
    if (!quanto::qmap::is_known_qtype_name(e.weights) || !quanto::qmap::is_known_qtype_name(e.activations)) {
      std::fprintf(stderr, "accepted an unknown qtype name\n");
      std::abort();
    }
  }
  if (quanto::qmap::parse(quanto::qmap::dump(map)) != map) {
    std::fprintf(stderr, "dump/parse round trip changed the map\n");
    std::abort();
  }
  return 0;
}
