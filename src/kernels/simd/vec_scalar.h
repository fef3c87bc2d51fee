// The portable backend of simd::Vec: plain per-lane loops (the compiler may use SSE2 for them).
// Included by vector_math.h only; see there.
#pragma once

namespace sdrt::kernels::SDRT_ISA_NS::simd {

// Sizes the attention micro-kernels' blocks as on AVX2; the compiler keeps what it can in SSE registers.
inline constexpr int kRegisterVecs = 8;

struct Vec {
  float v[kLanes];
};

template <typename F>
inline Vec per_lane(F f) {
  Vec r;
  for (int i = 0; i < kLanes; ++i) r.v[i] = f(i);
  return r;
}

inline Vec zero() {
  return per_lane([](int) { return 0.0f; });
}
inline Vec broadcast(float x) {
  return per_lane([x](int) { return x; });
}
inline Vec load(const float* p) {
  return per_lane([p](int i) { return p[i]; });
}
inline void store(float* p, Vec a) {
  for (int i = 0; i < kLanes; ++i) p[i] = a.v[i];
}
inline Vec add(Vec a, Vec b) {
  return per_lane([&](int i) { return a.v[i] + b.v[i]; });
}
inline Vec sub(Vec a, Vec b) {
  return per_lane([&](int i) { return a.v[i] - b.v[i]; });
}
inline Vec mul(Vec a, Vec b) {
  return per_lane([&](int i) { return a.v[i] * b.v[i]; });
}
inline Vec div(Vec a, Vec b) {
  return per_lane([&](int i) { return a.v[i] / b.v[i]; });
}
// Same NaN rule as the AVX-512 instruction: the second operand unless the first is larger.
inline Vec max(Vec a, Vec b) {
  return per_lane([&](int i) { return a.v[i] > b.v[i] ? a.v[i] : b.v[i]; });
}
inline Vec fma(Vec a, Vec b, Vec c) {
  return per_lane([&](int i) { return std::fma(a.v[i], b.v[i], c.v[i]); });
}

inline Vec fill_leading_lanes(Vec a, int n, float value) {
  return per_lane([&](int i) { return i < n ? value : a.v[i]; });
}
inline Vec load_leading(const float* p, int n) {
  return per_lane([&](int i) { return i < n ? p[i] : 0.0f; });
}
inline void store_leading(float* p, Vec a, int n) {
  for (int i = 0; i < kLanes && i < n; ++i) p[i] = a.v[i];
}

inline void transpose(Vec (&rows)[kLanes]) {
  for (int i = 0; i < kLanes; ++i)
    for (int j = i + 1; j < kLanes; ++j) std::swap(rows[i].v[j], rows[j].v[i]);
}

// The same range reduction and polynomial as the AVX-512 version, one lane at a time.
inline float exp_lane(float x) {
  using namespace exp_detail;
  if (!(x >= kExpFlushBelow)) return std::isnan(x) ? x : 0.0f;
  float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kLn2Hi, x);
  r = std::fma(-n, kLn2Lo, r);
  float p = std::fma(kC6, r, kC5);
  p = std::fma(p, r, kC4);
  p = std::fma(p, r, kC3);
  p = std::fma(p, r, kC2);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  return std::ldexp(p, static_cast<int>(n));
}

inline Vec exp(Vec x) {
  return per_lane([&](int i) { return exp_lane(x.v[i]); });
}

struct PairVec {
  uint32_t v[kLanes];
};

inline PairVec load_pairs(const uint32_t* p) {
  PairVec r;
  for (int i = 0; i < kLanes; ++i) r.v[i] = p[i];
  return r;
}
inline void store_pairs(uint32_t* p, PairVec a) {
  for (int i = 0; i < kLanes; ++i) p[i] = a.v[i];
}
inline PairVec broadcast_pair(uint32_t x) {
  PairVec r;
  for (int i = 0; i < kLanes; ++i) r.v[i] = x;
  return r;
}

inline uint32_t rounded_bits(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return bits + 0x7fffu + ((bits >> 16) & 1u);
}
inline float pair_half(uint32_t pair, bool high) {
  uint32_t bits = high ? (pair & 0xffff0000u) : (pair << 16);
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

inline PairVec round_to_pairs(Vec a, Vec b) {
  PairVec r;
  for (int i = 0; i < kLanes; ++i) r.v[i] = (rounded_bits(a.v[i]) >> 16) | (rounded_bits(b.v[i]) & 0xffff0000u);
  return r;
}

inline Vec pair_dot(Vec acc, PairVec a, PairVec b) {
  return per_lane([&](int i) {
    float low = std::fma(pair_half(a.v[i], false), pair_half(b.v[i], false), acc.v[i]);
    return std::fma(pair_half(a.v[i], true), pair_half(b.v[i], true), low);
  });
}


}  // namespace sdrt::kernels::SDRT_ISA_NS::simd

// The ISA-specific primitives of simd_math.h.
namespace sdrt::kernels::SDRT_ISA_NS::simd_math {

using simd::kLanes;
using simd::Vec;


inline Vec abs(Vec a) {
  return simd::per_lane([&](int i) { return std::fabs(a.v[i]); });
}
inline Vec copy_sign(Vec magnitude, Vec sign_source) {
  return simd::per_lane([&](int i) { return std::copysign(magnitude.v[i], sign_source.v[i]); });
}
inline Vec select_less(Vec a, Vec b, Vec if_less, Vec otherwise) {
  return simd::per_lane([&](int i) { return a.v[i] < b.v[i] ? if_less.v[i] : otherwise.v[i]; });
}
inline Vec clamp(Vec v, Vec lo, Vec hi) {
  return simd::per_lane([&](int i) {
    float x = v.v[i];
    return x < lo.v[i] ? lo.v[i] : (x > hi.v[i] ? hi.v[i] : x);
  });
}
inline Vec fms(Vec a, Vec b, Vec c) {
  return simd::per_lane([&](int i) { return std::fma(a.v[i], b.v[i], -c.v[i]); });
}
inline Vec fnma(Vec a, Vec b, Vec c) {
  return simd::per_lane([&](int i) { return std::fma(-a.v[i], b.v[i], c.v[i]); });
}

class DoubleSums {
 public:
  void add(Vec a) {
    for (int i = 0; i < kLanes; ++i) lanes_[i] += a.v[i];
  }
  double total() const {
    double s = 0;
    for (double v : lanes_) s += v;
    return s;
  }

 private:
  double lanes_[kLanes] = {};
};

inline void add_lanes_to(double* sums, Vec a) {
  for (int i = 0; i < kLanes; ++i) sums[i] += a.v[i];
}

inline Vec duplicate_lanes_low(Vec a) {
  return simd::per_lane([&](int i) { return a.v[i / 2]; });
}
inline Vec duplicate_lanes_high(Vec a) {
  return simd::per_lane([&](int i) { return a.v[kLanes / 2 + i / 2]; });
}


}  // namespace sdrt::kernels::SDRT_ISA_NS::simd_math
