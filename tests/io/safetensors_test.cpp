#include "io/safetensors.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace sdrt {
namespace {

TEST(SafeTensors, ReadsGoldenFile) {
  auto st = SafeTensors::open(testing::case_path("unet_case0.safetensors"));
  EXPECT_EQ(st.info("sample").shape, (Shape{2, 4, 32, 32}));
  Tensor s = st.load_f32("sample");
  EXPECT_EQ(s.numel(), 2 * 4 * 32 * 32);
  EXPECT_TRUE(st.metadata().count("producer"));
}

}  // namespace
}  // namespace sdrt
