#include "core/half.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace sdrt {
namespace {

// Every 16-bit pattern, from an odd byte offset (safetensors data need not be aligned), so the
// vector path, the scalar tail and the thread split all see subnormals, infinities and NaNs.
std::vector<uint8_t> all_halves_unaligned() {
  std::vector<uint8_t> bytes(1 + 2 * 65536 + 2);
  for (uint32_t h = 0; h < 65536; ++h) {
    bytes[1 + 2 * h] = static_cast<uint8_t>(h & 0xff);
    bytes[2 + 2 * h] = static_cast<uint8_t>(h >> 8);
  }
  bytes[1 + 2 * 65536] = 0x00;  // one more value: 65537 is not a multiple of the vector width
  bytes[2 + 2 * 65536] = 0x3c;  // 1.0 in F16
  return bytes;
}

void expect_same(float got, float want, uint32_t h) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << "pattern " << h;
  } else {
    EXPECT_EQ(std::signbit(got), std::signbit(want)) << "pattern " << h;
    EXPECT_EQ(got, want) << "pattern " << h;
  }
}

TEST(Half, BulkF16ConversionMatchesTheScalarOneForEveryPattern) {
  auto bytes = all_halves_unaligned();
  std::vector<float> out(65537);
  f16_to_float_n(bytes.data() + 1, out.data(), 65537);
  for (uint32_t h = 0; h < 65536; ++h) expect_same(out[h], f16_to_float(static_cast<uint16_t>(h)), h);
  EXPECT_EQ(out[65536], 1.0f);
}

TEST(Half, BulkBf16ConversionMatchesTheScalarOneForEveryPattern) {
  auto bytes = all_halves_unaligned();
  std::vector<float> out(65537);
  bf16_to_float_n(bytes.data() + 1, out.data(), 65537);
  for (uint32_t h = 0; h < 65536; ++h) expect_same(out[h], bf16_to_float(static_cast<uint16_t>(h)), h);
}

}  // namespace
}  // namespace sdrt
