// The fast kernels (oneDNN GEMM/convolution, blocked attention) against their plain
// reference implementations on random inputs.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "test_util.h"

namespace sdrt::kernels {
namespace {

// Accumulation order differs (blocked float vs double), so allow a small relative error.
constexpr double kTol = 2e-5;

Tensor random(const Shape& s, uint64_t seed) { return TorchCpuRng(seed).randn(s); }

TEST(Gemm, MatchesReferenceForAllTransposes) {
  const int64_t m = 37, n = 53, k = 71;
  for (bool ta : {false, true}) {
    for (bool tb : {false, true}) {
      Tensor a = random(ta ? Shape{k, m} : Shape{m, k}, 1), b = random(tb ? Shape{n, k} : Shape{k, n}, 2);
      Tensor c0 = random({m, n}, 3), c1 = c0.clone();
      int64_t lda = ta ? m : k, ldb = tb ? k : n;
      gemm(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, c0.data(), n);
      gemm_reference(ta, tb, m, n, k, 0.5f, a.data(), lda, b.data(), ldb, 0.25f, c1.data(), n);
      EXPECT_REL_LE(c0, c1, kTol);
    }
  }
}

TEST(Linear, MatchesGemmWithBias) {
  Tensor x = random({2, 5, 16}, 4), w = random({24, 16}, 5), b = random({24}, 6);
  Tensor y = linear(x, w, b);
  ASSERT_EQ(y.shape(), (Shape{2, 5, 24}));
  Tensor expected = Tensor::empty({10, 24});
  for (int64_t r = 0; r < 10; ++r)
    for (int64_t o = 0; o < 24; ++o) expected[r * 24 + o] = b[o];
  gemm_reference(false, true, 10, 24, 16, 1.0f, x.data(), 16, w.data(), 16, 1.0f, expected.data(), 24);
  EXPECT_REL_LE(y, expected.reshape({2, 5, 24}), kTol);
}

TEST(Linear, RejectsMismatchedInput) {
  EXPECT_THROW(linear(random({2, 7}, 1), random({3, 8}, 2), Tensor()), Error);
}

struct ConvCase {
  Shape x, w;
  Conv2dParams p;
  bool bias;
};

TEST(Conv2d, MatchesReference) {
  const ConvCase cases[] = {
      {{2, 8, 9, 11}, {16, 8, 3, 3}, Conv2dParams::symmetric(1, 1), true},
      {{1, 4, 16, 16}, {4, 4, 3, 3}, Conv2dParams::symmetric(2, 1), true},
      {{1, 4, 16, 16}, {4, 4, 3, 3}, Conv2dParams{2, 0, 0, 1, 1}, true},  // VAE's asymmetric downsample
      {{2, 6, 5, 5}, {3, 6, 1, 1}, Conv2dParams::symmetric(1, 0), false},
  };
  for (const auto& c : cases) {
    Tensor x = random(c.x, 7), w = random(c.w, 8), b = c.bias ? random({c.w[0]}, 9) : Tensor();
    EXPECT_REL_LE(conv2d(x, w, b, c.p), conv2d_reference(x, w, b, c.p), kTol);
  }
}

TEST(Attention, BlockedMatchesReference) {
  // 300 query rows span several 128-row blocks, including a partial one.
  Tensor q = random({2, 300, 32}, 10), k = random({2, 77, 32}, 11), v = random({2, 77, 32}, 12);
  EXPECT_REL_LE(attention(q, k, v, 4, 0.35f), attention_reference(q, k, v, 4, 0.35f), kTol);
  Tensor s = random({2, 77, 32}, 13);
  EXPECT_REL_LE(attention(s, s, s, 4, 0.35f, true), attention_reference(s, s, s, 4, 0.35f, true), kTol);
}

TEST(GroupNorm, NormalisesEachGroup) {
  Tensor x = random({2, 8, 4, 4}, 14);
  Tensor gamma = Tensor::full({8}, 1.0f), beta = Tensor({8});
  Tensor y = group_norm(x, 4, gamma, beta, 1e-6f);
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t g = 0; g < 4; ++g) {
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < 32; ++i) {
        double v = y[(b * 8 + g * 2) * 16 + i];
        sum += v;
        sq += v * v;
      }
      EXPECT_NEAR(sum / 32, 0.0, 1e-5);
      EXPECT_NEAR(sq / 32, 1.0, 1e-4);
    }
  }
  Tensor fused = group_norm(x, 4, gamma, beta, 1e-6f, true);
  apply_activation(y, Activation::SiLU);
  EXPECT_REL_LE(fused, y, 1e-6);
}

TEST(LayerNorm, NormalisesLastDim) {
  Tensor x = random({3, 10}, 15);
  Tensor y = layer_norm(x, Tensor::full({10}, 2.0f), Tensor::full({10}, 1.0f), 1e-5f);
  for (int64_t r = 0; r < 3; ++r) {
    double sum = 0;
    for (int64_t i = 0; i < 10; ++i) sum += y[r * 10 + i];
    EXPECT_NEAR(sum / 10, 1.0, 1e-5);
  }
}

TEST(Activations, KnownValues) {
  Tensor x = Tensor::from_vector({4}, {-1.0f, 0.0f, 0.5f, 2.0f});
  Tensor gelu = x.clone(), quick = x.clone(), silu = x.clone();
  apply_activation(gelu, Activation::GELU);
  apply_activation(quick, Activation::QuickGELU);
  apply_activation(silu, Activation::SiLU);
  EXPECT_NEAR(gelu[0], -0.15865525f, 1e-6);
  EXPECT_NEAR(gelu[3], 1.95449974f, 1e-6);
  EXPECT_NEAR(quick[2], 0.5f / (1 + std::exp(-0.851f)), 1e-6);
  EXPECT_NEAR(silu[3], 2.0f / (1 + std::exp(-2.0f)), 1e-6);
  EXPECT_THROW(activation_from_name("mish"), Error);
}

TEST(Geglu, GatesFirstHalfWithGeluOfSecond) {
  Tensor x = Tensor::from_vector({1, 4}, {3.0f, -2.0f, 1.0f, 0.5f});
  Tensor y = geglu(x);
  ASSERT_EQ(y.shape(), (Shape{1, 2}));
  EXPECT_NEAR(y[0], 3.0f * 0.8413447f, 1e-5);
  EXPECT_NEAR(y[1], -2.0f * 0.3457312f, 1e-5);
}

TEST(Layout, NchwNlcRoundTripAndUpsample) {
  Tensor x = random({2, 5, 3, 7}, 16);
  Tensor nlc = nchw_to_nlc(x);
  EXPECT_EQ(nlc[(1 * 21 + 4) * 5 + 2], x[((1 * 5 + 2) * 3 + 0) * 7 + 4]);
  EXPECT_REL_LE(nlc_to_nchw(nlc, 3, 7), x, 0.0);
  Tensor up = upsample_nearest2x(x);
  EXPECT_EQ(up[((1 * 5 + 3) * 6 + 5) * 14 + 9], x[((1 * 5 + 3) * 3 + 2) * 7 + 4]);
  Tensor cat = concat_channels(x, up.slice0(0, 2).reshape({2, 20, 3, 7}));
  EXPECT_EQ(cat.shape(), (Shape{2, 25, 3, 7}));
}

TEST(TimestepEmbedding, FlipAndShift) {
  Tensor e = timestep_embedding({0.0f, 10.0f}, 4, /*flip_sin_to_cos=*/true, 0.0f);
  // half = 2, freqs = exp(-ln(10000) * i / 2) = {1, 0.01}; flipped: [cos, cos, sin, sin]
  EXPECT_NEAR(e[0], 1.0f, 1e-6);
  EXPECT_NEAR(e[4], std::cos(10.0f), 1e-6);
  EXPECT_NEAR(e[5], std::cos(0.1f), 1e-6);
  EXPECT_NEAR(e[6], std::sin(10.0f), 1e-6);
}

}  // namespace
}  // namespace sdrt::kernels
