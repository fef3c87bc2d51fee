// libFuzzer target: QuantizationConfig::parse (unet/quantization_config.json) must reject any
// malformed input with sdrt::Error, never crash, hang or let another exception out; whatever it
// accepts must write back (to_json) to a config that parses to the same values.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "models/quantization_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  try {
    const sdrt::QuantizationConfig c = sdrt::QuantizationConfig::parse(text, "fuzz");
    const sdrt::QuantizationConfig again = sdrt::QuantizationConfig::parse(c.to_json().dump(), "fuzz round trip");
    if (again.method != c.method || again.static_activations != c.static_activations ||
        again.keep_float != c.keep_float || again.details != c.details || again.version != c.version)
      __builtin_trap();
  } catch (const sdrt::Error&) {
  }
  return 0;
}
