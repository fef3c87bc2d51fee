// The building blocks of diffusers' VAE Encoder/Decoder (autoencoders/vae.py, unets/unet_2d_blocks.py):
// DownEncoderBlock2D, UpDecoderBlock2D and the UNetMidBlock2D with its single-head spatial attention.
// None of them takes a time embedding; every GroupNorm in them uses eps 1e-6. Activations are channels
// last, [N, H, W, C] (see kernels::nchw_to_nhwc): the layout the convolutions run in, so none of them
// needs a reorder, and the attention reads it as [N, H*W, C] tokens without a transpose.
#pragma once

#include <optional>
#include <vector>

#include "models/attention.h"
#include "models/resnet.h"

namespace sdrt {

// What every VAE block shares, from vae/config.json.
struct VaeBlockParams {
  int groups = 32;
  kernels::Activation act = kernels::Activation::SiLU;
  // diffusers hard-codes resnet_eps=1e-6 for the VAE (not the nn.GroupNorm default 1e-5).
  float eps = 1e-6f;
};

// diffusers Attention as built by UNetMidBlock2D for the VAE: GroupNorm, single-head self-attention
// over the H*W positions with head size = channels and biased q/k/v, then a residual add.
class VaeAttentionBlock {
 public:
  // Accepts to_q/to_k/to_v/to_out.0 and the older query/key/value/proj_attn, as Linear [C, C] or 1x1 conv [C, C, 1, 1].
  static VaeAttentionBlock load(const WeightSource& w, int64_t channels, const VaeBlockParams& p);
  Tensor operator()(const Tensor& x) const;  // [N, H, W, C] -> same

 private:
  GroupNorm group_norm_;
  Attention attention_;
};

// UNetMidBlock2D with num_layers 1: resnet, attention (unless mid_block_add_attention is false), resnet.
class VaeMidBlock {
 public:
  static VaeMidBlock load(const WeightSource& w, int64_t channels, const VaeBlockParams& p, bool add_attention);
  Tensor operator()(Tensor x) const;

 private:
  ResnetBlock2D resnet0_, resnet1_;
  std::optional<VaeAttentionBlock> attention_;
};

// DownEncoderBlock2D: `layers` resnets (the first changes in -> out channels), then optionally a stride-2
// conv with diffusers' asymmetric (0, 1, 0, 1) padding.
class DownEncoderBlock2D {
 public:
  static DownEncoderBlock2D load(const WeightSource& w, int64_t in_channels, int64_t out_channels, int layers,
                                 bool add_downsample, const VaeBlockParams& p);
  // Takes its input by value so the caller can hand over (and free) its activation.
  Tensor operator()(Tensor x) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::optional<Downsample2D> downsampler_;
};

// UpDecoderBlock2D: `layers` resnets (the first changes in -> out channels), then optionally a
// nearest-neighbour 2x upsample followed by a 3x3 conv.
class UpDecoderBlock2D {
 public:
  static UpDecoderBlock2D load(const WeightSource& w, int64_t in_channels, int64_t out_channels, int layers,
                               bool add_upsample, const VaeBlockParams& p);
  // Takes its input by value so the caller can hand over (and free) its activation.
  Tensor operator()(Tensor x) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::optional<Upsample2D> upsampler_;
};

}  // namespace sdrt
