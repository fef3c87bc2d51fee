// The vector primitives the kernels are written on (kernels/vector_math.h, simd_math.h): exp,
// erf and the activations against libm over sweeps, and the lane shuffles, partial loads, double
// sums and bf16 pairs exactly. Like the kernels, this file is compiled once per ISA tier
// (tests/CMakeLists.txt), so each tier's backend is tested on its own: the suite is
// SimdPrimitives_<tier>, skipped with the reason where the CPU lacks the tier or SDRT_MAX_ISA
// caps it.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "core/cpu_isa.h"
#include "core/half.h"
#include "kernels/simd_math.h"
#include "activation_references.h"

#define SDRT_CONCAT_(a, b) a##b
#define SDRT_CONCAT(a, b) SDRT_CONCAT_(a, b)
#define SIMD_SUITE SDRT_CONCAT(SimdPrimitives_, SDRT_ISA_NS)

namespace sdrt::kernels::SDRT_ISA_NS {
namespace {

constexpr Isa kTier = static_cast<Isa>(SDRT_ISA_LEVEL);

class SIMD_SUITE : public ::testing::Test {
 protected:
  void SetUp() override {
    if (detected_isa() < kTier)
      GTEST_SKIP() << "this CPU lacks the " << isa_name(kTier) << " tier (it has " << isa_name(detected_isa())
                   << "): run on such a CPU to test it";
    if (active_isa() < kTier)
      GTEST_SKIP() << "the " << isa_name(kTier) << " tier is above the cap: " << isa_summary();
  }
};

constexpr double kErfMaxAbs = 2e-7;
constexpr double kExpMaxUlp = 2.0;

// The spacing of floats at `exact` (subnormal spacing below the normal range).
double float_ulp(double exact) {
  int exponent = std::max(std::ilogb(exact), std::numeric_limits<float>::min_exponent - 1);
  return std::ldexp(1.0, exponent - (std::numeric_limits<float>::digits - 1));
}

double ulp_error(float approx, double exact) { return std::fabs(approx - exact) / float_ulp(exact); }

// f applied by the vector code to each of xs, 16 lanes per call with a partial last vector.
template <typename F>
std::vector<float> apply_vector(const std::vector<float>& xs, F f) {
  std::vector<float> ys(xs.size());
  simd_math::map_vectors(xs.data(), ys.data(), static_cast<int64_t>(xs.size()), f);
  return ys;
}

std::vector<float> sweep(float lo, float hi, int n) {
  std::vector<float> xs;
  for (int i = 0; i <= n; ++i) xs.push_back(lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(n));
  return xs;
}

using testing::gelu_ref;
using testing::gelu_tanh_ref;
using testing::quick_gelu_ref;
using testing::silu_ref;

// Each lane of one vector call gets its own input, so a lane mix-up would show.
void exp_of_16(const float* x, float* y) { simd::store(y, simd::exp(simd::load(x))); }

TEST_F(SIMD_SUITE, ExpWithinTwoUlpOfStdExpOnSoftmaxRange) {
  // Every 32nd float of [-100, 0] (over 30 million inputs, denser where the floats are), which
  // covers each binade and, near -87.3, the flush boundary.
  const uint32_t last = std::bit_cast<uint32_t>(100.0f);
  constexpr uint32_t kStride = 32;
  double worst_ulp = 0;
  float worst_x = 0;
  int64_t flushed = 0, checked = 0;
  alignas(64) float x[simd::kLanes], y[simd::kLanes];
  int fill = 0;
  auto check_batch = [&](int count) {
    exp_of_16(x, y);
    for (int i = 0; i < count; ++i) {
      if (x[i] < simd::kExpFlushBelow) {
        ASSERT_EQ(y[i], 0.0f) << "exp(" << x[i] << ") should flush to 0";
        ++flushed;
        continue;
      }
      double e = ulp_error(y[i], std::exp(static_cast<double>(x[i])));
      ++checked;
      if (e > worst_ulp) worst_ulp = e, worst_x = x[i];
    }
  };
  for (uint32_t bits = 0; bits <= last; bits += kStride) {
    x[fill++] = -std::bit_cast<float>(bits);
    if (fill == simd::kLanes) check_batch(fill), fill = 0;
  }
  for (int i = fill; i < simd::kLanes; ++i) x[i] = -1.0f;
  check_batch(fill);
  std::printf("    exp: %lld inputs, max error %.3f ulp at x = %.9g; %lld below %.5f flushed to 0\n",
              static_cast<long long>(checked), worst_ulp, worst_x, static_cast<long long>(flushed),
              simd::kExpFlushBelow);
  EXPECT_LE(worst_ulp, kExpMaxUlp) << "at x = " << worst_x;
  // Every result above the flush point is a normal float: kExpFlushBelow is not below ln(FLT_MIN).
  EXPECT_GE(std::exp(static_cast<double>(simd::kExpFlushBelow)), std::numeric_limits<float>::min());
}

TEST_F(SIMD_SUITE, ExpSpecialValues) {
  constexpr float kInf = std::numeric_limits<float>::infinity();
  alignas(64) float x[simd::kLanes] = {0.0f,  -0.0f, -kInf, -1e-30f, -1e30f, -88.0f, -87.0f, 1.0f,
                                       10.0f, 88.0f, -0.5f, -1.0f,   -2.0f,  -20.0f, -50.0f, -100.0f};
  alignas(64) float y[simd::kLanes];
  exp_of_16(x, y);
  EXPECT_EQ(y[0], 1.0f);  // the softmax maximum's weight is exactly 1
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], 0.0f);  // masked scores
  EXPECT_EQ(y[3], 1.0f);
  EXPECT_EQ(y[4], 0.0f);
  EXPECT_EQ(y[5], 0.0f);
  for (int i : {6, 7, 8, 9, 10, 11, 12, 13, 14})
    EXPECT_LE(ulp_error(y[i], std::exp(static_cast<double>(x[i]))), kExpMaxUlp) << "x = " << x[i];
  EXPECT_EQ(y[15], 0.0f);
}

TEST_F(SIMD_SUITE, TransposeSwapsRowsAndLanes) {
  simd::Vec rows[simd::kLanes];
  alignas(64) float buf[simd::kLanes];
  for (int r = 0; r < simd::kLanes; ++r) {
    for (int l = 0; l < simd::kLanes; ++l) buf[l] = static_cast<float>(r * 100 + l);
    rows[r] = simd::load(buf);
  }
  simd::transpose(rows);
  for (int r = 0; r < simd::kLanes; ++r) {
    simd::store(buf, rows[r]);
    for (int l = 0; l < simd::kLanes; ++l) EXPECT_EQ(buf[l], static_cast<float>(l * 100 + r)) << r << ", " << l;
  }
}

TEST_F(SIMD_SUITE, LeadingLanesTouchOnlyTheFirstN) {
  alignas(64) float src[simd::kLanes], dst[simd::kLanes];
  for (int l = 0; l < simd::kLanes; ++l) src[l] = static_cast<float>(l + 1);
  for (int n : {0, 1, 7, 16}) {
    std::fill_n(dst, simd::kLanes, -1.0f);
    simd::store(dst, simd::load_leading(src, n));
    for (int l = 0; l < simd::kLanes; ++l) EXPECT_EQ(dst[l], l < n ? src[l] : 0.0f);
    std::fill_n(dst, simd::kLanes, -1.0f);
    simd::store_leading(dst, simd::load(src), n);
    for (int l = 0; l < simd::kLanes; ++l) EXPECT_EQ(dst[l], l < n ? src[l] : -1.0f);
  }
}

TEST_F(SIMD_SUITE, PairsRoundLikeFloatToBf16AndDotBothHalves) {
  alignas(64) float a[simd::kLanes], b[simd::kLanes], acc[simd::kLanes];
  alignas(64) uint32_t pairs[simd::kLanes];
  for (int l = 0; l < simd::kLanes; ++l) {
    a[l] = 1.0f + static_cast<float>(l) / 3.0f;    // needs rounding
    b[l] = -0.001f * static_cast<float>(l * l + 1);
  }
  b[3] = 1.0f + 1.0f / 256.0f;  // halfway between two bf16 values: ties to even (1.0)
  b[4] = 1.0f + 3.0f / 256.0f;  // halfway, rounds up to the even 1 + 2/128
  simd::PairVec p = simd::round_to_pairs(simd::load(a), simd::load(b));
  simd::store_pairs(pairs, p);
  for (int l = 0; l < simd::kLanes; ++l) {
    EXPECT_EQ(pairs[l] & 0xffffu, float_to_bf16(a[l])) << l;
    EXPECT_EQ(pairs[l] >> 16, float_to_bf16(b[l])) << l;
  }
  EXPECT_EQ(bf16_to_float(static_cast<uint16_t>(pairs[3] >> 16)), 1.0f);
  EXPECT_EQ(bf16_to_float(static_cast<uint16_t>(pairs[4] >> 16)), 1.0f + 2.0f / 128.0f);
  // (a, b) . (a, b) + 1 per lane, with the rounded values.
  simd::store(acc, simd::pair_dot(simd::broadcast(1.0f), p, p));
  for (int l = 0; l < simd::kLanes; ++l) {
    double ra = bf16_to_float(float_to_bf16(a[l])), rb = bf16_to_float(float_to_bf16(b[l]));
    EXPECT_NEAR(acc[l], 1.0 + ra * ra + rb * rb, 1e-6 * (1.0 + ra * ra + rb * rb)) << l;
  }
}

TEST_F(SIMD_SUITE, ErfWithinTwoTenthsOfAMillionthOfLibm) {
  std::vector<float> xs = sweep(-8.0f, 8.0f, 1 << 21);
  // Around the switch between the small-argument and the tail formula, every float.
  for (float v = 0.99f; v < 1.01f; v = std::nextafter(v, 2.0f)) {
    xs.push_back(v);
    xs.push_back(-v);
  }
  std::vector<float> ys = apply_vector(xs, [](simd::Vec v) { return simd_math::erf(v); });
  double max_abs = 0, max_ulp = 0;
  float worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double exact = std::erf(static_cast<double>(xs[i]));
    const double err = std::fabs(ys[i] - exact);
    if (err > max_abs) max_abs = err, worst = xs[i];
    max_ulp = std::max(max_ulp, ulp_error(ys[i], exact));
  }
  std::printf("    erf: %zu inputs, max abs error %.3g at x = %.9g, max %.2f ulp\n", xs.size(), max_abs, worst,
              max_ulp);
  EXPECT_LE(max_abs, kErfMaxAbs);
  EXPECT_LE(max_ulp, kExpMaxUlp);
}

TEST_F(SIMD_SUITE, ErfSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> xs = {0.0f, -0.0f, inf, -inf, 1.0f, -1.0f, 1e-30f, 40.0f, -40.0f};
  std::vector<float> ys = apply_vector(xs, [](simd::Vec v) { return simd_math::erf(v); });
  EXPECT_EQ(ys[0], 0.0f);
  EXPECT_TRUE(std::signbit(ys[1]));
  EXPECT_EQ(ys[2], 1.0f);
  EXPECT_EQ(ys[3], -1.0f);
  EXPECT_NEAR(ys[4], std::erf(1.0), 1e-7);
  EXPECT_NEAR(ys[5], -std::erf(1.0), 1e-7);
  EXPECT_NEAR(ys[6], 1.1283791670955126e-30, 1e-36);
  EXPECT_EQ(ys[7], 1.0f);
  EXPECT_EQ(ys[8], -1.0f);
  std::vector<float> nan = apply_vector({std::numeric_limits<float>::quiet_NaN()},
                                        [](simd::Vec v) { return simd_math::erf(v); });
  EXPECT_TRUE(std::isnan(nan[0]));
}

// The activations use exp of positive arguments too (exp(-x) for negative x), which the softmax
// tests of vector_math.h do not cover.
TEST_F(SIMD_SUITE, ExpWithinTwoUlpOverTheWholeFiniteRange) {
  std::vector<float> xs = sweep(-87.0f, 88.5f, 1 << 20);
  std::vector<float> ys = apply_vector(xs, [](simd::Vec v) { return simd::exp(v); });
  double max_ulp = 0;
  for (size_t i = 0; i < xs.size(); ++i)
    max_ulp = std::max(max_ulp, ulp_error(ys[i], std::exp(static_cast<double>(xs[i]))));
  std::printf("    exp on [-87, 88.5]: max %.2f ulp\n", max_ulp);
  EXPECT_LE(max_ulp, kExpMaxUlp);
  std::vector<float> big = apply_vector({89.0f, 1000.0f}, [](simd::Vec v) { return simd::exp(v); });
  EXPECT_EQ(big[0], std::numeric_limits<float>::infinity());
  EXPECT_EQ(big[1], std::numeric_limits<float>::infinity());
}

// Each activation per element, in "mixed" ulps: the error divided by ulp(f(x)) + |x f'(x)| 2^-24.
// The second term is what a relative perturbation of x by one float rounding changes f by; any
// float implementation that rounds an argument derived from x (1.702 x, the tanh-GELU cubic) has
// errors of that size where f is steep relative to its value (large negative x), so a pure ulp
// bound would measure the argument's rounding, not the function. Exact values below 1e-30 (tails
// flushed through exp and erfc) only need to be as small.
template <typename F, typename Ref>
void expect_activation_accurate(const char* name, F f, Ref ref, double max_mixed_ulp) {
  std::vector<float> xs = sweep(-30.0f, 30.0f, 1 << 20);
  for (float v : {0.0f, 1e-20f, -1e-20f, 1e-3f, -1e-3f, 100.0f, -100.0f}) xs.push_back(v);
  std::vector<float> ys = apply_vector(xs, f);
  double worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double x = xs[i], exact = ref(x);
    if (std::fabs(exact) < 1e-30) {
      EXPECT_LE(std::fabs(ys[i]), 2e-30) << name << "(" << x << ")";
      continue;
    }
    const double h = 1e-6 * std::max(1.0, std::fabs(x));
    const double slope = (ref(x + h) - ref(x - h)) / (2 * h);
    const double e = std::fabs(ys[i] - exact) / (float_ulp(exact) + std::fabs(x * slope) * 0x1p-24);
    if (e > worst) worst = e, worst_x = xs[i];
  }
  std::printf("    %s: max %.2f mixed ulp at x = %.9g\n", name, worst, worst_x);
  EXPECT_LE(worst, max_mixed_ulp) << name;
}

TEST_F(SIMD_SUITE, ActivationsAccurateAcrossTheRange) {
  using simd::Vec;
  expect_activation_accurate("silu", [](Vec v) { return simd_math::silu(v); }, silu_ref, 4.0);
  expect_activation_accurate("quick_gelu", [](Vec v) { return simd_math::quick_gelu(v); }, quick_gelu_ref, 4.0);
  expect_activation_accurate("gelu_tanh", [](Vec v) { return simd_math::gelu_tanh(v); }, gelu_tanh_ref, 8.0);
  expect_activation_accurate("gelu", [](Vec v) { return simd_math::gelu(v); }, gelu_ref, 8.0);
}


TEST_F(SIMD_SUITE, DuplicateLanesRepeatsEachLaneTwice) {
  alignas(64) float src[simd::kLanes], low[simd::kLanes], high[simd::kLanes];
  for (int l = 0; l < simd::kLanes; ++l) src[l] = static_cast<float>(l + 1);
  simd::store(low, simd_math::duplicate_lanes_low(simd::load(src)));
  simd::store(high, simd_math::duplicate_lanes_high(simd::load(src)));
  for (int l = 0; l < simd::kLanes; ++l) {
    EXPECT_EQ(low[l], src[l / 2]) << l;
    EXPECT_EQ(high[l], src[simd::kLanes / 2 + l / 2]) << l;
  }
}

// Float sums that lose bits in float (1 + 2^-30 per lane) come out exact in double.
TEST_F(SIMD_SUITE, DoubleSumsKeepWhatFloatSumsLose) {
  alignas(64) float small[simd::kLanes], ones[simd::kLanes];
  for (int l = 0; l < simd::kLanes; ++l) small[l] = std::ldexp(1.0f + static_cast<float>(l), -30), ones[l] = 1.0f;
  simd_math::DoubleSums sums;
  double lanes[simd::kLanes] = {};
  for (int k = 0; k < 1000; ++k) {
    sums.add(simd::load(ones));
    sums.add(simd::load(small));
    simd_math::add_lanes_to(lanes, simd::load(small));
  }
  double expected_small = 0;
  for (int l = 0; l < simd::kLanes; ++l) {
    expected_small += 1000.0 * small[l];
    EXPECT_EQ(lanes[l], 1000.0 * small[l]) << l;
  }
  EXPECT_EQ(sums.total(), 1000.0 * simd::kLanes + expected_small);
}

TEST_F(SIMD_SUITE, SelectsAndClampsLikeTheScalarRules) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  alignas(64) float a[simd::kLanes], b[simd::kLanes], out[simd::kLanes];
  for (int l = 0; l < simd::kLanes; ++l) a[l] = static_cast<float>(l) - 8.0f, b[l] = 0.0f;
  a[3] = nan;
  simd::store(out, simd_math::select_less(simd::load(a), simd::load(b), simd::broadcast(1.0f), simd::broadcast(2.0f)));
  for (int l = 0; l < simd::kLanes; ++l) EXPECT_EQ(out[l], l != 3 && a[l] < 0.0f ? 1.0f : 2.0f) << l;
  simd::store(out, simd_math::clamp(simd::load(a), simd::broadcast(-2.0f), simd::broadcast(3.0f)));
  for (int l = 0; l < simd::kLanes; ++l) {
    if (l == 3) {
      EXPECT_TRUE(std::isnan(out[l]));
    } else {
      EXPECT_EQ(out[l], std::clamp(a[l], -2.0f, 3.0f)) << l;
    }
  }
  simd::store(out, simd_math::copy_sign(simd::load(a), simd::broadcast(-1.0f)));
  for (int l = 0; l < simd::kLanes; ++l)
    if (l != 3) {
      EXPECT_EQ(out[l], -std::fabs(a[l])) << l;
    }
  EXPECT_EQ(simd_math::reduce_add(simd::load(b)), 0.0f);
  for (int l = 0; l < simd::kLanes; ++l) b[l] = static_cast<float>(l);
  EXPECT_EQ(simd_math::reduce_add(simd::load(b)), 120.0f);
}

}  // namespace
}  // namespace sdrt::kernels::SDRT_ISA_NS
