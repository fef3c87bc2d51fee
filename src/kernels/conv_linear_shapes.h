// Shape checks and MAC counting shared by the unpacked kernels (conv2d.cpp, linear.cpp) and the
// packed ones (packed_conv2d.cpp, packed_linear.cpp), so both paths accept the same inputs, fail
// with the same messages and count the same work.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/kernels.h"
#include "kernels/op_counter.h"

namespace sdrt::kernels {

// A convolution's dimensions: input [n, c, h, w], weight [o, c, kh, kw], output [n, o, oh, ow].
struct ConvShape {
  int64_t n, c, h, w, o, kh, kw, oh, ow;
};

// Checks an input of shape `x_shape` [N, C, H, W] against a weight of shape `weight_shape` [O, C, kh, kw], a
// bias of `bias_numel` elements (-1: no bias) and the padding, and works out the output size.
ConvShape check_conv(const Shape& x_shape, const Shape& weight_shape, int64_t bias_numel, const Conv2dParams& p);

inline void count_conv_macs(const ConvShape& s) {
  count_macs(OpKind::Conv, s.n * s.o * s.oh * s.ow * s.c * s.kh * s.kw);
}

// A linear layer's dimensions: `rows` input vectors of `in` features to `out` features.
struct LinearShape {
  int64_t rows, in, out;
};

// Checks an input of shape `x_shape` [..., in] against a weight of shape `weight_shape` [out, in] and a bias of
// `bias_numel` elements (-1: no bias).
LinearShape check_linear(const Shape& x_shape, const Shape& weight_shape, int64_t bias_numel);

// int8 convolutions and linear layers count apart: their peak is the machine's int8 peak.
inline void count_int8_macs(int64_t macs) { count_macs(OpKind::Int8, macs); }

inline void count_linear_macs(const LinearShape& s) { count_macs(OpKind::Linear, s.rows * s.in * s.out); }

// x's shape with the last dimension replaced by `out`.
inline Shape linear_output_shape(const Shape& x_shape, int64_t out) {
  Shape shape = x_shape;
  shape.back() = out;
  return shape;
}

}  // namespace sdrt::kernels
