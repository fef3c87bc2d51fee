// Sixteen-lane float vectors for the hand-vectorised kernels (attention, norms, activations,
// element-wise, layout). A kernel is written once against `Vec`, and its file is compiled once
// per ISA tier (core/cpu_isa.h; CMakeLists.txt: SDRT_ISA_KERNELS) into the namespace
// sdrt::kernels::<tier>, so each tier's copy uses its own backend:
//   avx512, avx512_bf16  simd/vec_avx512.h: one zmm register per Vec
//   avx2                 simd/vec_avx2.h:   two ymm registers per Vec
//   scalar               simd/vec_scalar.h: plain per-lane loops
// All three run the same algorithm with the same lane count, so blocking, alignment and results
// (to rounding in the vector instructions) do not depend on the tier, and the tests run every
// tier the machine has (SDRT_MAX_ISA caps it).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "kernels/simd/isa_tier.h"

namespace sdrt::kernels::SDRT_ISA_NS::simd {


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

}  // namespace sdrt::kernels::SDRT_ISA_NS::simd

#if SDRT_ISA_LEVEL >= 2
#include "kernels/simd/vec_avx512.h"
#elif SDRT_ISA_LEVEL == 1
#include "kernels/simd/vec_avx2.h"
#else
#include "kernels/simd/vec_scalar.h"
#endif
