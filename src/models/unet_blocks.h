// The UNet2DConditionModel blocks of diffusers' unet_2d_blocks.py that SD 1.x/2.x use, one
// class per diffusers class so checkpoint names (resnets.i, attentions.i, downsamplers.0,
// upsamplers.0) bind one to one.
#pragma once

#include <optional>
#include <variant>
#include <vector>

#include "models/resnet.h"
#include "models/transformer_2d.h"

namespace sdrt {

// What get_down_block / get_mid_block / get_up_block pass to a block.
struct UNetBlockConfig {
  int64_t in_channels = 0;
  int64_t out_channels = 0;
  int64_t prev_output_channels = 0;  // up blocks: channels arriving from the block below
  int64_t temb_channels = 0;
  int num_layers = 1;        // resnets (up blocks get layers_per_block + 1)
  bool add_sampler = false;  // Downsample2D after a down block, Upsample2D after an up block
  int downsample_padding = 1;
  int groups = 32;
  float eps = 1e-5f;
  kernels::Activation act = kernels::Activation::SiLU;
  float output_scale_factor = 1.0f;
  // Cross-attention blocks only.
  int heads = 1;
  int64_t cross_attention_dim = 0;
  std::vector<int> transformer_layers;  // per resnet
  bool use_linear_projection = false;
  bool only_cross_attention = false;
  bool upcast_attention = false;
};

// Skip connections, pushed by down blocks (and conv_in) and popped from the back by up blocks.
using SkipStack = std::vector<Tensor>;

class DownBlock2D {
 public:
  static DownBlock2D load(const WeightSource& w, const UNetBlockConfig& cfg);
  Tensor operator()(const Tensor& x, const Tensor& temb, const Tensor& context, SkipStack& skips) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::optional<Downsample2D> downsampler_;
};

class CrossAttnDownBlock2D {
 public:
  static CrossAttnDownBlock2D load(const WeightSource& w, const UNetBlockConfig& cfg);
  Tensor operator()(const Tensor& x, const Tensor& temb, const Tensor& context, SkipStack& skips) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<Transformer2DModel> attentions_;
  std::optional<Downsample2D> downsampler_;
};

class UNetMidBlock2DCrossAttn {
 public:
  static UNetMidBlock2DCrossAttn load(const WeightSource& w, const UNetBlockConfig& cfg);
  Tensor operator()(const Tensor& x, const Tensor& temb, const Tensor& context) const;

 private:
  std::vector<ResnetBlock2D> resnets_;  // num_layers + 1: one before the attentions, one after each
  std::vector<Transformer2DModel> attentions_;
};

class UpBlock2D {
 public:
  static UpBlock2D load(const WeightSource& w, const UNetBlockConfig& cfg);
  Tensor operator()(const Tensor& x, const Tensor& temb, const Tensor& context, SkipStack& skips) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<int64_t> resnet_in_channels_;  // hidden + skip channels each resnet was built for
  std::optional<Upsample2D> upsampler_;
};

class CrossAttnUpBlock2D {
 public:
  static CrossAttnUpBlock2D load(const WeightSource& w, const UNetBlockConfig& cfg);
  Tensor operator()(const Tensor& x, const Tensor& temb, const Tensor& context, SkipStack& skips) const;

 private:
  std::vector<ResnetBlock2D> resnets_;
  std::vector<int64_t> resnet_in_channels_;
  std::vector<Transformer2DModel> attentions_;
  std::optional<Upsample2D> upsampler_;
};

using UNetDownBlock = std::variant<CrossAttnDownBlock2D, DownBlock2D>;
using UNetUpBlock = std::variant<UpBlock2D, CrossAttnUpBlock2D>;

}  // namespace sdrt
