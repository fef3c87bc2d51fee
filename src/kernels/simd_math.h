// Vector helpers for the memory-bound kernels (normalisation, activations, element-wise, layout):
// lane selects, double-precision accumulation of float vectors, and the activation functions
// (SiLU, GELU with a vectorised erf, QuickGELU, tanh-GELU). Written on top of simd::Vec and
// simd::exp from vector_math.h, so that like there every ISA tier runs the same algorithm.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/vector_math.h"


namespace sdrt::kernels::SDRT_ISA_NS::simd_math {

using simd::kLanes;
using simd::Vec;

// ---- erf coefficients (shared by both builds).
//
// erf(a) for 0 <= a < 1:  a * (c0 + a^2 Q(a^2)), with c0 = 2/sqrt(pi) split into a float and its
// remainder so the leading term is rounded once.
// erfc(a) for a >= 1:     exp(-a^2) R(1/a - 0.55); R approximates erfcx(a) = exp(a^2) erfc(a), which
// varies slowly in 1/a over [1, inf) (it tends to 1/(a sqrt(pi))). The 0.55 centres the variable so
// the Horner sums do not cancel.
// Both are relative-error minimax fits (Lawson's iteratively reweighted least squares against
// mpmath at 40 digits, numpy 1.24, /usr/bin/python3), Q of degree 5 in a^2 on a in (0, 1]
// (fit error 1.5e-8 in Q) and R of degree 10 on 1/a in [0.1, 1] (1.4e-8 relative), i.e. a in
// [1, 10], beyond which exp(-a^2) has flushed to 0. With the coefficients rounded to float, erf is
// within 8e-8 absolute (1.4 ulp) of std::erf (tests/kernels/pointwise_test.cpp sweeps [-8, 8]).
// The fit, in numpy (f: the target values at the sample points xs, basis(x): the row of monomials):
//
//   def lawson(xs, f, basis, iters=400):   # reweighting drives least squares to minimax
//       A = array([basis(x) for x in xs]); w = ones(len(xs)) / len(xs)
//       for _ in range(iters):
//           s = sqrt(w) / abs(f); c = lstsq(A * s[:, None], f * s)[0]
//           e = abs(A @ c - f) / abs(f); w = w * e / sum(w * e)
//       return c
//   Q = lawson(linspace(1e-4, 1, 4000), (erf(a)/a - c0)/a^2, lambda a: [a**(2k) for k in 0..5])
//   R = lawson(linspace(0.1, 1, 6000), erfc(1/u) exp(1/u^2), lambda u: [(u-0.55)**k for k in 0..10])
namespace erf_detail {
inline constexpr float kC0Hi = 1.128379225730896f;        // float(2/sqrt(pi))
inline constexpr float kC0Lo = -5.8635382771399236e-08f;  // 2/sqrt(pi) - kC0Hi
inline constexpr float kQ[] = {-0.37612637877464294f,   0.11283751577138901f,    -0.02686152793467045f,
                               0.005204103887081146f,   -0.0008156625553965569f, 8.358514605788514e-05f};
inline constexpr float kTailCentre = 0.55f;
inline constexpr float kR[] = {0.27629438042640686f,   0.40883421897888184f,  -0.1812347024679184f,
                               0.033722829073667526f,  0.04496719315648079f,  -0.06928002834320068f,
                               0.0569981187582016f,    -0.02585284598171711f, -0.019547246396541595f,
                               0.06333723664283752f,   -0.04826037585735321f};
inline constexpr float kInvSqrt2 = 0.70710678118654752f;
// erf(a) = 1 and erfc(a) = 0 in float from here on; clamping keeps a^2 finite for a = inf.
inline constexpr float kSaturation = 10.0f;
}  // namespace erf_detail

// tanh-GELU constants (the "gelu_new" form): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
inline constexpr float kSqrt2OverPi = 0.7978845608028654f;
inline constexpr float kGeluTanhCubic = 0.044715f;
inline constexpr float kQuickGeluSlope = 1.702f;

// abs, copy_sign, select_less, clamp, fms, fnma, DoubleSums, add_lanes_to and
// duplicate_lanes_low/high come from the backend (simd/vec_*.h).

// Lane 0 + lane 1 + ... + lane 15, in that order on every tier. Through memory: it runs once per
// row or piece, and GCC 12's _mm512_reduce_add_* trip -Wmaybe-uninitialized.
inline float reduce_add(Vec a) {
  alignas(64) float lanes[kLanes];
  simd::store(lanes, a);
  float s = 0.0f;
  for (float v : lanes) s += v;
  return s;
}

// ---- Activation functions, written once on the operations above.

// x / (1 + exp(-z)), i.e. x * sigmoid(z). Where exp(-z) overflows to inf the result is x / inf = 0,
// the right limit; where it flushes to 0 the result is x.
inline Vec mul_sigmoid(Vec x, Vec z) {
  Vec e = simd::exp(simd::sub(simd::zero(), z));
  return simd::div(x, simd::add(simd::broadcast(1.0f), e));
}

inline Vec silu(Vec x) { return mul_sigmoid(x, x); }
inline Vec quick_gelu(Vec x) { return mul_sigmoid(x, simd::mul(x, simd::broadcast(kQuickGeluSlope))); }
// 0.5 x (1 + tanh(u)) = x sigmoid(2u): the sigmoid form has no 1 - 1 cancellation for negative x.
inline Vec gelu_tanh(Vec x) {
  Vec x2 = simd::mul(x, x);
  Vec inner = simd::mul(x, simd::fma(x2, simd::broadcast(kGeluTanhCubic), simd::broadcast(1.0f)));
  return mul_sigmoid(x, simd::mul(inner, simd::broadcast(2.0f * kSqrt2OverPi)));
}

namespace erf_detail {

template <size_t N>
inline Vec horner(const float (&c)[N], Vec x) {
  Vec p = simd::broadcast(c[N - 1]);
  for (size_t k = N - 1; k-- > 0;) p = simd::fma(p, x, simd::broadcast(c[k]));
  return p;
}

// erf(a) for 0 <= a < 1, given a_sq ~= a^2.
inline Vec erf_small(Vec a, Vec a_sq) {
  Vec correction = simd::fma(a_sq, horner(kQ, a_sq), simd::broadcast(kC0Lo));
  return simd::fma(a, simd::broadcast(kC0Hi), simd::mul(a, correction));
}

// erfc(a) for a >= 1, given a^2 = a_sq_hi + a_sq_lo exactly (or nearly): exp(-a^2) is evaluated as
// exp(-hi) (1 - lo), since the rounding of a^2 (up to 5e-7 at a = 4) would otherwise be the
// largest error. Lanes with a < 1 give a finite value that the caller discards.
inline Vec erfc_tail(Vec a, Vec a_sq_hi, Vec a_sq_lo) {
  Vec u = simd::div(simd::broadcast(1.0f), simd::max(a, simd::broadcast(1.0f)));
  Vec scaled = horner(kR, simd::sub(u, simd::broadcast(kTailCentre)));
  Vec t = simd::mul(simd::exp(simd::sub(simd::zero(), a_sq_hi)), scaled);
  return fnma(a_sq_lo, t, t);
}

}  // namespace erf_detail

// erf(x), within 8e-8 absolute (1.4 ulp) of the exact value; see erf_detail.
inline Vec erf(Vec x) {
  using namespace erf_detail;
  Vec a = clamp(abs(x), simd::zero(), simd::broadcast(kSaturation));
  Vec a_sq = simd::mul(a, a);
  Vec a_sq_lo = fms(a, a, a_sq);
  Vec one = simd::broadcast(1.0f);
  Vec result = select_less(a, one, erf_small(a, a_sq), simd::sub(one, erfc_tail(a, a_sq, a_sq_lo)));
  return copy_sign(result, x);
}

// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)). Where x < -sqrt 2, 1 + erf is formed directly as
// erfc(|x| / sqrt 2) rather than as 1 - (1 - erfc), so the small negative outputs keep their
// relative accuracy; and (x / sqrt 2)^2 is taken as x^2 / 2, exact in two parts.
inline Vec gelu(Vec x) {
  using namespace erf_detail;
  // The erf factor is computed from x limited to where erf saturates, so x = +-inf stays finite
  // there and the product gives gelu(inf) = inf.
  const float limit = kSaturation / kInvSqrt2;
  Vec xc = clamp(x, simd::broadcast(-limit), simd::broadcast(limit));
  Vec a = abs(simd::mul(xc, simd::broadcast(kInvSqrt2)));
  Vec half = simd::broadcast(0.5f);
  Vec x_sq = simd::mul(xc, xc);
  Vec a_sq = simd::mul(x_sq, half);
  Vec a_sq_lo = simd::mul(fms(xc, xc, x_sq), half);
  Vec one = simd::broadcast(1.0f);
  Vec erfc_a = erfc_tail(a, a_sq, a_sq_lo);
  // 1 + erf(t) for |t| >= 1: 2 - erfc(|t|) when x > 0, erfc(|t|) when x < 0.
  Vec one_plus_erf_tail = select_less(x, simd::zero(), erfc_a, simd::sub(simd::broadcast(2.0f), erfc_a));
  Vec one_plus_erf_small = simd::add(one, copy_sign(erf_small(a, a_sq), x));
  Vec one_plus_erf = select_less(a, one, one_plus_erf_small, one_plus_erf_tail);
  return simd::mul(simd::mul(half, x), one_plus_erf);
}

// ---- Splitting work over OpenMP threads.

// Slice `part` of `parts` of [begin, end): contiguous and nearly equal, with inner boundaries on
// multiples of kLanes floats (counted from 0), so that slices of an aligned buffer start aligned.
struct Range {
  int64_t begin, end;
};
inline Range slice_of(int64_t begin, int64_t end, int part, int parts) {
  auto boundary = [&](int k) {
    if (k == 0) return begin;
    if (k == parts) return end;
    int64_t cut = begin + (end - begin) * k / parts;
    cut -= cut % kLanes;
    return cut < begin ? begin : cut;
  };
  return {boundary(part), boundary(part + 1)};
}

// Below this many floats a kernel runs on the calling thread: waking the pool would cost more
// than the work.
inline constexpr int64_t kMinParallelFloats = 1 << 15;
// The unit of work handed to a thread (64 KiB of floats). Threads take chunks dynamically rather
// than one fixed half each: on a shared machine a thread that is descheduled for a time slice
// would otherwise leave the other waiting at the end of every kernel, while with chunks the
// running thread takes over the rest. At ~5 us of work per chunk the atomic that hands them out
// costs nothing measurable.
inline constexpr int64_t kChunkFloats = 1 << 14;

// Applies f(begin, end) to consecutive chunks of [0, n) (all but the last kChunkFloats long, so
// every chunk of an aligned buffer starts aligned), spread over the OpenMP threads.
template <typename F>
void for_each_chunk(int64_t n, F f) {
  const int64_t chunks = (n + kChunkFloats - 1) / kChunkFloats;
#pragma omp parallel for schedule(dynamic, 1) if (n >= kMinParallelFloats)
  for (int64_t k = 0; k < chunks; ++k) f(k * kChunkFloats, std::min(n, (k + 1) * kChunkFloats));
}

// ---- Loops over vectors with partial vectors at the ends.

// The first `lanes` floats at p: all kLanes of them, or fewer at the end of an array (the rest 0).
inline Vec load_lanes(const float* p, int lanes) {
  return lanes == kLanes ? simd::load(p) : simd::load_leading(p, lanes);
}

// dst[i, i + lanes) = make(i, lanes) over [0, n) in vectors; lanes is kLanes except for a last,
// partial vector, where make must read only `lanes` values (load_lanes does).
template <typename Make>
void write_vectors(float* dst, int64_t n, Make make) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) simd::store(dst + i, make(i, kLanes));
  if (i < n) {
    const int tail = static_cast<int>(n - i);
    simd::store_leading(dst + i, make(i, tail), tail);
  }
}

// dst[i] = f(src[i]) for i in [0, n), f mapping a Vec to a Vec; src may equal dst.
template <typename F>
void map_vectors(const float* src, float* dst, int64_t n, F f) {
  write_vectors(dst, n, [&](int64_t i, int lanes) { return f(load_lanes(src + i, lanes)); });
}

}  // namespace sdrt::kernels::SDRT_ISA_NS::simd_math
