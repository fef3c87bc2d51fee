#include "core/rng.h"

#include <cmath>
#include <numbers>

namespace sdrt {

float TorchCpuRng::uniform_float() {
  uint32_t v = engine_();
  return static_cast<float>(v & ((1u << 24) - 1)) * (1.0f / static_cast<float>(1u << 24));
}

double TorchCpuRng::uniform_double() {
  // torch's random64(): two 32-bit draws, high word first.
  uint64_t hi = engine_();
  uint64_t lo = engine_();
  uint64_t v = (hi << 32) | lo;
  return static_cast<double>(v & ((1ull << 53) - 1)) * (1.0 / static_cast<double>(1ull << 53));
}

double TorchCpuRng::normal_double() {
  if (cached_normal_) {
    double v = *cached_normal_;
    cached_normal_.reset();
    return v;
  }
  double u1 = uniform_double();
  double u2 = uniform_double();
  double r = std::sqrt(-2.0 * std::log1p(-u2));
  double theta = 2.0 * std::numbers::pi * u1;
  cached_normal_ = r * std::sin(theta);
  return r * std::cos(theta);
}

namespace {

void box_muller_16(float* d) {
  for (int j = 0; j < 8; ++j) {
    float u1 = 1.0f - d[j];
    float u2 = d[j + 8];
    float radius = std::sqrt(-2.0f * std::log(u1));
    float theta = static_cast<float>(2.0f * std::numbers::pi * u2);
    d[j] = radius * std::cos(theta);
    d[j + 8] = radius * std::sin(theta);
  }
}

}  // namespace

Tensor TorchCpuRng::randn(const Shape& shape) {
  Tensor t = Tensor::empty(shape);
  int64_t n = t.numel();
  float* d = t.data();
  if (n >= 16) {
    for (int64_t i = 0; i < n; ++i) d[i] = uniform_float();
    for (int64_t i = 0; i + 16 <= n; i += 16) box_muller_16(d + i);
    if (n % 16 != 0) {
      float* tail = d + n - 16;
      for (int i = 0; i < 16; ++i) tail[i] = uniform_float();
      box_muller_16(tail);
    }
  } else {
    for (int64_t i = 0; i < n; ++i) d[i] = static_cast<float>(normal_double());
  }
  return t;
}

}  // namespace sdrt
