// The vectorised memory-bound kernels (normalisation, activations, element-wise, layout) against
// plain double-precision references written here, on the awkward sizes (spatial extents that are
// not a multiple of 16, 1 to 40 channels per group, batch 1 and 2) and on data with a large common
// offset. The vector erf/exp/activations they rely on are tested per ISA tier in
// simd_primitives_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "activation_references.h"
#include "test_util.h"

namespace sdrt::kernels {
namespace {

// Kernels against their double references (rel = max|a - b| / max|b|).
constexpr double kKernelTol = 2e-6;
// GroupNorm on offset data: the brief's bar for the one-pass statistics.
constexpr double kNormOffsetTol = 1e-6;

Tensor random(const Shape& s, uint64_t seed, float offset = 0.0f, float scale = 1.0f) {
  Tensor t = TorchCpuRng(seed).randn(s);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = offset + scale * t[i];
  return t;
}

// ---- Double-precision references.

using testing::gelu_ref;
using testing::gelu_tanh_ref;
using testing::quick_gelu_ref;
using testing::silu_ref;

Tensor group_norm_ref(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, bool silu) {
  const int64_t n = x.dim(0), c = x.dim(1), spatial = x.numel() / (n * c), per_group = c / groups;
  const int64_t count = per_group * spatial;
  Tensor y = Tensor::empty(x.shape());
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t base = (b * c + g * per_group) * spatial;
      double sum = 0, sq = 0;
      for (int64_t i = 0; i < count; ++i) sum += x[base + i];
      const double mean = sum / static_cast<double>(count);
      for (int64_t i = 0; i < count; ++i) sq += (x[base + i] - mean) * (x[base + i] - mean);
      const double inv_std = 1.0 / std::sqrt(sq / static_cast<double>(count) + eps);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t ch = g * per_group + i / spatial;
        double v = (x[base + i] - mean) * inv_std * gamma[ch] + beta[ch];
        y[base + i] = static_cast<float>(silu ? silu_ref(v) : v);
      }
    }
  }
  return y;
}

Tensor layer_norm_ref(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  const int64_t d = x.dim(-1), rows = x.numel() / d;
  Tensor y = Tensor::empty(x.shape());
  for (int64_t r = 0; r < rows; ++r) {
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < d; ++i) sum += x[r * d + i];
    const double mean = sum / static_cast<double>(d);
    for (int64_t i = 0; i < d; ++i) sq += (x[r * d + i] - mean) * (x[r * d + i] - mean);
    const double inv_std = 1.0 / std::sqrt(sq / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i)
      y[r * d + i] = static_cast<float>((x[r * d + i] - mean) * inv_std * gamma[i] + beta[i]);
  }
  return y;
}

// ---- Whole kernels.

TEST(PointwiseActivations, MatchDoubleReference) {
  struct Case {
    Activation act;
    double (*ref)(double);
  };
  const Case cases[] = {{Activation::SiLU, silu_ref},
                        {Activation::GELU, gelu_ref},
                        {Activation::GELUTanh, gelu_tanh_ref},
                        {Activation::QuickGELU, quick_gelu_ref},
                        {Activation::ReLU, [](double v) { return v > 0 ? v : 0.0; }}};
  for (const Shape& shape : {Shape{3, 5, 7}, Shape{2, 320, 129}}) {
    for (const Case& c : cases) {
      Tensor x = random(shape, 21, 0.0f, 3.0f), expected = Tensor::empty(shape);
      for (int64_t i = 0; i < x.numel(); ++i) expected[i] = static_cast<float>(c.ref(x[i]));
      apply_activation(x, c.act);
      EXPECT_REL_LE(x, expected, kKernelTol);
    }
  }
}

struct GroupNormCase {
  Shape shape;
  int groups;
  float offset;
};

// `channels_last` runs group_norm_channels_last on the same data transposed to [N, H, W, C], and
// compares its result transposed back.
void expect_group_norm_matches(const GroupNormCase& c, uint64_t seed, double tol, bool channels_last = false) {
  const int64_t channels = c.shape[1];
  Tensor x = random(c.shape, seed, c.offset);
  Tensor gamma = random({channels}, seed + 1, 1.0f, 0.5f), beta = random({channels}, seed + 2, 0.0f, 0.5f);
  for (bool silu : {false, true}) {
    std::printf("    %s%s groups %d offset %g%s\n", channels_last ? "channels last " : "", shape_str(c.shape).c_str(),
                c.groups, c.offset, silu ? " +silu" : "");
    Tensor y = channels_last ? nhwc_to_nchw(group_norm_channels_last(nchw_to_nhwc(x), c.groups, gamma, beta, 1e-5f, silu))
                             : group_norm(x, c.groups, gamma, beta, 1e-5f, silu);
    EXPECT_REL_LE(y, group_norm_ref(x, c.groups, gamma, beta, 1e-5f, silu), tol);
  }
}

TEST(PointwiseGroupNorm, MatchesDoubleReferenceOnAwkwardShapes) {
  const GroupNormCase cases[] = {
      {{1, 32, 7, 9}, 32, 0.0f},      // 1 channel per group, spatial 63
      {{2, 64, 5, 5}, 32, 0.0f},      // 2 per group, spatial 25
      {{2, 320, 8, 8}, 32, 0.0f},     // 10 per group (the UNet's 320 channels)
      {{1, 1280, 3, 5}, 32, 0.0f},    // 40 per group, spatial 15 (< one vector)
      {{2, 6, 1, 1}, 2, 0.0f},        // a group smaller than a vector
      {{1, 128, 64, 65}, 32, 0.0f},   // groups of 16640 floats
      {{2, 12, 17}, 4, 0.0f},         // rank 3
      // Fewer than 4 groups per thread: groups split across threads, in waves.
      {{2, 96, 37, 1}, 3, 0.0f},      // 6 groups of 1184 floats, several per wave
      {{2, 8, 200, 333}, 2, 0.0f},    // 4 groups of 266400 floats: one per wave
      {{1, 6, 50, 70}, 3, 0.0f},      // 3 groups of 7000 floats, slices cut inside groups
  };
  uint64_t seed = 100;
  for (const GroupNormCase& c : cases) expect_group_norm_matches(c, seed += 3, kKernelTol);
}

TEST(PointwiseGroupNorm, LargeOffsetKeepsAccuracy) {
  const GroupNormCase cases[] = {
      {{2, 320, 16, 16}, 32, 1000.0f},
      {{1, 128, 96, 96}, 32, 1000.0f},
      {{2, 40, 9, 11}, 4, -1000.0f},
      {{1, 64, 33, 33}, 32, 1e4f},
      {{1, 16, 128, 129}, 2, 1000.0f},  // split groups
  };
  uint64_t seed = 200;
  for (const GroupNormCase& c : cases) expect_group_norm_matches(c, seed += 3, kNormOffsetTol);
}

// Channels last: the same statistics over [N, H, W, C]; checked against the NCHW double reference
// through the (exact) layout change, on channel counts that are and are not multiples of a vector.
TEST(PointwiseGroupNorm, ChannelsLastMatchesDoubleReference) {
  const GroupNormCase cases[] = {
      {{1, 512, 16, 16}, 32, 0.0f},    // the VAE's 512 channels: one vector per group
      {{2, 128, 9, 13}, 32, 0.0f},     // 4 per group, batch 2
      {{1, 256, 64, 48}, 32, 0.0f},    // enough pixels for both threads
      {{2, 24, 5, 7}, 4, 0.0f},        // 24 channels: a partial vector per pixel
      {{1, 6, 1, 1}, 3, 0.0f},         // one pixel
      {{1, 128, 96, 96}, 32, 1000.0f}, // large offset
      {{2, 40, 9, 11}, 4, -1000.0f},
      {{1, 64, 33, 33}, 32, 1e4f},
  };
  uint64_t seed = 250;
  for (const GroupNormCase& c : cases)
    expect_group_norm_matches(c, seed += 3, c.offset == 0.0f ? kKernelTol : kNormOffsetTol, /*channels_last=*/true);
  EXPECT_THROW(group_norm_channels_last(random({1, 4, 4, 6}, 1), 4, Tensor::full({6}, 1.0f), Tensor({6}), 1e-5f),
               Error);
}

TEST(PointwiseGroupNorm, ConstantGroupGivesBeta) {
  Tensor x = Tensor::full({1, 4, 5, 5}, 3.25f);
  Tensor gamma = Tensor::full({4}, 2.0f), beta = Tensor::from_vector({4}, {0.5f, -1.0f, 0.0f, 2.0f});
  Tensor y = group_norm(x, 2, gamma, beta, 1e-5f);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y[i], beta[i / 25]);
}

TEST(PointwiseLayerNorm, MatchesDoubleReference) {
  const Shape shapes[] = {{77, 768}, {3, 320}, {2, 5, 1280}, {4, 17}, {2, 1}, {9, 640}, {1, 2, 33}};
  uint64_t seed = 300;
  for (const Shape& s : shapes) {
    for (float offset : {0.0f, 1000.0f}) {
      seed += 3;
      const int64_t d = s.back();
      Tensor x = random(s, seed, offset);
      Tensor gamma = random({d}, seed + 1, 1.0f, 0.5f), beta = random({d}, seed + 2, 0.0f, 0.5f);
      std::printf("    %s offset %g\n", shape_str(s).c_str(), offset);
      EXPECT_REL_LE(layer_norm(x, gamma, beta, 1e-5f), layer_norm_ref(x, gamma, beta, 1e-5f), kKernelTol);
    }
  }
}

TEST(PointwiseGeglu, MatchesDoubleReference) {
  for (const Shape& s : {Shape{3, 2560}, Shape{2, 7, 74}, Shape{1, 2}, Shape{64, 2 * 1280}}) {
    Tensor x = random(s, 400 + s.back(), 0.0f, 2.0f);
    const int64_t two_h = s.back(), h = two_h / 2, rows = x.numel() / two_h;
    Shape out = s;
    out.back() = h;
    Tensor expected = Tensor::empty(out);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < h; ++i)
        expected[r * h + i] = static_cast<float>(x[r * two_h + i] * gelu_ref(x[r * two_h + h + i]));
    EXPECT_REL_LE(geglu(x), expected, kKernelTol);
  }
}

TEST(PointwiseElementwise, ExactAgainstScalarLoops) {
  for (const Shape& s : {Shape{2, 3, 5, 7}, Shape{1, 320, 33, 31}}) {
    const int64_t n = s[0], c = s[1], spatial = s[2] * s[3];
    Tensor x = random(s, 500), y = random(s, 501);
    Tensor sum = x.clone(), expected = x.clone();
    add_inplace(sum, y);
    for (int64_t i = 0; i < x.numel(); ++i) expected[i] = x[i] + y[i];
    EXPECT_REL_LE(sum, expected, 0.0);

    Tensor scaled = x.clone();
    scale_inplace(scaled, 0.18215f);
    for (int64_t i = 0; i < x.numel(); ++i) expected[i] = x[i] * 0.18215f;
    EXPECT_REL_LE(scaled, expected, 0.0);

    for (Tensor v : {random({n, c}, 502), random({c}, 503)}) {
      const bool per_sample = v.numel() == n * c;
      Tensor biased = x.clone();
      add_channel_broadcast(biased, v);
      for (int64_t i = 0; i < x.numel(); ++i) {
        const int64_t plane = i / spatial;
        expected[i] = x[i] + v[per_sample ? plane : plane % c];
      }
      EXPECT_REL_LE(biased, expected, 0.0);
    }
  }
}

TEST(PointwiseLayout, TransposesAreExactOnOddSizes) {
  for (const Shape& s : {Shape{2, 5, 3, 7}, Shape{1, 17, 5, 7}, Shape{2, 320, 8, 8}, Shape{1, 33, 4, 12}}) {
    const int64_t n = s[0], c = s[1], h = s[2], w = s[3];
    Tensor x = random(s, 600 + c);
    Tensor nlc = nchw_to_nlc(x);
    ASSERT_EQ(nlc.shape(), (Shape{n, h * w, c}));
    bool same = true;
    for (int64_t b = 0; b < n; ++b)
      for (int64_t ch = 0; ch < c; ++ch)
        for (int64_t p = 0; p < h * w; ++p) same &= nlc[(b * h * w + p) * c + ch] == x[(b * c + ch) * h * w + p];
    EXPECT_TRUE(same) << shape_str(s);
    EXPECT_REL_LE(nlc_to_nchw(nlc, h, w), x, 0.0);
  }
}

TEST(PointwiseLayout, ChannelsLastRoundTripAndUpsampleAreExact) {
  for (const Shape& s : {Shape{2, 3, 5, 7}, Shape{1, 20, 3, 16}, Shape{1, 128, 8, 9}}) {
    const int64_t n = s[0], c = s[1], h = s[2], w = s[3];
    Tensor x = random(s, 750 + w);
    Tensor nhwc = nchw_to_nhwc(x);
    ASSERT_EQ(nhwc.shape(), (Shape{n, h, w, c}));
    EXPECT_EQ(nhwc[((1 % n * h + h - 1) * w + 2) * c + c - 1], x[((1 % n * c + c - 1) * h + h - 1) * w + 2]);
    EXPECT_REL_LE(nhwc_to_nchw(nhwc), x, 0.0);
    Tensor up = upsample_nearest2x_channels_last(nhwc);
    ASSERT_EQ(up.shape(), (Shape{n, 2 * h, 2 * w, c}));
    SCOPED_TRACE(shape_str(s));
    EXPECT_REL_LE(nhwc_to_nchw(up), upsample_nearest2x(x), 0.0);
  }
}

TEST(PointwiseLayout, UpsampleAndConcatAreExact) {
  for (const Shape& s : {Shape{2, 3, 5, 7}, Shape{1, 4, 3, 16}, Shape{1, 2, 2, 23}, Shape{1, 64, 32, 40}}) {
    const int64_t planes = s[0] * s[1], h = s[2], w = s[3];
    Tensor x = random(s, 700 + w);
    Tensor up = upsample_nearest2x(x);
    ASSERT_EQ(up.shape(), (Shape{s[0], s[1], 2 * h, 2 * w}));
    bool same = true;
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < 2 * h; ++i)
        for (int64_t j = 0; j < 2 * w; ++j) same &= up[(p * 2 * h + i) * 2 * w + j] == x[(p * h + i / 2) * w + j / 2];
    EXPECT_TRUE(same) << shape_str(s);

    Tensor other = random({s[0], 3, h, w}, 800 + w);
    Tensor cat = concat_channels(x, other);
    ASSERT_EQ(cat.shape(), (Shape{s[0], s[1] + 3, h, w}));
    const int64_t a_row = s[1] * h * w, b_row = 3 * h * w;
    same = true;
    for (int64_t b = 0; b < s[0]; ++b) {
      for (int64_t i = 0; i < a_row; ++i) same &= cat[b * (a_row + b_row) + i] == x[b * a_row + i];
      for (int64_t i = 0; i < b_row; ++i) same &= cat[b * (a_row + b_row) + a_row + i] == other[b * b_row + i];
    }
    EXPECT_TRUE(same) << shape_str(s);
  }
}

}  // namespace
}  // namespace sdrt::kernels
