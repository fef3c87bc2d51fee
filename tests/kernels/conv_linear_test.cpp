// The packed convolution and linear kernels against the reference implementations: the shapes SD
// uses (3x3 same, 3x3 stride 2 with symmetric and the VAE's asymmetric padding, 1x1, channel counts
// that are not multiples of oneDNN's blocks), several input shapes on one layer, concurrent calls
// on one layer, the fused accumulation, MAC counts, and what the packed weights keep in memory.
#include <gtest/gtest.h>

#include <memory>
#include <thread>
#include <vector>

#include "core/dry_run.h"
#include "core/error.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "kernels/op_counter.h"
#include "kernels/packed_conv2d.h"
#include "kernels/packed_linear.h"
#include "test_util.h"

namespace sdrt::kernels {
namespace {

// Accumulation order differs (blocked float vs double), so allow a small relative error.
constexpr double kTol = 2e-5;

Tensor random(const Shape& s, uint64_t seed) { return TorchCpuRng(seed).randn(s); }

Tensor linear_reference(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t in = w.dim(1), out = w.dim(0), rows = x.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y(out_shape);
  if (b.defined())
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) y[r * out + o] = b[o];
  gemm_reference(false, true, rows, out, in, 1.0f, x.data(), in, w.data(), in, b.defined() ? 1.0f : 0.0f, y.data(),
                 out);
  return y;
}

Tensor plus(const Tensor& a, const Tensor& b) {
  Tensor sum = a.clone();
  add_inplace(sum, b);
  return sum;
}

// A bf16 product of bf16 operands is exact in f32 and accumulates in f32, so the bf16 kernels
// should equal the f32 reference on rounded operands up to summation order. Against the
// unrounded reference they differ by the rounding itself (about 2^-9 relative per operand).
constexpr double kBf16RoundedTol = 1e-4;
constexpr double kBf16Tol = 2e-2;

struct ConvCase {
  const char* name;
  Shape x, w;
  Conv2dParams p;
  bool bias;
};

const ConvCase kConvCases[] = {
    {"1x1", {2, 32, 9, 7}, {16, 32, 1, 1}, Conv2dParams::symmetric(1, 0), true},
    {"1x1 odd channels", {1, 3, 5, 5}, {8, 3, 1, 1}, Conv2dParams::symmetric(1, 0), false},
    {"3x3 same", {2, 32, 12, 10}, {32, 32, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"3x3 same, no bias", {1, 32, 8, 8}, {48, 32, 3, 3}, Conv2dParams::symmetric(1, 1), false},
    {"3x3 stride 2 symmetric", {2, 32, 16, 16}, {32, 32, 3, 3}, Conv2dParams::symmetric(2, 1), true},
    {"3x3 stride 2 asymmetric (VAE downsample)", {1, 32, 16, 16}, {32, 32, 3, 3}, Conv2dParams{2, 0, 0, 1, 1}, true},
    {"3x3 stride 2 asymmetric, odd size", {2, 8, 15, 13}, {8, 8, 3, 3}, Conv2dParams{2, 0, 0, 1, 1}, true},
    {"3 channels in (VAE encoder conv_in)", {1, 3, 20, 20}, {32, 3, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"4 -> 320 (UNet conv_in)", {2, 4, 16, 16}, {320, 4, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"320 -> 320", {1, 320, 8, 8}, {320, 320, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"128 -> 3 (VAE conv_out)", {1, 128, 24, 24}, {3, 128, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"320 -> 4 (UNet conv_out)", {2, 320, 8, 8}, {4, 320, 3, 3}, Conv2dParams::symmetric(1, 1), true},
    {"channels not multiples of 16", {2, 20, 7, 9}, {12, 20, 3, 3}, Conv2dParams::symmetric(1, 1), true},
};

TEST(PackedConv2d, MatchesReference) {
  for (const auto& c : kConvCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random(c.x, 1), w = random(c.w, 2), b = c.bias ? random({c.w[0]}, 3) : Tensor();
    PackedConv2d conv(w, b, c.p);
    EXPECT_REL_LE(conv(x), conv2d_reference(x, w, b, c.p), kTol);
  }
}

TEST(PackedConv2d, AccumulatesIntoResidual) {
  for (const auto& c : kConvCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random(c.x, 4), w = random(c.w, 5), b = c.bias ? random({c.w[0]}, 6) : Tensor();
    PackedConv2d conv(w, b, c.p);
    Tensor expected = conv2d_reference(x, w, b, c.p);
    Tensor residual = random(expected.shape(), 7);
    Tensor acc = residual.clone();
    conv.accumulate(x, acc);
    EXPECT_REL_LE(acc, plus(residual, expected), kTol);
    // The plain call on the same layer still overwrites (its plan is a different one).
    EXPECT_REL_LE(conv(x), expected, kTol);
  }
}

TEST(PackedConv2d, Bf16MatchesReferenceOnRoundedOperands) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::bf16);
  for (const auto& c : kConvCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random(c.x, 1), w = random(c.w, 2), b = c.bias ? random({c.w[0]}, 3) : Tensor();
    PackedConv2d conv(w, b, c.p, Precision::bf16);
    Tensor y = conv(x);
    EXPECT_REL_LE(y, conv2d_reference(testing::rounded_to_bf16(x), testing::rounded_to_bf16(w), b, c.p), kBf16RoundedTol);
    EXPECT_REL_LE(y, conv2d_reference(x, w, b, c.p), kBf16Tol);
    Tensor residual = random(y.shape(), 7), acc = residual.clone();
    conv.accumulate(x, acc);
    EXPECT_REL_LE(acc, plus(residual, y), kBf16RoundedTol);
  }
}

// Channels last ([N, H, W, C] in and out) computes the same convolution, plain and accumulating,
// in both precisions, on a layer that also serves NCHW calls (each layout gets its own plans).
TEST(PackedConv2d, ChannelsLastMatchesNchw) {
  for (Precision precision : {Precision::f32, Precision::bf16}) {
    if (std::string why = precision_unsupported_reason(precision); !why.empty()) {
      std::printf("    %s not tested: %s\n", precision_name(precision), why.c_str());
      continue;
    }
    for (const auto& c : kConvCases) {
      SCOPED_TRACE(c.name);
      Tensor x = random(c.x, 21), w = random(c.w, 22), b = c.bias ? random({c.w[0]}, 23) : Tensor();
      PackedConv2d conv(w, b, c.p, precision);
      Tensor nchw = conv(x);
      Tensor y = conv.channels_last(nchw_to_nhwc(x));
      ASSERT_EQ(y.shape(), (Shape{nchw.dim(0), nchw.dim(2), nchw.dim(3), nchw.dim(1)}));
      const double tol = precision == Precision::f32 ? kTol : kBf16RoundedTol;
      EXPECT_REL_LE(nhwc_to_nchw(y), nchw, tol);
      Tensor residual = random(y.shape(), 24), acc = residual.clone();
      conv.accumulate_channels_last(nchw_to_nhwc(x), acc);
      EXPECT_REL_LE(acc, plus(residual, y), tol);
      EXPECT_THROW(conv.channels_last(x.reshape({x.dim(0), x.dim(1), x.numel() / (x.dim(0) * x.dim(1))})), Error);
    }
  }
}

TEST(PackedConv2d, Bf16HoldsHalfTheWeightBytes) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::bf16);
  Tensor w = random({64, 32, 3, 3}, 43);
  PackedConv2d conv(w, Tensor(), Conv2dParams::symmetric(1, 1), Precision::bf16);
  EXPECT_EQ(conv.precision(), Precision::bf16);
  EXPECT_EQ(conv.weight_bytes(), w.numel() * sizeof(uint16_t));
  Tensor x = random({1, 32, 32, 32}, 45);  // the size the weights were packed for
  EXPECT_REL_LE(conv(x), conv2d_reference(x, w, Tensor(), conv.params()), kBf16Tol);
  EXPECT_EQ(conv.weight_bytes(), w.numel() * sizeof(uint16_t)) << "no f32 copy should come back";
}

TEST(PackedConv2d, SeveralInputShapesOnOneLayer) {
  Tensor w = random({32, 24, 3, 3}, 8), b = random({32}, 9);
  const auto p = Conv2dParams::symmetric(1, 1);
  PackedConv2d conv(w, b, p);
  const size_t packed_bytes = conv.weight_bytes();
  const Shape shapes[] = {{1, 24, 16, 16}, {2, 24, 32, 32}, {1, 24, 17, 23}, {2, 24, 16, 16}, {1, 24, 16, 16}};
  for (size_t i = 0; i < std::size(shapes); ++i) {
    SCOPED_TRACE(shape_str(shapes[i]));
    Tensor x = random(shapes[i], 10 + i);
    EXPECT_REL_LE(conv(x), conv2d_reference(x, w, b, p), kTol);
  }
  EXPECT_EQ(conv.cached_plans(), 4u);  // the last shape reuses the first one's plan
  EXPECT_EQ(conv.weight_bytes(), packed_bytes) << "every shape should share the one packed layout";
}

TEST(PackedConv2d, SmallImagesRunOnNchwWithTheirOwnLayout) {
  // Below 16x16 outputs the convolution stays on NCHW (im2col + GEMM), which reads unpacked
  // weights: the first small input repacks them, and the layout packed at construction goes once
  // no plan uses it.
  Tensor w = random({32, 32, 3, 3}, 12), b = random({32}, 13);
  const auto p = Conv2dParams::symmetric(1, 1);
  PackedConv2d conv(w, b, p);
  Tensor small = random({2, 32, 8, 8}, 14), large = random({1, 32, 16, 16}, 15);
  EXPECT_REL_LE(conv(small), conv2d_reference(small, w, b, p), kTol);
  EXPECT_EQ(conv.weight_bytes(), w.numel() * sizeof(float));
  EXPECT_REL_LE(conv(large), conv2d_reference(large, w, b, p), kTol);
  EXPECT_REL_LE(conv(small), conv2d_reference(small, w, b, p), kTol);
  EXPECT_EQ(conv.cached_plans(), 2u);
}

TEST(PackedConv2d, ConcurrentCallsOnOneLayer) {
  Tensor w = random({32, 32, 3, 3}, 20), b = random({32}, 21);
  const auto p = Conv2dParams::symmetric(1, 1);
  PackedConv2d conv(w, b, p);
  // Different shapes per thread, so that both also create plans concurrently.
  const Shape shapes[2] = {{2, 32, 16, 16}, {1, 32, 12, 20}};
  Tensor inputs[2], outputs[2][3];
  for (int t = 0; t < 2; ++t) inputs[t] = random(shapes[t], 22 + t);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) outputs[t][i] = conv(inputs[t]);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 2; ++t) {
    Tensor expected = conv2d_reference(inputs[t], w, b, p);
    for (int i = 0; i < 3; ++i) EXPECT_REL_LE(outputs[t][i], expected, kTol);
  }
}

TEST(PackedConv2d, CountsTheSameMacsAsConv2d) {
  Tensor x = random({2, 3, 9, 11}, 30), w = random({5, 3, 3, 3}, 31), b = random({5}, 32);
  const auto p = Conv2dParams::symmetric(2, 1);
  PackedConv2d conv(w, b, p);
  MacCounter unpacked, packed;
  {
    OpCounterScope scope(unpacked);
    conv2d(x, w, b, p);
  }
  {
    OpCounterScope scope(packed);
    conv(x);
    Tensor acc = conv(x);
    conv.accumulate(x, acc);
  }
  EXPECT_EQ(unpacked.macs(OpKind::Conv), 8100);  // see op_counter_test.cpp
  EXPECT_EQ(packed.macs(OpKind::Conv), 3 * 8100);
}

// A tensor whose storage reports when it is freed, to see which copies the packed kernels keep.
struct TrackedTensor {
  Tensor tensor;
  std::weak_ptr<const void> storage;
};

TrackedTensor tracked_random(const Shape& shape, uint64_t seed) {
  Tensor values = random(shape, seed);
  auto storage = std::shared_ptr<float[]>(new float[values.numel()]);
  std::copy(values.data(), values.data() + values.numel(), storage.get());
  return {Tensor::wrap(shape, storage.get(), storage), storage};
}

TEST(PackedConv2d, ReleasesTheUnpackedWeightsOncePacked) {
  TrackedTensor w = tracked_random({64, 32, 3, 3}, 40);
  Tensor w_copy = w.tensor.clone();
  PackedConv2d conv(std::move(w.tensor), Tensor(), Conv2dParams::symmetric(1, 1));
  EXPECT_TRUE(w.storage.expired()) << "a packed 3x3 convolution should not keep the unpacked weights";
  EXPECT_EQ(conv.weight_bytes(), w_copy.numel() * sizeof(float));  // 64 and 32 are whole blocks: no padding
  Tensor x = random({1, 32, 8, 8}, 41);
  EXPECT_REL_LE(conv(x), conv2d_reference(x, w_copy, Tensor(), conv.params()), kTol);
}

TEST(PackedConv2d, OneByOneRunsOnTheUnpackedWeights) {
  // 1x1 convolutions stay on NCHW, whose GEMM reads the weights as they are: no copy at all.
  TrackedTensor w = tracked_random({16, 32, 1, 1}, 42);
  PackedConv2d conv(w.tensor, Tensor(), Conv2dParams::symmetric(1, 0));
  EXPECT_EQ(conv.weight_bytes(), w.tensor.numel() * sizeof(float));
  w.tensor = Tensor();
  EXPECT_FALSE(w.storage.expired());
}

TEST(PackedConv2d, RejectsMismatchedInputs) {
  PackedConv2d conv(random({8, 4, 3, 3}, 50), random({8}, 51), Conv2dParams::symmetric(1, 1));
  EXPECT_THROW(conv(random({1, 5, 8, 8}, 52)), Error);
  EXPECT_THROW(conv(random({4, 8, 8}, 53)), Error);
  Tensor wrong_acc({1, 8, 4, 4});
  EXPECT_THROW(conv.accumulate(random({1, 4, 8, 8}, 54), wrong_acc), Error);
  EXPECT_THROW(PackedConv2d(random({8, 4, 3}, 55), Tensor(), {}), Error);
  EXPECT_THROW(PackedConv2d(random({8, 4, 3, 3}, 56), random({7}, 57), {}), Error);
}

struct LinearCase {
  const char* name;
  Shape x;
  int64_t out;
  bool bias;
};

const LinearCase kLinearCases[] = {
    {"3 -> 5, one row", {1, 3}, 5, true},
    {"batched tokens [2, 5, 16] -> 24", {2, 5, 16}, 24, true},
    {"no bias", {7, 16}, 24, false},
    {"time embedding, 2 rows", {2, 320}, 1280, true},
    {"cross-attention k/v, 154 rows", {2, 77, 768}, 320, false},
    {"320 -> 320 projection", {2, 300, 320}, 320, true},
    {"odd sizes", {37, 53}, 71, true},
};

TEST(PackedLinear, MatchesReference) {
  for (const auto& c : kLinearCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random(c.x, 60), w = random({c.out, c.x.back()}, 61), b = c.bias ? random({c.out}, 62) : Tensor();
    PackedLinear linear(w, b);
    EXPECT_REL_LE(linear(x), linear_reference(x, w, b), kTol);
  }
}

TEST(PackedLinear, AccumulatesIntoResidual) {
  for (const auto& c : kLinearCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random(c.x, 63), w = random({c.out, c.x.back()}, 64), b = c.bias ? random({c.out}, 65) : Tensor();
    PackedLinear linear(w, b);
    Tensor expected = linear_reference(x, w, b);
    Tensor residual = random(expected.shape(), 66);
    Tensor acc = residual.clone();
    linear.accumulate(x, acc);
    EXPECT_REL_LE(acc, plus(residual, expected), kTol);
    EXPECT_REL_LE(linear(x), expected, kTol);
  }
}

TEST(PackedLinear, Bf16MatchesReferenceOnRoundedOperands) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::bf16);
  for (const auto& c : kLinearCases) {
    SCOPED_TRACE(c.name);
    Tensor x = random(c.x, 60), w = random({c.out, c.x.back()}, 61), b = c.bias ? random({c.out}, 62) : Tensor();
    PackedLinear linear(w, b, Precision::bf16);
    EXPECT_EQ(linear.precision(), Precision::bf16);
    Tensor y = linear(x);
    EXPECT_REL_LE(y, linear_reference(testing::rounded_to_bf16(x), testing::rounded_to_bf16(w), b), kBf16RoundedTol);
    EXPECT_REL_LE(y, linear_reference(x, w, b), kBf16Tol);
    Tensor residual = random(y.shape(), 66), acc = residual.clone();
    linear.accumulate(x, acc);
    EXPECT_REL_LE(acc, plus(residual, y), kBf16RoundedTol);
  }
}

TEST(PackedLinear, Bf16HoldsHalfTheWeightBytes) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(Precision::bf16);
  Tensor w = random({64, 96}, 72);
  PackedLinear linear(w, Tensor(), Precision::bf16);
  EXPECT_EQ(linear.weight_bytes(), w.numel() * sizeof(uint16_t));
  linear(random({5, 96}, 73));
  EXPECT_EQ(linear.weight_bytes(), w.numel() * sizeof(uint16_t));
}

TEST(PackedLinear, SeveralRowCountsOnOneLayer) {
  Tensor w = random({96, 80}, 70), b = random({96}, 71);
  PackedLinear linear(w, b);
  const size_t packed_bytes = linear.weight_bytes();
  const Shape shapes[] = {{2, 80}, {2, 4096, 80}, {154, 80}, {1, 80}, {2, 80}};
  for (size_t i = 0; i < std::size(shapes); ++i) {
    SCOPED_TRACE(shape_str(shapes[i]));
    Tensor x = random(shapes[i], 72 + i);
    EXPECT_REL_LE(linear(x), linear_reference(x, w, b), kTol);
  }
  EXPECT_EQ(linear.cached_plans(), 4u);
  EXPECT_EQ(linear.weight_bytes(), packed_bytes);
}

TEST(PackedLinear, ConcurrentCallsOnOneLayer) {
  Tensor w = random({64, 48}, 80), b = random({64}, 81);
  PackedLinear linear(w, b);
  const Shape shapes[2] = {{2, 300, 48}, {77, 48}};
  Tensor inputs[2], outputs[2][3];
  for (int t = 0; t < 2; ++t) inputs[t] = random(shapes[t], 82 + t);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3; ++i) outputs[t][i] = linear(inputs[t]);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 2; ++t) {
    Tensor expected = linear_reference(inputs[t], w, b);
    for (int i = 0; i < 3; ++i) EXPECT_REL_LE(outputs[t][i], expected, kTol);
  }
}

TEST(PackedLinear, CountsTheSameMacsAsLinear) {
  Tensor x = random({2, 5, 16}, 90), w = random({24, 16}, 91), b = random({24}, 92);
  PackedLinear packed_linear(w, b);
  MacCounter unpacked, packed;
  {
    OpCounterScope scope(unpacked);
    linear(x, w, b);
  }
  {
    OpCounterScope scope(packed);
    Tensor acc = packed_linear(x);
    packed_linear.accumulate(x, acc);
  }
  EXPECT_EQ(unpacked.macs(OpKind::Linear), 3840);  // see op_counter_test.cpp
  EXPECT_EQ(packed.macs(OpKind::Linear), 2 * 3840);
}

TEST(PackedLinear, ReleasesTheUnpackedWeightsOncePacked) {
  TrackedTensor w = tracked_random({320, 64}, 93);
  Tensor w_copy = w.tensor.clone();
  PackedLinear linear(std::move(w.tensor), Tensor());
  EXPECT_TRUE(w.storage.expired()) << "a packed linear layer should not keep the unpacked weights";
  EXPECT_EQ(linear.weight_bytes(), w_copy.numel() * sizeof(float));
  Tensor x = random({3, 64}, 94);
  EXPECT_REL_LE(linear(x), linear_reference(x, w_copy, Tensor()), kTol);
}

TEST(PackedLinear, RejectsMismatchedInputs) {
  PackedLinear linear(random({3, 8}, 95), Tensor());
  EXPECT_THROW(linear(random({2, 7}, 96)), Error);
  Tensor wrong_acc({2, 4});
  EXPECT_THROW(linear.accumulate(random({2, 8}, 97), wrong_acc), Error);
  EXPECT_THROW(PackedLinear(random({3, 8, 1}, 98), Tensor()), Error);
  EXPECT_THROW(PackedLinear(random({3, 8}, 99), random({4}, 100)), Error);
}

// A dry run (compile()'s) makes the same plans and outputs of the same shapes as a real call,
// without computing them; the same layer then computes for real.
TEST(PackedLayers, DryRunPlansWithoutComputing) {
  Tensor x = random({1, 16, 20, 20}, 61), w = random({32, 16, 3, 3}, 62), b = random({32}, 63);
  PackedConv2d conv(w, b, Conv2dParams::symmetric(1, 1));
  Tensor xl = random({2, 50, 24}, 64), wl = random({40, 24}, 65);
  PackedLinear linear(wl, Tensor());
  Tensor q = random({1, 300, 64}, 66);
  {
    DryRun dry;
    Tensor y = conv(x), acc(Shape{1, 32, 20, 20});
    conv.accumulate(x, acc);
    EXPECT_EQ(y.shape(), (Shape{1, 32, 20, 20}));
    EXPECT_EQ(linear(xl).shape(), (Shape{2, 50, 40}));
    EXPECT_EQ(attention(q, q, q, 4, 0.125f).shape(), q.shape());
    for (int64_t i = 0; i < acc.numel(); ++i) ASSERT_EQ(acc[i], 0.0f) << "a dry run computed into the accumulator";
  }
  EXPECT_EQ(conv.cached_plans(), 2u);  // plain and accumulating, made in the dry run
  EXPECT_EQ(linear.cached_plans(), 1u);
  EXPECT_REL_LE(conv(x), conv2d_reference(x, w, b, conv.params()), kTol);
  EXPECT_REL_LE(linear(xl), linear_reference(xl, wl, Tensor()), kTol);
  EXPECT_EQ(conv.cached_plans(), 2u);
}

// Where oneDNN has no bf16 kernels (below AVX-512, or under SDRT_MAX_ISA=avx2), asking for them is
// an error that says why and what to use, from the layer constructors as from the pipeline.
TEST(PackedLinear, Bf16WithoutKernelsIsAClearError) {
  const std::string why = precision_unsupported_reason(Precision::bf16);
  if (why.empty()) GTEST_SKIP() << "this CPU has bf16 kernels; SDRT_MAX_ISA=avx2 tests the refusal";
  EXPECT_NE(why.find("AVX-512"), std::string::npos) << why;
  EXPECT_NE(why.find("--precision fp32"), std::string::npos) << why;
  try {
    PackedLinear linear(random({8, 8}, 1), Tensor(), Precision::bf16);
    ADD_FAILURE() << "bf16 layer made without bf16 kernels";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), why);
  }
  EXPECT_THROW(PackedConv2d(random({8, 8, 3, 3}, 2), Tensor(), Conv2dParams::symmetric(1, 1), Precision::bf16), Error);
  EXPECT_TRUE(precision_unsupported_reason(Precision::f32).empty());
}

}  // namespace
}  // namespace sdrt::kernels
