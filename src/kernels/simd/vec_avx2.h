// The AVX2 + FMA backend of simd::Vec: each Vec is two ymm registers, lanes 0-7 in `lo` and
// 8-15 in `hi`, so kernels keep the sixteen-lane blocking of the other tiers; the attention
// micro-kernels size their register blocks by kRegisterVecs.
// Included by vector_math.h only; see there.
#pragma once

#include <immintrin.h>

namespace sdrt::kernels::SDRT_ISA_NS::simd {

// Vecs that fit the register file at once (16 ymm).
inline constexpr int kRegisterVecs = 8;

struct Vec {
  __m256 lo, hi;
};

namespace avx2_detail {
template <class F>
inline Vec both(Vec a, Vec b, F f) {
  return {f(a.lo, b.lo), f(a.hi, b.hi)};
}
// All-ones in lane i (of 8) where i < n; n may be outside [0, 8].
inline __m256i leading8(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// 8x8 transpose of r[0..7] in place.
inline void transpose8(__m256 (&r)[8]) {
  __m256 t[8], u[8];
  for (int k = 0; k < 8; k += 2) {
    t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
    t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
  }
  for (int k = 0; k < 8; k += 4) {
    u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
    u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
    u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
    u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
  }
  for (int k = 0; k < 4; ++k) {
    r[k] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x20);
    r[k + 4] = _mm256_permute2f128_ps(u[k], u[k + 4], 0x31);
  }
}
// 2^n for integer-valued float n in [-126, 127], built from the exponent bits.
inline __m256 pow2(__m256 n) {
  __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_castsi256_ps(bits);
}
}  // namespace avx2_detail

inline Vec zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
inline Vec broadcast(float x) {
  __m256 v = _mm256_set1_ps(x);
  return {v, v};
}
inline Vec load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
inline void store(float* p, Vec a) {
  _mm256_storeu_ps(p, a.lo);
  _mm256_storeu_ps(p + 8, a.hi);
}
inline Vec add(Vec a, Vec b) { return avx2_detail::both(a, b, [](__m256 x, __m256 y) { return _mm256_add_ps(x, y); }); }
inline Vec sub(Vec a, Vec b) { return avx2_detail::both(a, b, [](__m256 x, __m256 y) { return _mm256_sub_ps(x, y); }); }
inline Vec mul(Vec a, Vec b) { return avx2_detail::both(a, b, [](__m256 x, __m256 y) { return _mm256_mul_ps(x, y); }); }
inline Vec div(Vec a, Vec b) { return avx2_detail::both(a, b, [](__m256 x, __m256 y) { return _mm256_div_ps(x, y); }); }
// The second operand where either is NaN, as vmaxps (and the other tiers) do.
inline Vec max(Vec a, Vec b) { return avx2_detail::both(a, b, [](__m256 x, __m256 y) { return _mm256_max_ps(x, y); }); }
// a * b + c with one rounding.
inline Vec fma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)}; }

// Lanes [0, n) replaced by `value`.
inline Vec fill_leading_lanes(Vec a, int n, float value) {
  __m256 v = _mm256_set1_ps(value);
  return {_mm256_blendv_ps(a.lo, v, _mm256_castsi256_ps(avx2_detail::leading8(n))),
          _mm256_blendv_ps(a.hi, v, _mm256_castsi256_ps(avx2_detail::leading8(n - 8)))};
}
// p[0, n) into lanes [0, n), the rest 0; nothing past p + n is touched (masked loads do not fault
// on masked-off lanes).
inline Vec load_leading(const float* p, int n) {
  return {_mm256_maskload_ps(p, avx2_detail::leading8(n)), _mm256_maskload_ps(p + 8, avx2_detail::leading8(n - 8))};
}
// Lanes [0, n) to p[0, n); nothing past p + n is touched.
inline void store_leading(float* p, Vec a, int n) {
  _mm256_maskstore_ps(p, avx2_detail::leading8(n), a.lo);
  _mm256_maskstore_ps(p + 8, avx2_detail::leading8(n - 8), a.hi);
}

// rows[i] lane j <-> rows[j] lane i: the 16x16 matrix is four 8x8 blocks, each transposed in
// registers, with the two off-diagonal blocks trading places.
inline void transpose(Vec (&rows)[kLanes]) {
  __m256 top_left[8], top_right[8], bottom_left[8], bottom_right[8];
  for (int r = 0; r < 8; ++r) {
    top_left[r] = rows[r].lo;
    top_right[r] = rows[r].hi;
    bottom_left[r] = rows[8 + r].lo;
    bottom_right[r] = rows[8 + r].hi;
  }
  avx2_detail::transpose8(top_left);
  avx2_detail::transpose8(top_right);
  avx2_detail::transpose8(bottom_left);
  avx2_detail::transpose8(bottom_right);
  for (int r = 0; r < 8; ++r) {
    rows[r] = {top_left[r], bottom_left[r]};
    rows[8 + r] = {top_right[r], bottom_right[r]};
  }
}

// exp(x) per lane: the range reduction and polynomial of the other tiers. 2^n is applied in two
// halves, 2^(n - n/2) 2^(n/2), so that n = 128 (x just below the float maximum's log) and the
// overflow to inf past it come out as the AVX-512 tier's vscalefps gives them; 0 below
// kExpFlushBelow, -inf included; NaN stays NaN.
inline __m256 exp8(__m256 x) {
  using namespace exp_detail;
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // |n| <= 250 keeps both halves' exponents in range; exp overflows to inf well before.
  n = _mm256_min_ps(_mm256_max_ps(n, _mm256_set1_ps(-250.0f)), _mm256_set1_ps(250.0f));
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(kC6), r, _mm256_set1_ps(kC5));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC4));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC3));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kC2));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  __m256 half_n = _mm256_round_ps(_mm256_mul_ps(n, _mm256_set1_ps(0.5f)), _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  __m256 scaled = _mm256_mul_ps(_mm256_mul_ps(p, avx2_detail::pow2(_mm256_sub_ps(n, half_n))), avx2_detail::pow2(half_n));
  __m256 in_range = _mm256_cmp_ps(x, _mm256_set1_ps(kExpFlushBelow), _CMP_NLT_UQ);
  return _mm256_and_ps(scaled, in_range);
}
inline Vec exp(Vec x) { return {exp8(x.lo), exp8(x.hi)}; }

// ---- bf16 pairs (see the AVX-512 backend): each lane holds two bf16 values, the first in the
// low 16 bits. AVX2 has no bf16 dot product; pair_dot widens both halves to float and uses two
// FMAs, which gives the same products (bf16 x bf16 is exact in float).

struct PairVec {
  __m256i lo, hi;
};

inline PairVec load_pairs(const uint32_t* p) {
  return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 8))};
}
inline void store_pairs(uint32_t* p, PairVec a) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), a.lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p + 8), a.hi);
}
inline PairVec broadcast_pair(uint32_t x) {
  __m256i v = _mm256_set1_epi32(static_cast<int>(x));
  return {v, v};
}

namespace avx2_detail {
// The float's bits + 0x7fff + (bit 16): its top half is the bf16 rounded to nearest even.
inline __m256i rounded_bits(__m256 x) {
  __m256i bits = _mm256_castps_si256(x);
  __m256i odd = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(_mm256_add_epi32(bits, _mm256_set1_epi32(0x7fff)), odd);
}
inline __m256i round_to_pairs8(__m256 a, __m256 b) {
  __m256i low = _mm256_srli_epi32(rounded_bits(a), 16);
  __m256i high = _mm256_and_si256(rounded_bits(b), _mm256_set1_epi32(static_cast<int>(0xffff0000u)));
  return _mm256_or_si256(low, high);
}
inline __m256 pair_dot8(__m256 acc, __m256i a, __m256i b) {
  const __m256i high_half = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
  __m256 a_low = _mm256_castsi256_ps(_mm256_slli_epi32(a, 16));
  __m256 b_low = _mm256_castsi256_ps(_mm256_slli_epi32(b, 16));
  __m256 a_high = _mm256_castsi256_ps(_mm256_and_si256(a, high_half));
  __m256 b_high = _mm256_castsi256_ps(_mm256_and_si256(b, high_half));
  return _mm256_fmadd_ps(a_high, b_high, _mm256_fmadd_ps(a_low, b_low, acc));
}
}  // namespace avx2_detail

// a and b rounded to bf16 (to nearest even; inputs must be finite), lane i holding (a[i], b[i]).
inline PairVec round_to_pairs(Vec a, Vec b) {
  return {avx2_detail::round_to_pairs8(a.lo, b.lo), avx2_detail::round_to_pairs8(a.hi, b.hi)};
}
inline Vec pair_dot(Vec acc, PairVec a, PairVec b) {
  return {avx2_detail::pair_dot8(acc.lo, a.lo, b.lo), avx2_detail::pair_dot8(acc.hi, a.hi, b.hi)};
}

}  // namespace sdrt::kernels::SDRT_ISA_NS::simd

// The ISA-specific primitives of simd_math.h.
namespace sdrt::kernels::SDRT_ISA_NS::simd_math {

using simd::kLanes;
using simd::Vec;

inline Vec abs(Vec a) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  return {_mm256_andnot_ps(sign, a.lo), _mm256_andnot_ps(sign, a.hi)};
}
// |magnitude| with the sign bit of `sign_source` (copysign).
inline Vec copy_sign(Vec magnitude, Vec sign_source) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  auto one = [&](__m256 m, __m256 s) { return _mm256_or_ps(_mm256_andnot_ps(sign, m), _mm256_and_ps(sign, s)); };
  return {one(magnitude.lo, sign_source.lo), one(magnitude.hi, sign_source.hi)};
}
// Per lane: a < b ? if_less : otherwise (false for NaN).
inline Vec select_less(Vec a, Vec b, Vec if_less, Vec otherwise) {
  return {_mm256_blendv_ps(otherwise.lo, if_less.lo, _mm256_cmp_ps(a.lo, b.lo, _CMP_LT_OQ)),
          _mm256_blendv_ps(otherwise.hi, if_less.hi, _mm256_cmp_ps(a.hi, b.hi, _CMP_LT_OQ))};
}
// v limited to [lo, hi]; NaN stays NaN (vminps/vmaxps return their second operand when either is
// NaN, and v is passed second).
inline Vec clamp(Vec v, Vec lo, Vec hi) {
  return {_mm256_max_ps(lo.lo, _mm256_min_ps(hi.lo, v.lo)), _mm256_max_ps(lo.hi, _mm256_min_ps(hi.hi, v.hi))};
}
// a * b - c with one rounding.
inline Vec fms(Vec a, Vec b, Vec c) { return {_mm256_fmsub_ps(a.lo, b.lo, c.lo), _mm256_fmsub_ps(a.hi, b.hi, c.hi)}; }
// c - a * b with one rounding.
inline Vec fnma(Vec a, Vec b, Vec c) {
  return {_mm256_fnmadd_ps(a.lo, b.lo, c.lo), _mm256_fnmadd_ps(a.hi, b.hi, c.hi)};
}
// Sixteen running double sums of float vectors (see the AVX-512 backend): four vectors of four
// doubles.
class DoubleSums {
 public:
  void add(Vec a) {
    sums_[0] = _mm256_add_pd(sums_[0], _mm256_cvtps_pd(_mm256_castps256_ps128(a.lo)));
    sums_[1] = _mm256_add_pd(sums_[1], _mm256_cvtps_pd(_mm256_extractf128_ps(a.lo, 1)));
    sums_[2] = _mm256_add_pd(sums_[2], _mm256_cvtps_pd(_mm256_castps256_ps128(a.hi)));
    sums_[3] = _mm256_add_pd(sums_[3], _mm256_cvtps_pd(_mm256_extractf128_ps(a.hi, 1)));
  }
  double total() const {
    alignas(32) double lanes[4];
    _mm256_store_pd(lanes, _mm256_add_pd(_mm256_add_pd(sums_[0], sums_[1]), _mm256_add_pd(sums_[2], sums_[3])));
    return lanes[0] + lanes[1] + lanes[2] + lanes[3];
  }

 private:
  __m256d sums_[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
};

// sums[i] += a[i] for the 16 lanes, in double.
inline void add_lanes_to(double* sums, Vec a) {
  const __m128 quarters[4] = {_mm256_castps256_ps128(a.lo), _mm256_extractf128_ps(a.lo, 1),
                              _mm256_castps256_ps128(a.hi), _mm256_extractf128_ps(a.hi, 1)};
  for (int q = 0; q < 4; ++q)
    _mm256_storeu_pd(sums + 4 * q, _mm256_add_pd(_mm256_loadu_pd(sums + 4 * q), _mm256_cvtps_pd(quarters[q])));
}

// Each lane twice: duplicate_lanes_low(a) = a0 a0 a1 a1 .. a7 a7, duplicate_lanes_high(a) =
// a8 a8 .. a15 a15 (nearest-neighbour upsampling of a row).
inline Vec duplicate_lanes_of(__m256 half) {
  return {_mm256_permutevar8x32_ps(half, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3)),
          _mm256_permutevar8x32_ps(half, _mm256_setr_epi32(4, 4, 5, 5, 6, 6, 7, 7))};
}
inline Vec duplicate_lanes_low(Vec a) { return duplicate_lanes_of(a.lo); }
inline Vec duplicate_lanes_high(Vec a) { return duplicate_lanes_of(a.hi); }

}  // namespace sdrt::kernels::SDRT_ISA_NS::simd_math
