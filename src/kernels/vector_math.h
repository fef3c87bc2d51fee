// Sixteen-lane float vectors for the hand-vectorised kernels (attention.cpp). With AVX-512 each
// `Vec` is one zmm register and every operation one or two instructions; without it the same
// operations are plain per-lane loops, so a kernel written against `Vec` is written once, and the
// portable build (and its tests) run the very same algorithm, just slower.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#ifdef __AVX512F__
#include <immintrin.h>
#endif

namespace sdrt::kernels::simd {

inline constexpr int kLanes = 16;

// exp(x) is below the smallest normal float here; such inputs give exactly 0. In softmax they are
// scores ~87 below the row maximum, whose weight is invisible next to the maximum's 1, and
// producing 0 instead of a subnormal keeps the following multiply-adds off the slow subnormal path.
inline constexpr float kExpFlushBelow = -87.33654f;

namespace exp_detail {
inline constexpr float kLog2e = 1.44269504088896341f;
// ln 2 split so that x - n * ln2 keeps the bits that one float constant would lose.
inline constexpr double kLn2 = 0.693147180559945309417232121458;
inline constexpr float kLn2Hi = static_cast<float>(kLn2);
inline constexpr float kLn2Lo = static_cast<float>(kLn2 - static_cast<double>(kLn2Hi));
// exp(r) ~= 1 + r (1 + r (c2 + r (c3 + r (c4 + r (c5 + r c6))))) on |r| <= ln2 / 2: a relative-error
// minimax fit (computed for this file, max relative error 3.1e-9, far below float's 6e-8), with the
// constant and linear terms pinned to 1 so that exp(0) is exactly 1.
inline constexpr float kC2 = 4.999999345e-01f;
inline constexpr float kC3 = 1.666652069e-01f;
inline constexpr float kC4 = 4.166838741e-02f;
inline constexpr float kC5 = 8.368710035e-03f;
inline constexpr float kC6 = 1.381461100e-03f;
}  // namespace exp_detail

#ifdef __AVX512F__

struct Vec {
  __m512 v;
};

inline Vec zero() { return {_mm512_setzero_ps()}; }
inline Vec broadcast(float x) { return {_mm512_set1_ps(x)}; }
inline Vec load(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void store(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec add(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec sub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec mul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec div(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
// The zero-masking forms with all lanes selected, here, in exp and in transpose, compile to the
// plain instructions; GCC 12's unmasked wrappers of these trip -Wmaybe-uninitialized on their
// internal undefined operand.
inline constexpr __mmask16 kAllLanes = 0xFFFF;
inline constexpr __mmask8 kAllPairs = 0xFF;  // the same for 8 double-width lanes
inline Vec max(Vec a, Vec b) { return {_mm512_maskz_max_ps(kAllLanes, a.v, b.v)}; }
// a * b + c with one rounding.
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }

// The first n lanes, n clamped to [0, kLanes].
inline __mmask16 leading_lanes(int n) {
  n = n < 0 ? 0 : (n > kLanes ? kLanes : n);
  return static_cast<__mmask16>((1u << n) - 1u);
}

// Lanes [0, n) replaced by `value`.
inline Vec fill_leading_lanes(Vec a, int n, float value) {
  return {_mm512_mask_mov_ps(a.v, leading_lanes(n), _mm512_set1_ps(value))};
}

// p[0, n) into lanes [0, n), the rest 0; nothing past p + n is touched.
inline Vec load_leading(const float* p, int n) { return {_mm512_maskz_loadu_ps(leading_lanes(n), p)}; }
// Lanes [0, n) to p[0, n); nothing past p + n is touched.
inline void store_leading(float* p, Vec a, int n) { _mm512_mask_storeu_ps(p, leading_lanes(n), a.v); }

// rows[i] lane j <-> rows[j] lane i, in 64 shuffles: pairs of rows interleave floats, then pairs
// of pairs interleave float pairs, which leaves each 128-bit quarter holding a 4x4 block of the
// transpose; two rounds of quarter shuffles put the blocks in place.
inline void transpose(Vec (&rows)[kLanes]) {
  __m512 a[kLanes], b[kLanes];
  for (int k = 0; k < kLanes; k += 2) {
    a[k] = _mm512_maskz_unpacklo_ps(kAllLanes, rows[k].v, rows[k + 1].v);
    a[k + 1] = _mm512_maskz_unpackhi_ps(kAllLanes, rows[k].v, rows[k + 1].v);
  }
  // b[4m + q], quarter j: column 4j + q of rows 4m .. 4m + 3.
  for (int m = 0; m < kLanes; m += 4) {
    auto pairs = [&](int i) { return _mm512_castps_pd(a[m + i]); };
    b[m] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAllPairs, pairs(0), pairs(2)));
    b[m + 1] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAllPairs, pairs(0), pairs(2)));
    b[m + 2] = _mm512_castpd_ps(_mm512_maskz_unpacklo_pd(kAllPairs, pairs(1), pairs(3)));
    b[m + 3] = _mm512_castpd_ps(_mm512_maskz_unpackhi_pd(kAllPairs, pairs(1), pairs(3)));
  }
  // Column 4j + q is quarter j of b[q], b[4 + q], b[8 + q], b[12 + q], in that order.
  for (int q = 0; q < 4; ++q) {
    __m512 low01 = _mm512_maskz_shuffle_f32x4(kAllLanes, b[q], b[4 + q], 0x44);
    __m512 high01 = _mm512_maskz_shuffle_f32x4(kAllLanes, b[q], b[4 + q], 0xEE);
    __m512 low23 = _mm512_maskz_shuffle_f32x4(kAllLanes, b[8 + q], b[12 + q], 0x44);
    __m512 high23 = _mm512_maskz_shuffle_f32x4(kAllLanes, b[8 + q], b[12 + q], 0xEE);
    rows[q].v = _mm512_maskz_shuffle_f32x4(kAllLanes, low01, low23, 0x88);
    rows[4 + q].v = _mm512_maskz_shuffle_f32x4(kAllLanes, low01, low23, 0xDD);
    rows[8 + q].v = _mm512_maskz_shuffle_f32x4(kAllLanes, high01, high23, 0x88);
    rows[12 + q].v = _mm512_maskz_shuffle_f32x4(kAllLanes, high01, high23, 0xDD);
  }
}

// exp(x) per lane, within 1 ulp of the exact value for x >= kExpFlushBelow (measured on [-100, 0]
// by tests/kernels/attention_test.cpp); 0 below it, including -inf.
inline Vec exp(Vec x) {
  using namespace exp_detail;
  // x = n ln2 + r with integer n and |r| <= ln2 / 2, so exp(x) = 2^n exp(r).
  __m512 n = _mm512_maskz_roundscale_ps(kAllLanes, _mm512_mul_ps(x.v, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x.v);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(kC6), r, _mm512_set1_ps(kC5));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC4));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC3));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kC2));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  // p * 2^n without forming 2^n (so n = 128 does not overflow early), and 0 where x is below the
  // flush point, -inf included; NaN counts as "not below" and stays NaN.
  __mmask16 in_range = _mm512_cmp_ps_mask(x.v, _mm512_set1_ps(kExpFlushBelow), _CMP_NLT_UQ);
  return {_mm512_maskz_scalef_ps(in_range, p, n)};
}

// ---- bf16 pairs (the bf16 products in attention.cpp). A PairVec holds, in each of its 16 lanes,
// two bf16 values: the first of the pair in the low 16 bits. pair_dot multiplies two PairVecs lane
// by lane and adds both products to a float vector, which is what AVX512_BF16's vdpbf16ps does in
// one instruction; bf16 x bf16 products are exact in float, so only the additions round.

struct PairVec {
  __m512i v;
};

inline PairVec load_pairs(const uint32_t* p) { return {_mm512_loadu_si512(p)}; }
inline void store_pairs(uint32_t* p, PairVec a) { _mm512_storeu_si512(p, a.v); }
inline PairVec broadcast_pair(uint32_t x) { return {_mm512_set1_epi32(static_cast<int>(x))}; }

// a and b rounded to bf16 (to nearest even; inputs must be finite), lane i holding (a[i], b[i]).
// (The all-lanes zero-masking forms again, for the same GCC 12 warning as above.)
inline PairVec round_to_pairs(Vec a, Vec b) {
  auto rounded = [](__m512 x) {  // the float's bits + 0x7fff + (bit 16), whose top half is the bf16
    __m512i bits = _mm512_castps_si512(x);
    __m512i odd = _mm512_maskz_and_epi32(kAllLanes, _mm512_maskz_srli_epi32(kAllLanes, bits, 16), _mm512_set1_epi32(1));
    return _mm512_maskz_add_epi32(kAllLanes, _mm512_maskz_add_epi32(kAllLanes, bits, _mm512_set1_epi32(0x7fff)), odd);
  };
  __m512i low = _mm512_maskz_srli_epi32(kAllLanes, rounded(a.v), 16);
  __m512i high = _mm512_maskz_and_epi32(kAllLanes, rounded(b.v), _mm512_set1_epi32(static_cast<int>(0xffff0000u)));
  return {_mm512_maskz_or_epi32(kAllLanes, low, high)};
}

inline Vec pair_dot(Vec acc, PairVec a, PairVec b) {
#ifdef __AVX512BF16__
  return {_mm512_dpbf16_ps(acc.v, (__m512bh)a.v, (__m512bh)b.v)};
#else
  const __m512i high_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  __m512 a_low = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAllLanes, a.v, 16));
  __m512 b_low = _mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAllLanes, b.v, 16));
  __m512 a_high = _mm512_castsi512_ps(_mm512_maskz_and_epi32(kAllLanes, a.v, high_half));
  __m512 b_high = _mm512_castsi512_ps(_mm512_maskz_and_epi32(kAllLanes, b.v, high_half));
  return {_mm512_fmadd_ps(a_high, b_high, _mm512_fmadd_ps(a_low, b_low, acc.v))};
#endif
}

#else  // portable lane loops

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

#endif

}  // namespace sdrt::kernels::simd
