// A linear layer with pre-packed weights and cached primitives, for model layers that are loaded
// once and then run many times, possibly from several threads at once.
//
// Runs the oneDNN matmul primitive with the weights reordered once into the layout its brgemm
// implementation prefers and the bias fused, one cached primitive per row count. On SD's shapes
// this is as fast as or faster than dnnl_sgemm on unpacked weights (which re-packs them on every
// call); see benchmarks/bench_conv_linear.cpp. In bf16 the input is converted to bf16 by a
// cached reorder before the matmul (one extra pass over the input, not the output).
#pragma once

#include <memory>

#include "core/tensor.h"
#include "kernels/int8.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

class PackedLinear {
 public:
  // weight [out, in], bias [out] or undefined. Packs the weights now and keeps no reference to
  // `weight` afterwards, so handing over the last reference frees the unpacked copy. `precision`
  // bf16 stores the weights in bf16 and rounds the input to bf16 (see Precision).
  PackedLinear(Tensor weight, Tensor bias, Precision precision = Precision::f32);
  // int8 (kernels/int8.h): `weight` quantised per output channel; `input_scale` > 0 is the static
  // activation scale, 0 quantises each row of the input by its own range on every call (dynamic).
  PackedLinear(Int8Weights weight, Tensor bias, float input_scale);
  ~PackedLinear();
  PackedLinear(const PackedLinear&) = delete;
  PackedLinear& operator=(const PackedLinear&) = delete;

  // x [..., in] -> x W^T + b [..., out]: what linear(x, weight, bias) computes.
  Tensor operator()(const Tensor& x) const;
  // acc += x W^T + b, with acc [..., out] of x's leading shape: the residual add fused into the
  // product instead of a separate read-modify-write of the whole tensor.
  void accumulate(const Tensor& x, Tensor& acc) const;

  int64_t in_features() const;
  int64_t out_features() const;
  Precision precision() const;
  float input_scale() const;  // int8: the static activation scale, 0 if dynamic
  // Bytes of weights held: every packed layout, plus the unpacked tensor while still referenced.
  size_t weight_bytes() const;
  // Row counts that have a cached primitive.
  size_t cached_plans() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdrt::kernels
