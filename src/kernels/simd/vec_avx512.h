// The AVX-512 backend of simd::Vec: one zmm register per Vec.
// Included by vector_math.h only; see there.
#pragma once

#include <immintrin.h>

namespace sdrt::kernels::SDRT_ISA_NS::simd {

// Vecs that fit the register file at once (32 zmm).
inline constexpr int kRegisterVecs = 32;

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


}  // namespace sdrt::kernels::SDRT_ISA_NS::simd

// The ISA-specific primitives of simd_math.h.
namespace sdrt::kernels::SDRT_ISA_NS::simd_math {

using simd::kLanes;
using simd::Vec;

// As in vector_math.h, the zero-masking intrinsics with every lane selected stand for the plain
// instructions, whose GCC 12 wrappers trip -Wmaybe-uninitialized.

inline Vec abs(Vec a) {
  const __m512i magnitude_bits = _mm512_set1_epi32(0x7FFFFFFF);
  return {_mm512_castsi512_ps(_mm512_maskz_and_epi32(simd::kAllLanes, _mm512_castps_si512(a.v), magnitude_bits))};
}
// |magnitude| with the sign bit of `sign_source` (copysign).
inline Vec copy_sign(Vec magnitude, Vec sign_source) {
  const __m512i sign_bit = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  // Bitwise sign_bit ? sign_source : magnitude; 0xD8 is the truth table of C ? B : A.
  return {_mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(magnitude.v),
                                                        _mm512_castps_si512(sign_source.v), sign_bit, 0xD8))};
}
// Per lane: a < b ? if_less : otherwise (false for NaN).
inline Vec select_less(Vec a, Vec b, Vec if_less, Vec otherwise) {
  return {_mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), otherwise.v, if_less.v)};
}
// v limited to [lo, hi]; NaN stays NaN (the instructions return their second operand when either
// is NaN, and v is passed second).
inline Vec clamp(Vec v, Vec lo, Vec hi) {
  return {_mm512_maskz_max_ps(simd::kAllLanes, lo.v, _mm512_maskz_min_ps(simd::kAllLanes, hi.v, v.v))};
}
// a * b - c with one rounding.
inline Vec fms(Vec a, Vec b, Vec c) { return {_mm512_fmsub_ps(a.v, b.v, c.v)}; }
// c - a * b with one rounding.
inline Vec fnma(Vec a, Vec b, Vec c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
// Sixteen running double sums of float vectors: a float vector is widened to two halves of eight
// doubles, so the sums themselves do not lose float precision however many vectors are added.
class DoubleSums {
 public:
  void add(Vec a) {
    hi_ = _mm512_add_pd(hi_, _mm512_maskz_cvtps_pd(simd::kAllPairs, half<1>(a)));
    lo_ = _mm512_add_pd(lo_, _mm512_maskz_cvtps_pd(simd::kAllPairs, half<0>(a)));
  }
  double total() const {
    alignas(64) double lanes[kLanes / 2];
    _mm512_store_pd(lanes, _mm512_add_pd(lo_, hi_));
    double s = 0;
    for (double v : lanes) s += v;
    return s;
  }

 private:
  // Lanes [8k, 8k + 8) of a.
  template <int k>
  static __m256 half(Vec a) {
    return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, _mm512_castps_pd(a.v), k));
  }
  __m512d lo_ = _mm512_setzero_pd(), hi_ = _mm512_setzero_pd();
};

// sums[i] += a[i] for the 16 lanes, in double: per-lane running sums kept in memory (one per
// channel in channels-last GroupNorm).
inline void add_lanes_to(double* sums, Vec a) {
  const __m512d bits = _mm512_castps_pd(a.v);
  const __m512d low = _mm512_maskz_cvtps_pd(simd::kAllPairs, _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, bits, 0)));
  const __m512d high = _mm512_maskz_cvtps_pd(simd::kAllPairs, _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, bits, 1)));
  _mm512_storeu_pd(sums, _mm512_add_pd(_mm512_maskz_loadu_pd(simd::kAllPairs, sums), low));
  _mm512_storeu_pd(sums + 8, _mm512_add_pd(_mm512_maskz_loadu_pd(simd::kAllPairs, sums + 8), high));
}

// Each lane twice: duplicate_lanes_low(a) = a0 a0 a1 a1 .. a7 a7, duplicate_lanes_high(a) =
// a8 a8 .. a15 a15 (nearest-neighbour upsampling of a row).
inline Vec duplicate_lanes_low(Vec a) {
  const __m512i index = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  return {_mm512_maskz_permutexvar_ps(simd::kAllLanes, index, a.v)};
}
inline Vec duplicate_lanes_high(Vec a) {
  const __m512i index = _mm512_set_epi32(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
  return {_mm512_maskz_permutexvar_ps(simd::kAllLanes, index, a.v)};
}


}  // namespace sdrt::kernels::SDRT_ISA_NS::simd_math
