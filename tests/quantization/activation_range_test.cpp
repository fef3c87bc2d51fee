// ActivationRange (quantization/activation_range.h): the |x| histogram is exact at its bin edges,
// the counters and percentile say what the data holds, and the MSE-optimal clip does what its name
// says, judged directly on the data with the kernels' own quantize_int8.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "core/rng.h"
#include "kernels/int8.h"
#include "quantization/activation_range.h"

namespace sdrt::quantization {
namespace {

Tensor values(const std::vector<float>& v) { return Tensor::from_vector({static_cast<int64_t>(v.size())}, v); }

ActivationRange range_of(const Tensor& t) {
  ActivationRange r;
  r.add(t);
  return r;
}

// The mean squared error of symmetric int8 activation quantisation of `x` with clip `c`, as the
// kernels compute it (scale c / 127, x * (1 / scale) rounded half to even, clamped to [-128, 127]).
double quantisation_mse(const Tensor& x, float clip) {
  const float scale = clip / 127.0f, inv = 1.0f / scale;
  double sum = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double e = static_cast<double>(x[i]) - static_cast<double>(scale) * kernels::quantize_int8(x[i], inv);
    sum += e * e;
  }
  return sum / static_cast<double>(x.numel());
}

TEST(ActivationRange, BinEdgesAreExactFloats) {
  EXPECT_EQ(ActivationRange::bin_lower(0), 0.0f);
  // 16 bins per octave: the exponent and four mantissa bits.
  EXPECT_EQ(ActivationRange::bin_lower(127 * ActivationRange::kBinsPerOctave), 1.0f);
  EXPECT_EQ(ActivationRange::bin_lower(127 * ActivationRange::kBinsPerOctave + 8), 1.5f);
  EXPECT_EQ(ActivationRange::bin_lower(128 * ActivationRange::kBinsPerOctave + 1), 2.125f);
  EXPECT_EQ(ActivationRange::bin_lower(255 * ActivationRange::kBinsPerOctave), std::numeric_limits<float>::infinity());
  for (int b = 1; b < 255 * ActivationRange::kBinsPerOctave; ++b)
    ASSERT_LT(ActivationRange::bin_lower(b - 1), ActivationRange::bin_lower(b)) << b;
}

// A value exactly at a bin's lower edge lands in that bin, the next float down in the bin below:
// percentile() reports the upper edge of the bin that reaches the fraction.
TEST(ActivationRange, ValuesAtAnEdgeLandInTheBinAboveIt) {
  for (int b : {127 * 16, 127 * 16 + 5, 100 * 16 + 15, 140 * 16 + 1, 20 * 16 + 3}) {
    const float edge = ActivationRange::bin_lower(b);
    const float below = std::nextafter(edge, 0.0f);
    const float big = ActivationRange::bin_lower(b + 64);  // a larger max, so the edge is not clamped to it
    EXPECT_EQ(range_of(values({edge, -edge, big})).percentile(0.5), ActivationRange::bin_lower(b + 1)) << b;
    EXPECT_EQ(range_of(values({below, -below, big})).percentile(0.5), edge) << b;
    // The top of a bin is still in it.
    const float top = std::nextafter(ActivationRange::bin_lower(b + 1), 0.0f);
    EXPECT_EQ(range_of(values({top, top, big})).percentile(0.5), ActivationRange::bin_lower(b + 1)) << b;
  }
}

TEST(ActivationRange, CountsFiniteValuesAndTracksMaxAbs) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  ActivationRange r;
  EXPECT_EQ(r.count(), 0);
  EXPECT_EQ(r.max_abs(), 0.0f);
  r.add(values({-5.0f, 3.0f, nan, inf, -inf, 0.0f, -0.0f}));
  EXPECT_EQ(r.count(), 4);
  EXPECT_EQ(r.non_finite(), 3);
  EXPECT_EQ(r.max_abs(), 5.0f);
  r.add(values({4.5f, -7.25f}));
  EXPECT_EQ(r.count(), 6);
  EXPECT_EQ(r.non_finite(), 3);
  EXPECT_EQ(r.max_abs(), 7.25f);
  // Subnormals and the largest float are finite.
  ActivationRange extremes = range_of(values({std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::max()}));
  EXPECT_EQ(extremes.count(), 2);
  EXPECT_EQ(extremes.non_finite(), 0);
  EXPECT_EQ(extremes.max_abs(), std::numeric_limits<float>::max());
}

TEST(ActivationRange, MergeEqualsAddingBoth) {
  Tensor a = TorchCpuRng(1).randn({1000}), b = TorchCpuRng(2).randn({3000});
  for (int64_t i = 0; i < b.numel(); ++i) b[i] *= 3;
  ActivationRange both;
  both.add(a);
  both.add(b);
  ActivationRange merged = range_of(a);
  merged.merge(range_of(b));
  EXPECT_EQ(merged.count(), both.count());
  EXPECT_EQ(merged.max_abs(), both.max_abs());
  for (double f : {0.1, 0.5, 0.9, 0.999}) EXPECT_EQ(merged.percentile(f), both.percentile(f)) << f;
  EXPECT_EQ(merged.mse_optimal_clip(), both.mse_optimal_clip());
}

// 1, 2, ..., 1000 (and their negatives): the f-th percentile of |x| is ceil(1000 f); the histogram
// answers with the upper edge of that value's bin: at or above it, within 1/16 of an octave.
TEST(ActivationRange, PercentileOfKnownData) {
  std::vector<float> v;
  for (int i = 1; i <= 1000; ++i) v.push_back(i % 2 ? static_cast<float>(i) : -static_cast<float>(i));
  ActivationRange r = range_of(values(v));
  EXPECT_EQ(r.count(), 1000);
  EXPECT_EQ(r.max_abs(), 1000.0f);
  for (double f : {0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99}) {
    const double exact = std::ceil(1000 * f);
    const float p = r.percentile(f);
    EXPECT_GE(p, exact) << f;
    EXPECT_LE(p, exact * (1.0 + 1.0 / 16)) << f;
  }
  EXPECT_EQ(r.percentile(1.0), 1000.0f);
  // 512 = 2^9 is a bin edge: the 512th value opens bin [512, 544), whose upper edge is the answer.
  EXPECT_EQ(r.percentile(0.512), 544.0f);
  EXPECT_EQ(r.percentile(0.511), 512.0f);  // 511 values lie in bins below 512
  EXPECT_EQ(range_of(values({})).percentile(0.5), 0.0f);
}

// Uniform data has no outliers: clipping below the maximum only adds error.
TEST(ActivationRange, MseOptimalClipOfUniformDataIsItsMax) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  std::vector<float> v(200000);
  for (float& x : v) x = u(gen);
  Tensor t = values(v);
  ActivationRange r = range_of(t);
  const float clip = r.mse_optimal_clip();
  std::printf("    uniform [-3, 3]: max %.5f, clip %.5f\n", r.max_abs(), clip);
  EXPECT_GE(clip, 0.97f * r.max_abs());
  EXPECT_LE(clip, r.max_abs());
  EXPECT_LE(quantisation_mse(t, clip), quantisation_mse(t, r.max_abs()) * (1 + 1e-9));
  EXPECT_FLOAT_EQ(r.int8_scale(), clip / 127.0f);
}

// A gaussian with a handful of outliers at 25 sigma: raw max/127 would waste most of the int8 range
// on four values; the MSE-optimal clip balances their clipping error against the rounding error of
// a million others (about 10.9 in theory for this data, 10.5 at bin resolution), and its real
// quantisation error on the data is well below the max clip's (measured 0.00137 vs 0.00323).
TEST(ActivationRange, MseOptimalClipIgnoresAFewOutliers) {
  Tensor t = TorchCpuRng(3).randn({1 << 20});
  for (int64_t i : {int64_t{10}, int64_t{123456}, int64_t{500000}, int64_t{999999}}) t[i] = i % 2 ? -25.0f : 25.0f;
  ActivationRange r = range_of(t);
  EXPECT_EQ(r.max_abs(), 25.0f);
  const float clip = r.mse_optimal_clip();
  const double mse_clip = quantisation_mse(t, clip), mse_max = quantisation_mse(t, r.max_abs());
  std::printf("    gaussian + 4 outliers at 25: clip %.3f, MSE %.3g (clip) vs %.3g (max)\n", clip, mse_clip, mse_max);
  EXPECT_GT(clip, 4.0f);
  EXPECT_LT(clip, 0.5f * r.max_abs());
  EXPECT_LT(mse_clip, 0.75 * mse_max);
}

// The chosen clip never does worse on the data than the raw maximum, whatever the spread.
TEST(ActivationRange, MseOptimalClipIsNoWorseThanTheMax) {
  std::mt19937 gen(11);
  for (int trial = 0; trial < 6; ++trial) {
    Tensor t = TorchCpuRng(100 + trial).randn({100000});
    std::student_t_distribution<float> heavy(1.0f + trial);  // heavier tails for small degrees of freedom
    for (int64_t i = 0; i < t.numel(); i += 2) t[i] = heavy(gen) * (trial + 1);
    ActivationRange r = range_of(t);
    const float clip = r.mse_optimal_clip();
    const double mse_clip = quantisation_mse(t, clip), mse_max = quantisation_mse(t, r.max_abs());
    std::printf("    student-t(%d): max %.4g clip %.4g; MSE %.4g vs %.4g\n", 1 + trial, r.max_abs(), clip, mse_clip,
                mse_max);
    EXPECT_LE(clip, r.max_abs());
    EXPECT_LE(mse_clip, mse_max * (1 + 1e-9)) << "trial " << trial;
  }
}

TEST(ActivationRange, AllZeroOrEmptyInputHasScaleOne) {
  ActivationRange zeros = range_of(Tensor::full({64}, 0.0f));
  EXPECT_EQ(zeros.count(), 64);
  EXPECT_EQ(zeros.max_abs(), 0.0f);
  EXPECT_EQ(zeros.mse_optimal_clip(), 0.0f);
  EXPECT_EQ(zeros.int8_scale(), 1.0f);
  EXPECT_EQ(ActivationRange().int8_scale(), 1.0f);
  // A single repeated value: no spread, the clip is the value itself.
  ActivationRange constant = range_of(Tensor::full({64}, -0.75f));
  EXPECT_EQ(constant.mse_optimal_clip(), 0.75f);
  EXPECT_FLOAT_EQ(constant.int8_scale(), 0.75f / 127.0f);
}

}  // namespace
}  // namespace sdrt::quantization
