// libFuzzer target: the safetensors header parser must reject any malformed input with
// sdrt::Error, never crash, hang or read out of bounds; whatever it accepts must be loadable.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto st = sdrt::SafeTensors::parse(std::span<const uint8_t>(data, size), "fuzz");
    for (const auto& [name, info] : st.tensors()) {
      auto raw = st.raw(name);
      if (raw.size() != info.end - info.begin) __builtin_trap();
      switch (info.dtype) {
        case sdrt::DType::F32:
        case sdrt::DType::F16:
        case sdrt::DType::BF16:
        case sdrt::DType::F64:
          if (sdrt::shape_numel(info.shape) < (1 << 20)) st.load_f32(name);
          break;
        default:
          break;
      }
    }
  } catch (const sdrt::Error&) {
  }
  return 0;
}
