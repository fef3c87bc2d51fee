// Double-precision references of the activation functions, shared by the kernel tests and the
// per-tier vector-primitive tests.
#pragma once

#include <cmath>

namespace sdrt::testing {

inline double silu_ref(double v) { return v / (1.0 + std::exp(-v)); }
inline double gelu_ref(double v) { return 0.5 * v * std::erfc(-v / std::sqrt(2.0)); }
// 0.5 v (1 + tanh(u)) written as v sigmoid(2u): 1 + tanh(u) cancels to 0 in double for u < -19.
inline double gelu_tanh_ref(double v) {
  return v / (1.0 + std::exp(-2.0 * std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v)));
}
inline double quick_gelu_ref(double v) { return v / (1.0 + std::exp(-1.702 * v)); }

}  // namespace sdrt::testing
