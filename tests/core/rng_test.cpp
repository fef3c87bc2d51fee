#include "core/rng.h"

#include <gtest/gtest.h>

#include "io/safetensors.h"
#include "test_util.h"

namespace sdrt {
namespace {

// Reference draws made by tests/data/make_torch_rng_reference.py with torch's CPU generator.
// torch may use SIMD log/sin/cos, so values agree to a few ulp, not bit for bit.
constexpr double kTolerance = 1e-6;

class TorchRngTest : public ::testing::Test {
 protected:
  SafeTensors ref_ = SafeTensors::open(testing::data_dir() + "/torch_randn.safetensors");
};

TEST_F(TorchRngTest, MatchesTorchRandnForLatentShapedTensor) {
  TorchCpuRng rng(42);
  EXPECT_REL_LE(rng.randn({1, 4, 8, 8}), ref_.load_f32("seed42_1x4x8x8"), kTolerance);
}

TEST_F(TorchRngTest, SuccessiveDrawsContinueTheStream) {
  TorchCpuRng rng(0);
  Tensor first = rng.randn({2, 4, 16, 16});
  Tensor second = rng.randn({2, 4, 16, 16});
  EXPECT_REL_LE(first, ref_.load_f32("seed0_first"), kTolerance);
  EXPECT_REL_LE(second, ref_.load_f32("seed0_second"), kTolerance);
}

TEST_F(TorchRngTest, SizeNotMultipleOf16RecomputesTail) {
  TorchCpuRng rng(1234);
  EXPECT_REL_LE(rng.randn({37}), ref_.load_f32("seed1234_37"), kTolerance);
}

TEST_F(TorchRngTest, SmallTensorsUseScalarPath) {
  TorchCpuRng rng(7);
  EXPECT_REL_LE(rng.randn({5}), ref_.load_f32("seed7_5"), kTolerance);
}

TEST_F(TorchRngTest, SeedsAbove32BitsUseLowWord) {
  TorchCpuRng rng((1ull << 33) + 5);
  EXPECT_REL_LE(rng.randn({64}), ref_.load_f32("seed2p33p5_64"), kTolerance);
}

}  // namespace
}  // namespace sdrt
