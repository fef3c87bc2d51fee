// diffusers ResnetBlock2D (resnet.py), shared by the UNet and the VAE, and the 2x
// Downsample2D / Upsample2D that sit between resolution levels.
#pragma once

#include "models/layers.h"

namespace sdrt {

struct ResnetBlock2DConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t temb_channels = 0;  // 0: no time embedding (VAE)
  int groups = 32;
  float eps = 1e-5f;
  kernels::Activation act = kernels::Activation::SiLU;
  float output_scale_factor = 1.0f;
};

class ResnetBlock2D {
 public:
  static ResnetBlock2D load(const WeightSource& w, const ResnetBlock2DConfig& cfg);
  // x [N, C, H, W]; temb [N, temb_channels] or undefined.
  Tensor operator()(const Tensor& x, const Tensor& temb) const;
  // The same on channels-last x [N, H, W, C], for blocks without a time embedding (the VAE's).
  Tensor channels_last(const Tensor& x) const;

 private:
  ResnetBlock2DConfig cfg_;
  GroupNorm norm1_, norm2_;
  Conv2d conv1_, conv2_;
  Linear time_emb_proj_;
  bool has_shortcut_ = false;
  Conv2d conv_shortcut_;
};

// Downsample2D: 3x3 conv with stride 2. padding 0 means diffusers' asymmetric (0, 1, 0, 1) pad,
// as in the VAE encoder; padding 1 (the UNet) is symmetric.
class Downsample2D {
 public:
  static Downsample2D load(const WeightSource& w, int64_t channels, int padding);
  Tensor operator()(const Tensor& x) const { return conv_(x); }
  Tensor channels_last(const Tensor& x) const { return conv_.channels_last(x); }

 private:
  Conv2d conv_;
};

// Upsample2D: nearest-neighbour 2x (or to an explicit size, as diffusers' UNet forwards when the
// sample size is not a multiple of 2^levels), then a 3x3 conv.
class Upsample2D {
 public:
  static Upsample2D load(const WeightSource& w, int64_t channels);
  Tensor operator()(const Tensor& x) const { return conv_(kernels::upsample_nearest2x(x)); }
  Tensor operator()(const Tensor& x, int64_t out_h, int64_t out_w) const {
    return conv_(kernels::upsample_nearest(x, out_h, out_w));
  }
  // 2x on channels-last x [N, H, W, C].
  Tensor channels_last(const Tensor& x) const {
    return conv_.channels_last(kernels::upsample_nearest2x_channels_last(x));
  }

 private:
  Conv2d conv_;
};

}  // namespace sdrt
