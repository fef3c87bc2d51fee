#include "kernels/int8.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"
#include "kernels/conv_linear_shapes.h"

namespace sdrt::kernels {

float int8_weight_scale(float max_abs) { return max_abs > 0 ? max_abs / static_cast<float>(kInt8WeightMax) : 1.0f; }

float int8_dynamic_scale(float max_abs) {
  return max_abs > 0 && std::isfinite(max_abs) ? max_abs / static_cast<float>(kInt8ActivationMax) : 1.0f;
}

int8_t quantize_int8(float x, float inv_scale, int lo, int hi) {
  // nearbyint rounds half to even in the default rounding mode, as cvtps2dq does in oneDNN.
  float r = std::nearbyint(x * inv_scale);
  return static_cast<int8_t>(std::clamp(r, static_cast<float>(lo), static_cast<float>(hi)));
}

Int8Weights Int8Weights::quantize(const Tensor& weights) {
  SDRT_CHECK(weights.defined() && weights.rank() >= 2, "int8 weights: expected [O, ...], got ",
             weights.defined() ? shape_str(weights.shape()) : std::string("nothing"));
  Int8Weights q;
  q.shape = weights.shape();
  const int64_t o = weights.dim(0), per_channel = weights.numel() / o;
  auto values = std::shared_ptr<int8_t[]>(new int8_t[weights.numel()]);
  q.scales.resize(o);
  const float* w = weights.data();
  std::vector<float> max_abs(o, 0.0f);
  std::vector<char> finite(o, 1);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < o; ++c) {
    for (int64_t i = 0; i < per_channel; ++i) {
      const float v = std::fabs(w[c * per_channel + i]);
      max_abs[c] = std::max(max_abs[c], v);
      if (!std::isfinite(v)) finite[c] = 0;
    }
  }
  for (int64_t c = 0; c < o; ++c) {
    SDRT_CHECK(finite[c], "int8 weights: output channel ", c, " holds a non-finite value");
    q.scales[c] = int8_weight_scale(max_abs[c]);
  }
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < o; ++c) {
    for (int64_t i = 0; i < per_channel; ++i) {
      float r = std::nearbyint(w[c * per_channel + i] / q.scales[c]);
      values[c * per_channel + i] =
          static_cast<int8_t>(std::clamp(r, -static_cast<float>(kInt8WeightMax), static_cast<float>(kInt8WeightMax)));
    }
  }
  q.data = std::shared_ptr<const int8_t>(values, values.get());
  return q;
}

Int8Weights seven_bit_weights(const Int8Weights& w) {
  Int8Weights out;
  out.shape = w.shape;
  const int64_t n = shape_numel(w.shape);
  auto values = std::shared_ptr<int8_t[]>(new int8_t[n]);
  for (int64_t i = 0; i < n; ++i) values[i] = static_cast<int8_t>(std::nearbyint(w.data.get()[i] / 2.0f));
  out.data = std::shared_ptr<const int8_t>(values, values.get());
  out.scales = w.scales;
  for (float& s : out.scales) s *= 2;
  return out;
}

void Int8Weights::validate(const std::string& what) const {
  SDRT_CHECK(data != nullptr && shape.size() >= 2, what, ": int8 weights must be [O, ...], got ", shape_str(shape));
  SDRT_CHECK(static_cast<int64_t>(scales.size()) == shape[0], what, ": ", scales.size(),
             " weight scales for ", shape[0], " output channels");
  for (size_t i = 0; i < scales.size(); ++i)
    SDRT_CHECK(std::isfinite(scales[i]) && scales[i] > 0, what, ": weight scale ", i, " is ", scales[i],
               " (must be finite and > 0)");
}

void absmax_per_chunk(const float* x, int64_t chunks, int64_t len, float* out) {
  for (int64_t c = 0; c < chunks; ++c) {
    const float* p = x + c * len;
    float m = 0;
#pragma omp parallel for reduction(max : m) schedule(static) if (len > (1 << 16))
    for (int64_t i = 0; i < len; ++i) m = std::max(m, std::fabs(p[i]));
    out[c] = m;
  }
}

void dequantize_int32(const int32_t* acc, bool acc_channels_last, float* y, bool y_channels_last, int64_t n,
                      int64_t o, int64_t pixels, const Int8Epilogue& e) {
  const int64_t image = o * pixels;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t c = 0; c < o; ++c) {
      const float scale = e.input_scales[b] * e.weight_scales[c];
      const float bias = e.bias ? e.bias[c] : 0.0f;
      const int64_t acc_base = b * image + (acc_channels_last ? c : c * pixels);
      const int64_t acc_step = acc_channels_last ? o : 1;
      const int64_t y_base = b * image + (y_channels_last ? c : c * pixels);
      const int64_t y_step = y_channels_last ? o : 1;
      for (int64_t p = 0; p < pixels; ++p) {
        float v = scale * static_cast<float>(acc[acc_base + p * acc_step]) + bias;
        float& out = y[y_base + p * y_step];
        out = e.accumulate ? out + v : v;
      }
    }
  }
}

namespace {

// Quantised activations and their scale per chunk (image or row) by the rule in int8.h.
struct QuantizedInput {
  std::vector<int8_t> values;
  std::vector<float> scales;
};

QuantizedInput quantize_chunks(const Tensor& x, int64_t chunks, float static_scale) {
  QuantizedInput q;
  const int64_t len = chunks > 0 ? x.numel() / chunks : 0;
  std::vector<float> max_abs(chunks);
  absmax_per_chunk(x.data(), chunks, len, max_abs.data());
  q.values.resize(x.numel());
  q.scales.resize(chunks);
  for (int64_t c = 0; c < chunks; ++c) {
    q.scales[c] = static_scale > 0 ? static_scale : int8_dynamic_scale(max_abs[c]);
    const float inv = 1.0f / q.scales[c];
    for (int64_t i = 0; i < len; ++i) q.values[c * len + i] = quantize_int8(x.data()[c * len + i], inv);
  }
  return q;
}

}  // namespace

Tensor conv2d_int8_reference(const Tensor& x, const Int8Weights& w, const Tensor& bias, Conv2dParams p,
                             float input_scale) {
  w.validate("int8 conv2d reference");
  const ConvShape s = check_conv(x.shape(), w.shape, bias.defined() ? bias.numel() : -1, p);
  const QuantizedInput q = quantize_chunks(x, s.n, input_scale);
  Tensor y = Tensor::empty({s.n, s.o, s.oh, s.ow});
  const int8_t* wq = w.data.get();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t n = 0; n < s.n; ++n) {
    for (int64_t o = 0; o < s.o; ++o) {
      const float scale = q.scales[n] * w.scales[o];
      const float b = bias.defined() ? bias.data()[o] : 0.0f;
      for (int64_t oy = 0; oy < s.oh; ++oy) {
        for (int64_t ox = 0; ox < s.ow; ++ox) {
          int32_t acc = 0;
          for (int64_t c = 0; c < s.c; ++c) {
            for (int64_t ky = 0; ky < s.kh; ++ky) {
              const int64_t iy = oy * p.stride - p.pad_top + ky;
              if (iy < 0 || iy >= s.h) continue;
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t ix = ox * p.stride - p.pad_left + kx;
                if (ix < 0 || ix >= s.w) continue;
                acc += static_cast<int32_t>(q.values[((n * s.c + c) * s.h + iy) * s.w + ix]) *
                       static_cast<int32_t>(wq[((o * s.c + c) * s.kh + ky) * s.kw + kx]);
              }
            }
          }
          y.data()[((n * s.o + o) * s.oh + oy) * s.ow + ox] = scale * static_cast<float>(acc) + b;
        }
      }
    }
  }
  return y;
}

Tensor linear_int8_reference(const Tensor& x, const Int8Weights& w, const Tensor& bias, float input_scale) {
  w.validate("int8 linear reference");
  SDRT_CHECK(w.shape.size() == 2, "int8 linear reference: weight must be [out, in], got ", shape_str(w.shape));
  const LinearShape s = check_linear(x.shape(), w.shape, bias.defined() ? bias.numel() : -1);
  const QuantizedInput q = quantize_chunks(x, s.rows, input_scale);
  Tensor y = Tensor::empty(linear_output_shape(x.shape(), s.out));
  const int8_t* wq = w.data.get();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t o = 0; o < s.out; ++o) {
      int32_t acc = 0;
      for (int64_t i = 0; i < s.in; ++i)
        acc += static_cast<int32_t>(q.values[r * s.in + i]) * static_cast<int32_t>(wq[o * s.in + i]);
      y.data()[r * s.out + o] = q.scales[r] * w.scales[o] * static_cast<float>(acc) + (bias.defined() ? bias.data()[o] : 0.0f);
    }
  }
  return y;
}

}  // namespace sdrt::kernels
