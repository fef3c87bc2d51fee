#include <oneapi/dnnl/dnnl.hpp>

#include "core/error.h"
#include "kernels/conv_linear_shapes.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

ConvShape check_conv(const Shape& x_shape, const Shape& weight_shape, int64_t bias_numel, const Conv2dParams& p) {
  SDRT_CHECK(x_shape.size() == 4, "conv2d: input must be NCHW, got ", shape_str(x_shape));
  SDRT_CHECK(weight_shape.size() == 4 && weight_shape[1] == x_shape[1], "conv2d: weight ", shape_str(weight_shape),
             " does not match input ", shape_str(x_shape));
  ConvShape s{x_shape[0], x_shape[1], x_shape[2], x_shape[3], weight_shape[0], weight_shape[2], weight_shape[3], 0, 0};
  SDRT_CHECK(bias_numel < 0 || bias_numel == s.o, "conv2d: bias of ", bias_numel, " elements does not match ", s.o,
             " output channels");
  SDRT_CHECK(p.stride > 0, "conv2d: stride must be positive, got ", p.stride);
  s.oh = (s.h + p.pad_top + p.pad_bottom - s.kh) / p.stride + 1;
  s.ow = (s.w + p.pad_left + p.pad_right - s.kw) / p.stride + 1;
  SDRT_CHECK(s.h + p.pad_top + p.pad_bottom >= s.kh && s.w + p.pad_left + p.pad_right >= s.kw && s.oh > 0 && s.ow > 0,
             "conv2d: input ", shape_str(x_shape), " too small for kernel ", shape_str(weight_shape));
  return s;
}

namespace {

ConvShape check_conv(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  return check_conv(x.shape(), weight.shape(), bias.defined() ? bias.numel() : -1, p);
}

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams p) {
  using namespace dnnl;
  ConvShape s = check_conv(x, weight, bias, p);
  count_conv_macs(s);
  using tag = memory::format_tag;
  using dt = memory::data_type;
  memory::desc src_md({s.n, s.c, s.h, s.w}, dt::f32, tag::nchw);
  memory::desc wei_md({s.o, s.c, s.kh, s.kw}, dt::f32, tag::oihw);
  memory::desc bias_md({s.o}, dt::f32, tag::x);
  memory::desc dst_md({s.n, s.o, s.oh, s.ow}, dt::f32, tag::nchw);
  memory::dims strides{p.stride, p.stride}, pad_l{p.pad_top, p.pad_left}, pad_r{p.pad_bottom, p.pad_right};
  auto desc = bias.defined()
                  ? convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src_md,
                                              wei_md, bias_md, dst_md, strides, pad_l, pad_r)
                  : convolution_forward::desc(prop_kind::forward_inference, algorithm::convolution_direct, src_md,
                                              wei_md, dst_md, strides, pad_l, pad_r);
  convolution_forward::primitive_desc pd(desc, cpu_engine());
  Tensor y = Tensor::empty({s.n, s.o, s.oh, s.ow});
  const auto& eng = cpu_engine();
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, memory(src_md, eng, const_cast<float*>(x.data()))},
      {DNNL_ARG_WEIGHTS, memory(wei_md, eng, const_cast<float*>(weight.data()))},
      {DNNL_ARG_DST, memory(dst_md, eng, y.data())}};
  if (bias.defined()) args.emplace(DNNL_ARG_BIAS, memory(bias_md, eng, const_cast<float*>(bias.data())));
  convolution_forward(pd).execute(cpu_stream(), args);
  cpu_stream().wait();
  return y;
}

Tensor conv2d_reference(const Tensor& x, const Tensor& weight, const Tensor& bias, Conv2dParams p) {
  ConvShape s = check_conv(x, weight, bias, p);
  Tensor y = Tensor::empty({s.n, s.o, s.oh, s.ow});
  const float* xd = x.data();
  const float* wd = weight.data();
  float* yd = y.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t o = 0; o < s.o; ++o) {
      for (int64_t oy = 0; oy < s.oh; ++oy) {
        for (int64_t ox = 0; ox < s.ow; ++ox) {
          double acc = bias.defined() ? bias[o] : 0.0;
          for (int64_t c = 0; c < s.c; ++c) {
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              int64_t iy = oy * p.stride + ky - p.pad_top;
              if (iy < 0 || iy >= s.h) continue;
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                int64_t ix = ox * p.stride + kx - p.pad_left;
                if (ix < 0 || ix >= s.w) continue;
                acc += static_cast<double>(xd[((n * s.c + c) * s.h + iy) * s.w + ix]) *
                       wd[((o * s.c + c) * s.kh + ky) * s.kw + kx];
              }
            }
          }
          yd[((n * s.o + o) * s.oh + oy) * s.ow + ox] = static_cast<float>(acc);
        }
      }
    }
  }
  return y;
}

}  // namespace sdrt::kernels
