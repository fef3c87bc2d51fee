// Convolution with pre-packed weights and cached primitives, for model layers that are loaded once
// and then run many times, possibly from several threads at once.
//
// The activation interface is NCHW, or channels last (NHWC) for callers that keep that layout
// throughout (the VAE). Each input shape (N, H, W) and layout gets a plan, made on first use
// and cached: a oneDNN convolution with the bias fused and the weights in the layout its
// implementation prefers. The weights are packed once and shared by every plan that wants the
// same layout (in practice all of them: oneDNN picks the layout from the channel counts).
// Convolutions with enough work per output element also reorder the activations to oneDNN's
// preferred layout and back, which lets it use its direct (brgemm) convolution instead of
// im2col + GEMM on NCHW; 1x1 and few-channel convolutions stay on NCHW, where the two reorders
// would cost more than they save. See benchmarks/bench_conv_linear.cpp for the measurements.
// In bf16 the input reorder also converts to bf16, so every bf16 convolution has one.
#pragma once

#include <memory>

#include "core/tensor.h"
#include "kernels/int8.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

class PackedConv2d {
 public:
  // weight [O, C, kh, kw], bias [O] or undefined. Packs the weights now and keeps no reference to
  // `weight` afterwards (except where the preferred layout is the unpacked one, as for 1x1
  // convolutions), so handing over the last reference frees the unpacked copy. `precision` bf16
  // stores the weights in bf16 and rounds the input to bf16 (see Precision).
  PackedConv2d(Tensor weight, Tensor bias, Conv2dParams params, Precision precision = Precision::f32);
  // int8 (kernels/int8.h): `weight` quantised per output channel; `input_scale` > 0 is the static
  // activation scale, 0 quantises each image's input by its own range on every call (dynamic).
  PackedConv2d(Int8Weights weight, Tensor bias, Conv2dParams params, float input_scale);
  ~PackedConv2d();
  PackedConv2d(const PackedConv2d&) = delete;
  PackedConv2d& operator=(const PackedConv2d&) = delete;

  // conv(x) + bias for x [N, C, H, W]: what conv2d(x, weight, bias, params) computes.
  Tensor operator()(const Tensor& x) const;
  // acc += conv(x) + bias, with acc [N, O, OH, OW]: the residual add fused into the convolution's
  // output pass instead of a separate read-modify-write of the whole tensor.
  void accumulate(const Tensor& x, Tensor& acc) const;
  // The same two on channels-last activations, x [N, H, W, C] -> [N, OH, OW, O] (acc likewise).
  // oneDNN's direct convolutions read and write this layout, so neither side needs a reorder (in
  // bf16 the input still goes through a converting one).
  Tensor channels_last(const Tensor& x) const;
  void accumulate_channels_last(const Tensor& x, Tensor& acc) const;

  int64_t in_channels() const;
  int64_t out_channels() const;
  const Shape& weight_shape() const;
  const Conv2dParams& params() const;
  Precision precision() const;
  float input_scale() const;  // int8: the static activation scale, 0 if dynamic
  // Bytes of weights held: every packed layout, plus the unpacked tensor while still referenced.
  size_t weight_bytes() const;
  // Input shapes that have a cached plan.
  size_t cached_plans() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sdrt::kernels
