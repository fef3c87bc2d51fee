#include "io/png.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "core/error.h"
#include "test_util.h"

namespace sdrt {
namespace {

TEST(Png, RoundTripsPixelsAndKeepsParameters) {
  Tensor chw({3, 2, 4});
  for (int64_t i = 0; i < chw.numel(); ++i) chw[i] = static_cast<float>(i) / 23.0f;
  chw[0] = -0.5f;  // clamped
  chw[1] = 2.0f;
  Image8 img = to_image8_chw(chw);
  std::string path = testing::scratch_dir("png") + "/x.png";
  write_png(path, img, {{"parameters", "a red apple\nSteps: 4, Seed: 1"}});
  Image8 back = read_png(path);
  EXPECT_EQ(back.width, 4);
  EXPECT_EQ(back.height, 2);
  EXPECT_EQ(back.pixels, img.pixels);
  EXPECT_EQ(img.pixels[0], 0);
  EXPECT_EQ(img.pixels[3], 255);
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  EXPECT_NE(bytes.find("parameters"), std::string::npos);
  EXPECT_NE(bytes.find("Steps: 4, Seed: 1"), std::string::npos);
}

TEST(Png, RoundsHalfToEvenLikeNumpy) {
  // 0.5/255 * 255 = 0.5 -> 0; 1.5/255 * 255 = 1.5 -> 2 (numpy.round semantics)
  Tensor hwc = Tensor::from_vector({1, 1, 3}, {0.5f / 255.0f, 1.5f / 255.0f, 2.5f / 255.0f});
  Image8 img = to_image8_hwc(hwc);
  EXPECT_EQ(img.pixels[1], 2);
  EXPECT_LE(img.pixels[0], 1);
}

TEST(Png, UnwritablePathNamesFile) {
  Image8 img{1, 1, 3, {0, 0, 0}};
  try {
    write_png("/nonexistent-dir/x.png", img);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.png"), std::string::npos);
  }
}

}  // namespace
}  // namespace sdrt
