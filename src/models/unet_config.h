// The UNet2DConditionModel config.json, resolved per resolution level the way diffusers'
// unet_2d_condition.py resolves it (ints broadcast to lists, the attention_head_dim naming
// quirk, reversed lists for the up path). Options this runtime does not implement are
// rejected at load with the key named, never silently ignored.
#pragma once

#include <string>
#include <vector>

#include "io/config.h"
#include "kernels/kernels.h"

namespace sdrt {

struct UNetConfig {
  std::string source;  // the config file, for error messages

  int64_t in_channels = 4;
  int64_t out_channels = 4;
  bool center_input_sample = false;
  int sample_size = 0;  // informational (0: absent)

  // Per down level i (up level j uses index levels-1-j); all have block_out_channels.size() entries.
  std::vector<int64_t> block_out_channels;
  std::vector<std::string> down_block_types;  // CrossAttnDownBlock2D | DownBlock2D
  std::vector<std::string> up_block_types;    // UpBlock2D | CrossAttnUpBlock2D
  std::vector<int> layers_per_block;
  // The number of attention heads: num_attention_heads when set, otherwise attention_head_dim
  // (diffusers' historical naming: that key holds the head count, not the head size).
  std::vector<int> num_attention_heads;
  std::vector<int64_t> cross_attention_dim;
  std::vector<bool> only_cross_attention;
  // Transformer blocks per Transformer2DModel: [down level][resnet], [up block][resnet].
  std::vector<std::vector<int>> down_transformer_layers;
  std::vector<std::vector<int>> up_transformer_layers;

  std::string mid_block_type;  // "UNetMidBlock2DCrossAttn", or empty for none (null in the config)
  std::vector<int> mid_transformer_layers;
  float mid_block_scale_factor = 1.0f;

  bool use_linear_projection = false;
  bool upcast_attention = false;
  int norm_num_groups = 32;
  float norm_eps = 1e-5f;
  kernels::Activation act = kernels::Activation::SiLU;
  int downsample_padding = 1;
  int conv_in_kernel = 3;
  int conv_out_kernel = 3;

  // Time embedding: sinusoid of dim block_out_channels[0] -> linear_1 -> act -> linear_2 [-> post_act].
  bool flip_sin_to_cos = true;
  float freq_shift = 0.0f;
  int64_t time_embed_dim = 0;  // time_embedding_dim, or 4 * block_out_channels[0]
  kernels::Activation timestep_post_act = kernels::Activation::None;
  kernels::Activation time_embedding_act = kernels::Activation::None;  // applied to emb before the blocks

  size_t levels() const { return block_out_channels.size(); }

  static UNetConfig load(const Config& config);
};

}  // namespace sdrt
