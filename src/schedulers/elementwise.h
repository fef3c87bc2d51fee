// Element-wise float32 loops for scheduler arithmetic. Each lambda spells out one diffusers
// tensor expression in the same operation order, so every intermediate rounds to float32
// exactly where torch's does (float_exact.h keeps the compiler from fusing them).
#pragma once

#include <string>

#include "core/error.h"
#include "core/tensor.h"

namespace sdrt::sched {

inline void check_same_shape(const Tensor& a, const Tensor& b, const char* what_a, const char* what_b) {
  SDRT_CHECK(a.defined() && b.defined(), "scheduler: ", a.defined() ? what_b : what_a, " is an empty tensor");
  SDRT_CHECK(a.shape() == b.shape(), "scheduler: ", what_a, " has shape ", shape_str(a.shape()), " but ", what_b,
             " has shape ", shape_str(b.shape()));
}

template <typename F>
Tensor map1(const Tensor& a, F f) {
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data();
  float* po = out.data();
  for (int64_t i = 0, n = a.numel(); i < n; ++i) po[i] = f(pa[i]);
  return out;
}

template <typename F>
Tensor map2(const Tensor& a, const Tensor& b, F f) {
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data();
  const float* pb = b.data();
  float* po = out.data();
  for (int64_t i = 0, n = a.numel(); i < n; ++i) po[i] = f(pa[i], pb[i]);
  return out;
}

template <typename F>
Tensor map3(const Tensor& a, const Tensor& b, const Tensor& c, F f) {
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data();
  const float* pb = b.data();
  const float* pc = c.data();
  float* po = out.data();
  for (int64_t i = 0, n = a.numel(); i < n; ++i) po[i] = f(pa[i], pb[i], pc[i]);
  return out;
}

template <typename F>
Tensor map4(const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& d, F f) {
  Tensor out = Tensor::empty(a.shape());
  const float* pa = a.data();
  const float* pb = b.data();
  const float* pc = c.data();
  const float* pd = d.data();
  float* po = out.data();
  for (int64_t i = 0, n = a.numel(); i < n; ++i) po[i] = f(pa[i], pb[i], pc[i], pd[i]);
  return out;
}

}  // namespace sdrt::sched
