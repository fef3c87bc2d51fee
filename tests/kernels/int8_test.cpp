// The int8 arithmetic (kernels/int8.h) and the packed int8 convolution and linear kernels against
// the plain int8 references. The integer part must be exact: the tolerance is a quarter of the
// smallest output step (s_x * scale[o]), so one unit of difference in any int32 accumulator
// fails. Without VNNI (AVX2; run here with SDRT_MAX_ISA=avx2) the kernels use 7-bit weights to
// keep vpmaddubsw from saturating, and the reference gets the same weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/dry_run.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/int8.h"
#include "kernels/op_counter.h"
#include "kernels/packed_conv2d.h"
#include "kernels/packed_linear.h"
#include "test_util.h"

namespace sdrt::kernels {
namespace {

Tensor random(const Shape& s, uint64_t seed, float scale = 1.0f) {
  Tensor t = TorchCpuRng(seed).randn(s);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] *= scale;
  return t;
}

// The tolerance for outputs whose smallest step is `step`: a quarter step, so that one unit of
// difference in any int32 accumulator fails.
double tolerance(double step, double /*max_abs*/) { return 0.25 * step; }

// The weights the kernels multiply by: without VNNI oneDNN's int8 convolutions halve the weights in
// their packed layout and double the output scale, and sdrt halves them itself for its int8 GEMMs
// (kernels/int8.h); either way the product uses round_half_even(w / 2) with scale * 2. Written
// here independently of seven_bit_weights().
Int8Weights as_onednn_computes(Int8Weights w) {
  if (onednn_int8_has_vnni()) return w;
  const int64_t n = shape_numel(w.shape);
  auto halved = std::shared_ptr<int8_t[]>(new int8_t[n]);
  for (int64_t i = 0; i < n; ++i) halved[i] = static_cast<int8_t>(std::nearbyint(w.data.get()[i] * 0.5f));
  w.data = std::shared_ptr<const int8_t>(halved, halved.get());
  for (float& s : w.scales) s *= 2;
  return w;
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(static_cast<double>(a.data()[i]) - b.data()[i]));
  return m;
}

double max_abs(const Tensor& a) {
  double m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(static_cast<double>(a.data()[i])));
  return m;
}

float min_scale(const Int8Weights& w) { return *std::min_element(w.scales.begin(), w.scales.end()); }

TEST(Int8Arithmetic, RoundsHalfToEvenAndSaturates) {
  EXPECT_EQ(quantize_int8(0.5f, 1.0f), 0);
  EXPECT_EQ(quantize_int8(1.5f, 1.0f), 2);
  EXPECT_EQ(quantize_int8(2.5f, 1.0f), 2);
  EXPECT_EQ(quantize_int8(-2.5f, 1.0f), -2);
  EXPECT_EQ(quantize_int8(-0.49f, 1.0f), 0);
  EXPECT_EQ(quantize_int8(127.4f, 1.0f), 127);
  EXPECT_EQ(quantize_int8(1e9f, 1.0f), 127);
  EXPECT_EQ(quantize_int8(-1e9f, 1.0f), -128);
  EXPECT_EQ(quantize_int8(-128.6f, 1.0f), -128);
  EXPECT_EQ(quantize_int8(-130.0f, 1.0f, -127, 127), -127);
  EXPECT_EQ(quantize_int8(3.0f, 0.5f), 2);  // x * inv_scale, then round: 1.5 -> 2
}

TEST(Int8Arithmetic, WeightsQuantisePerOutputChannel) {
  Tensor w = Tensor::from_vector({3, 4}, {1.27f, -0.635f, 0.005f, 0.0f,  // max 1.27 -> scale 0.01
                                          0, 0, 0, 0,                   // all zero -> scale 1
                                          -254.0f, 127.0f, 1.0f, 3.0f});  // max 254 -> scale 2
  Int8Weights q = Int8Weights::quantize(w);
  ASSERT_EQ(q.scales.size(), 3u);
  EXPECT_FLOAT_EQ(q.scales[0], 0.01f);
  EXPECT_FLOAT_EQ(q.scales[1], 1.0f);
  EXPECT_FLOAT_EQ(q.scales[2], 2.0f);
  const int8_t* v = q.data.get();
  EXPECT_EQ(v[0], 127);
  EXPECT_EQ(v[1], static_cast<int8_t>(std::nearbyint(-0.635f / 0.01f)));
  EXPECT_EQ(v[2], 0);  // 0.5 rounds to even
  EXPECT_EQ(v[8], -127);
  EXPECT_EQ(v[9], 64);  // 63.5 rounds to even
  EXPECT_EQ(v[10], 0);  // 0.5
  EXPECT_EQ(v[11], 2);  // 1.5
}

TEST(Int8Arithmetic, RejectsNonFiniteWeightsAndBadScales) {
  Tensor w = Tensor::from_vector({2, 2}, {1, 2, std::numeric_limits<float>::quiet_NaN(), 1});
  EXPECT_THROW(Int8Weights::quantize(w), Error);
  Int8Weights q = Int8Weights::quantize(Tensor::from_vector({2, 2}, {1, 2, 3, 4}));
  q.scales[1] = 0;
  EXPECT_THROW(q.validate("test"), Error);
  q.scales[1] = -1;
  EXPECT_THROW(PackedLinear(q, Tensor(), 0.1f), Error);
  q.scales = {1.0f};
  EXPECT_THROW(q.validate("test"), Error);
}

struct ConvCase {
  const char* name;
  Shape x, w;
  Conv2dParams p;
  bool bias;
};

const ConvCase kConvCases[] = {
    {"3x3 same", {2, 32, 12, 12}, {48, 32, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"3x3 stride 2", {1, 64, 16, 16}, {64, 64, 3, 3}, Conv2dParams::symmetric(2, 1), true},
    {"1x1", {2, 96, 8, 8}, {40, 96, 1, 1}, Conv2dParams{}, true},
    {"odd channels", {1, 13, 9, 7}, {21, 13, 3, 3}, Conv2dParams::symmetric(1, 1), false},
    {"wide", {1, 320, 16, 16}, {320, 320, 3, 3}, Conv2dParams::symmetric(1, 1), true},
};

class Int8Conv : public ::testing::TestWithParam<ConvCase> {};

TEST_P(Int8Conv, DynamicMatchesReference) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::int8);
  const ConvCase& c = GetParam();
  Tensor x = random(c.x, 1), w = random(c.w, 2, 0.1f), b = c.bias ? random({c.w[0]}, 3) : Tensor();
  Int8Weights q = Int8Weights::quantize(w);
  PackedConv2d conv(q, b, c.p, 0.0f);
  Tensor expected = conv2d_int8_reference(x, as_onednn_computes(q), b, c.p, 0.0f);
  Tensor got = conv(x);
  // The dynamic scale of image n is absmax/127; the smallest over images bounds the output step.
  std::vector<float> ranges(c.x[0]);
  absmax_per_chunk(x.data(), c.x[0], x.numel() / c.x[0], ranges.data());
  const double step = int8_dynamic_scale(*std::min_element(ranges.begin(), ranges.end())) * min_scale(q);
  EXPECT_LE(max_abs_diff(got, expected), tolerance(step, max_abs(expected))) << c.name;

  // Channels last, and the fused accumulation in both layouts.
  Tensor got_nhwc = nhwc_to_nchw(conv.channels_last(nchw_to_nhwc(x)));
  EXPECT_LE(max_abs_diff(got_nhwc, expected), tolerance(step, max_abs(expected))) << c.name;
  Tensor acc = random(expected.shape(), 4);
  Tensor want = acc.clone();
  add_inplace(want, expected);
  conv.accumulate(x, acc);
  EXPECT_LE(max_abs_diff(acc, want), tolerance(step, max_abs(want)) + 1e-5 * max_abs(want)) << c.name;
}

TEST_P(Int8Conv, StaticMatchesReferenceIncludingClipping) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::int8);
  const ConvCase& c = GetParam();
  Tensor x = random(c.x, 5), w = random(c.w, 6, 0.1f), b = c.bias ? random({c.w[0]}, 7) : Tensor();
  Int8Weights q = Int8Weights::quantize(w);
  const float input_scale = 2.0f / 127;  // randn beyond +-2 saturates
  PackedConv2d conv(q, b, c.p, input_scale);
  EXPECT_EQ(conv.precision(), Precision::int8);
  EXPECT_EQ(conv.input_scale(), input_scale);
  Tensor expected = conv2d_int8_reference(x, as_onednn_computes(q), b, c.p, input_scale);
  // oneDNN computes scale * (acc + bias / scale), the reference scale * acc + bias: the same up to
  // float rounding of the epilogue, far below one step.
  const double step = input_scale * min_scale(q), tol = tolerance(step, max_abs(expected)) + 1e-5 * max_abs(expected);
  EXPECT_LE(max_abs_diff(conv(x), expected), tol) << c.name;
  EXPECT_LE(max_abs_diff(nhwc_to_nchw(conv.channels_last(nchw_to_nhwc(x))), expected), tol) << c.name;
  Tensor acc = random(expected.shape(), 8);
  Tensor want = acc.clone();
  add_inplace(want, expected);
  conv.accumulate(x, acc);
  EXPECT_LE(max_abs_diff(acc, want), tol + 1e-5 * max_abs(want)) << c.name;
  Tensor acc_nhwc = nchw_to_nhwc(random(expected.shape(), 8));
  conv.accumulate_channels_last(nchw_to_nhwc(x), acc_nhwc);
  EXPECT_LE(max_abs_diff(nhwc_to_nchw(acc_nhwc), want), tol + 1e-5 * max_abs(want)) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Shapes, Int8Conv, ::testing::ValuesIn(kConvCases),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Int8Conv, CloseToFloatAndCountedAsInt8) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::int8);
  Tensor x = random({2, 64, 16, 16}, 9), w = random({64, 64, 3, 3}, 10, 0.05f), b = random({64}, 11);
  Tensor f32 = conv2d_reference(x, w, b, Conv2dParams::symmetric(1, 1));
  PackedConv2d conv(Int8Weights::quantize(w), b, Conv2dParams::symmetric(1, 1), 0.0f);
  MacCounter counter;
  Tensor y;
  {
    OpCounterScope scope(counter);
    y = conv(x);
  }
  EXPECT_EQ(counter.macs(OpKind::Int8), 2 * 64 * 16 * 16 * 64 * 9);
  EXPECT_EQ(counter.macs(OpKind::Conv), 0);
  testing::Diff d = testing::compare(y, f32);
  EXPECT_LT(d.max_abs / max_abs(f32), 0.03) << "int8 strays too far from f32";
}

struct LinearCase {
  const char* name;
  Shape x;
  int64_t out;
  bool bias;
};

const LinearCase kLinearCases[] = {
    {"one row", {1, 320}, 1280, true},
    {"tokens", {2, 77, 768}, 320, true},
    {"image tokens", {2, 256, 320}, 320, false},
    {"odd", {3, 5, 19}, 13, true},
};

class Int8Linear : public ::testing::TestWithParam<LinearCase> {};

TEST_P(Int8Linear, DynamicAndStaticMatchReference) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::int8);
  const LinearCase& c = GetParam();
  const int64_t in = c.x.back();
  Tensor x = random(c.x, 12), w = random({c.out, in}, 13, 0.1f), b = c.bias ? random({c.out}, 14) : Tensor();
  Int8Weights q = Int8Weights::quantize(w);
  for (float input_scale : {0.0f, 1.5f / 127}) {
    PackedLinear linear(q, b, input_scale);
    Tensor expected = linear_int8_reference(x, as_onednn_computes(q), b, input_scale);
    double step = input_scale * min_scale(q);
    if (input_scale == 0) {
      const int64_t rows = x.numel() / in;
      std::vector<float> ranges(rows);
      absmax_per_chunk(x.data(), rows, in, ranges.data());
      step = int8_dynamic_scale(*std::min_element(ranges.begin(), ranges.end())) * min_scale(q);
    }
    const double tol = tolerance(step, max_abs(expected)) + 1e-5 * max_abs(expected);
    EXPECT_LE(max_abs_diff(linear(x), expected), tol) << c.name << " scale " << input_scale;
    Tensor acc = random(expected.shape(), 15);
    Tensor want = acc.clone();
    add_inplace(want, expected);
    linear.accumulate(x, acc);
    EXPECT_LE(max_abs_diff(acc, want), tol + 1e-5 * max_abs(want)) << c.name << " scale " << input_scale;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, Int8Linear, ::testing::ValuesIn(kLinearCases),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& ch : n)
                             if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           return n;
                         });

TEST(Int8Linear, DryRunComputesNothingAndKeepsOutputShape) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::int8);
  Int8Weights q = Int8Weights::quantize(random({8, 16}, 16));
  PackedLinear linear(q, Tensor(), 0.0f);
  Tensor x = random({4, 16}, 17);
  DryRun dry;
  Tensor y = linear(x);
  EXPECT_EQ(y.shape(), (Shape{4, 8}));
}

}  // namespace
}  // namespace sdrt::kernels
