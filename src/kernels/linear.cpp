#include "core/error.h"
#include "kernels/conv_linear_shapes.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

LinearShape check_linear(const Shape& x_shape, const Shape& weight_shape, int64_t bias_numel) {
  SDRT_CHECK(weight_shape.size() == 2, "linear: weight must be 2-D, got ", shape_str(weight_shape));
  LinearShape s{0, weight_shape[1], weight_shape[0]};
  SDRT_CHECK(!x_shape.empty() && x_shape.back() == s.in, "linear: input ", shape_str(x_shape),
             " does not match weight ", shape_str(weight_shape));
  SDRT_CHECK(bias_numel < 0 || bias_numel == s.out, "linear: bias of ", bias_numel, " elements does not match ",
             s.out, " outputs");
  s.rows = s.in == 0 ? 0 : shape_numel(x_shape) / s.in;
  return s;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  LinearShape s = check_linear(x.shape(), weight.shape(), bias.defined() ? bias.numel() : -1);
  count_linear_macs(s);
  Tensor y = Tensor::empty(linear_output_shape(x.shape(), s.out));
  float beta = 0.0f;
  if (bias.defined()) {
    float* yd = y.data();
    const float* bd = bias.data();
    for (int64_t r = 0; r < s.rows; ++r)
      for (int64_t o = 0; o < s.out; ++o) yd[r * s.out + o] = bd[o];
    beta = 1.0f;
  }
  gemm(false, true, s.rows, s.out, s.in, 1.0f, x.data(), s.in, weight.data(), s.in, beta, y.data(), s.out);
  return y;
}

}  // namespace sdrt::kernels
