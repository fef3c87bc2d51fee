#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/op_counter.h"

namespace sdrt::kernels {

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  SDRT_CHECK(weight.rank() == 2, "linear: weight must be 2-D, got ", shape_str(weight.shape()));
  int64_t in = weight.dim(1), out = weight.dim(0);
  SDRT_CHECK(x.rank() >= 1 && x.dim(-1) == in, "linear: input ", shape_str(x.shape()), " does not match weight ",
             shape_str(weight.shape()));
  int64_t rows = x.numel() / in;
  count_macs(OpKind::Linear, rows * in * out);
  Shape out_shape = x.shape();
  out_shape.back() = out;
  Tensor y = Tensor::empty(out_shape);
  float beta = 0.0f;
  if (bias.defined()) {
    SDRT_CHECK(bias.numel() == out, "linear: bias ", shape_str(bias.shape()), " does not match ", out, " outputs");
    float* yd = y.data();
    const float* bd = bias.data();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < out; ++o) yd[r * out + o] = bd[o];
    beta = 1.0f;
  }
  gemm(false, true, rows, out, in, 1.0f, x.data(), in, weight.data(), in, beta, y.data(), out);
  return y;
}

}  // namespace sdrt::kernels
