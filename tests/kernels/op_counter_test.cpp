// MAC counting: exact counts for small shapes worked out by hand, and the scope rules
// (per thread, nesting, nothing counted without a scope).
#include "kernels/op_counter.h"

#include <gtest/gtest.h>

#include <thread>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "test_util.h"

namespace sdrt::kernels {
namespace {

Tensor random(const Shape& s, uint64_t seed) { return TorchCpuRng(seed).randn(s); }

TEST(OpCounter, CountsConvolutionMacs) {
  MacCounter counter;
  OpCounterScope scope(counter);
  // x [2, 3, 9, 11], w [5, 3, 3, 3], stride 2, padding 1: OH = (9 + 2 - 3) / 2 + 1 = 5,
  // OW = (11 + 2 - 3) / 2 + 1 = 6, so N*O*OH*OW*C*kh*kw = 2*5*5*6*3*3*3 = 8100.
  Tensor y = conv2d(random({2, 3, 9, 11}, 1), random({5, 3, 3, 3}, 2), random({5}, 3), Conv2dParams::symmetric(2, 1));
  ASSERT_EQ(y.shape(), (Shape{2, 5, 5, 6}));
  EXPECT_EQ(counter.macs(OpKind::Conv), 8100);
  EXPECT_EQ(counter.macs(OpKind::Linear), 0);
  EXPECT_EQ(counter.macs(OpKind::Attention), 0);
}

TEST(OpCounter, CountsAsymmetricPaddingAndOneByOne) {
  MacCounter counter;
  OpCounterScope scope(counter);
  // The VAE's downsample: 16x16, 3x3 stride 2, padding (0, 0, 1, 1): OH = OW = (16 + 1 - 3) / 2 + 1 = 8;
  // 1*4*8*8*4*9 = 9216. Then a 1x1 conv [3, 6] on 5x5 with batch 2: 2*3*25*6 = 900.
  conv2d(random({1, 4, 16, 16}, 1), random({4, 4, 3, 3}, 2), random({4}, 3), Conv2dParams{2, 0, 0, 1, 1});
  conv2d(random({2, 6, 5, 5}, 4), random({3, 6, 1, 1}, 5), Tensor(), Conv2dParams::symmetric(1, 0));
  EXPECT_EQ(counter.macs(OpKind::Conv), 9216 + 900);
}

TEST(OpCounter, CountsLinearMacs) {
  MacCounter counter;
  OpCounterScope scope(counter);
  // 2*5 = 10 rows, 16 in, 24 out: 3840. Bias adds are element-wise and not counted.
  linear(random({2, 5, 16}, 1), random({24, 16}, 2), random({24}, 3));
  linear(random({7, 16}, 4), random({24, 16}, 5), Tensor());  // 7*16*24 = 2688
  EXPECT_EQ(counter.macs(OpKind::Linear), 3840 + 2688);
  EXPECT_EQ(counter.total_macs(), 3840 + 2688);
}

TEST(OpCounter, CountsBothAttentionProducts) {
  MacCounter counter;
  OpCounterScope scope(counter);
  // B=2, heads=3, d=4, Lq=7, Lk=5: q k^T is 2*3*7*5*4 = 840 MACs and p v as many: 1680.
  attention(random({2, 7, 12}, 1), random({2, 5, 12}, 2), random({2, 5, 12}, 3), 3, 0.5f);
  EXPECT_EQ(counter.macs(OpKind::Attention), 1680);
  // A causal mask skips work in principle, but the count is the dense product's: 1*2*6*6*8*2 = 1152.
  attention(random({1, 6, 16}, 4), random({1, 6, 16}, 5), random({1, 6, 16}, 6), 2, 0.25f, /*causal=*/true);
  EXPECT_EQ(counter.macs(OpKind::Attention), 1680 + 1152);
  EXPECT_EQ(counter.macs(OpKind::Linear), 0);  // attention's products are not linear layers
}

TEST(OpCounter, CountsNothingWithoutAScope) {
  EXPECT_FALSE(counting_macs());
  MacCounter counter;
  { OpCounterScope scope(counter); }
  linear(random({3, 4}, 1), random({5, 4}, 2), Tensor());  // after the scope ended
  EXPECT_EQ(counter.total_macs(), 0);
  EXPECT_FALSE(counting_macs());
}

TEST(OpCounter, InnerScopeTakesTheCountsAndRestoresTheOuter) {
  MacCounter outer, inner;
  OpCounterScope outer_scope(outer);
  linear(random({1, 4}, 1), random({5, 4}, 2), Tensor());  // 20
  {
    OpCounterScope inner_scope(inner);
    linear(random({2, 4}, 3), random({5, 4}, 4), Tensor());  // 40
  }
  linear(random({3, 4}, 5), random({5, 4}, 6), Tensor());  // 60
  EXPECT_EQ(outer.macs(OpKind::Linear), 20 + 60);
  EXPECT_EQ(inner.macs(OpKind::Linear), 40);
}

TEST(OpCounter, ScopeBelongsToItsThread) {
  MacCounter counter;
  OpCounterScope scope(counter);
  std::thread other([] { linear(random({2, 4}, 1), random({5, 4}, 2), Tensor()); });
  other.join();
  EXPECT_EQ(counter.total_macs(), 0);

  // Two threads may share one counter, each through its own scope.
  std::thread counted([&counter] {
    OpCounterScope own(counter);
    linear(random({2, 4}, 1), random({5, 4}, 2), Tensor());  // 40
  });
  counted.join();
  linear(random({1, 4}, 3), random({5, 4}, 4), Tensor());  // 20
  EXPECT_EQ(counter.macs(OpKind::Linear), 60);
}

TEST(OpCounter, ResetClearsEveryKind) {
  MacCounter counter;
  counter.add(OpKind::Conv, 3);
  counter.add(OpKind::Attention, 4);
  EXPECT_EQ(counter.total_macs(), 7);
  counter.reset();
  EXPECT_EQ(counter.total_macs(), 0);
  EXPECT_STREQ(op_kind_name(OpKind::Attention), "attention");
}

}  // namespace
}  // namespace sdrt::kernels
