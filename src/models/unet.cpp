#include "models/unet.h"

#include <algorithm>
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "models/component_files.h"
#include "models/quantization_config.h"

namespace sdrt {

namespace {

using Trace = std::map<std::string, Tensor>;

void record(Trace* trace, const std::string& name, const Tensor& t) {
  if (trace) (*trace)[name] = t;
}

// Settings every block of the model shares.
UNetBlockConfig shared_block_config(const UNetConfig& c) {
  UNetBlockConfig b;
  b.temb_channels = c.time_embed_dim;
  b.groups = c.norm_num_groups;
  b.eps = c.norm_eps;
  b.act = c.act;
  b.downsample_padding = c.downsample_padding;
  b.use_linear_projection = c.use_linear_projection;
  b.upcast_attention = c.upcast_attention;
  return b;
}

// unet_2d_condition.py's down loop: every level but the last ends with a downsampler.
std::vector<UNetDownBlock> load_down_blocks(const UNetConfig& c, const WeightSource& w) {
  std::vector<UNetDownBlock> blocks;
  int64_t output_channels = c.block_out_channels[0];
  for (size_t i = 0; i < c.levels(); ++i) {
    UNetBlockConfig b = shared_block_config(c);
    b.in_channels = output_channels;
    b.out_channels = output_channels = c.block_out_channels[i];
    b.num_layers = c.layers_per_block[i];
    b.add_sampler = i + 1 < c.levels();
    b.heads = c.num_attention_heads[i];
    b.cross_attention_dim = c.cross_attention_dim[i];
    b.transformer_layers = c.down_transformer_layers[i];
    b.only_cross_attention = c.only_cross_attention[i];
    WeightSource bw = w.sub(str("down_blocks.", i));
    if (c.down_block_types[i] == "CrossAttnDownBlock2D")
      blocks.emplace_back(CrossAttnDownBlock2D::load(bw, b));
    else
      blocks.emplace_back(DownBlock2D::load(bw, b));
  }
  return blocks;
}

// The mid block always runs at the last level's width, with that level's heads and context size.
// diffusers does not pass only_cross_attention to UNetMidBlock2DCrossAttn.
UNetMidBlock2DCrossAttn load_mid_block(const UNetConfig& c, const WeightSource& w) {
  UNetBlockConfig b = shared_block_config(c);
  b.in_channels = b.out_channels = c.block_out_channels.back();
  b.num_layers = 1;
  b.output_scale_factor = c.mid_block_scale_factor;
  b.heads = c.num_attention_heads.back();
  b.cross_attention_dim = c.cross_attention_dim.back();
  b.transformer_layers = c.mid_transformer_layers;
  return UNetMidBlock2DCrossAttn::load(w.sub("mid_block"), b);
}

// unet_2d_condition.py's up loop: per-level settings reversed, one more resnet than the down
// level (it also consumes the downsampler's skip), an upsampler on every block but the last.
std::vector<UNetUpBlock> load_up_blocks(const UNetConfig& c, const WeightSource& w) {
  std::vector<UNetUpBlock> blocks;
  size_t levels = c.levels();
  auto reversed = [levels](size_t j) { return levels - 1 - j; };
  int64_t output_channels = c.block_out_channels.back();
  for (size_t j = 0; j < levels; ++j) {
    UNetBlockConfig b = shared_block_config(c);
    b.prev_output_channels = output_channels;
    b.out_channels = output_channels = c.block_out_channels[reversed(j)];
    b.in_channels = c.block_out_channels[reversed(std::min(j + 1, levels - 1))];
    b.num_layers = c.layers_per_block[reversed(j)] + 1;
    b.add_sampler = j + 1 < levels;
    b.heads = c.num_attention_heads[reversed(j)];
    b.cross_attention_dim = c.cross_attention_dim[reversed(j)];
    b.transformer_layers = c.up_transformer_layers[j];
    b.only_cross_attention = c.only_cross_attention[reversed(j)];
    WeightSource bw = w.sub(str("up_blocks.", j));
    if (c.up_block_types[j] == "CrossAttnUpBlock2D")
      blocks.emplace_back(CrossAttnUpBlock2D::load(bw, b));
    else
      blocks.emplace_back(UpBlock2D::load(bw, b));
  }
  return blocks;
}

Conv2d load_same_conv(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel) {
  return Conv2d::load(w, name, in, out, kernel, kernels::Conv2dParams::symmetric(1, (kernel - 1) / 2));
}

}  // namespace

UNet2DConditionModel UNet2DConditionModel::load(const std::string& dir, kernels::Precision precision) {
  UNetConfig cfg = UNetConfig::load(Config::load((std::filesystem::path(dir) / "config.json").string()));
  // int8: an int8 model folder runs its stored int8 layers (the rest at `precision`, f32 for
  // int8); --precision int8 on a float folder quantises at load with dynamic scales.
  std::shared_ptr<const Int8Policy> int8;
  if (auto q = QuantizationConfig::load_if_present(dir))
    int8 = std::make_shared<const Int8Policy>(Int8Policy::from_file(q->static_activations));
  else if (precision == kernels::Precision::int8)
    int8 = std::make_shared<const Int8Policy>(Int8Policy::dynamic(Int8Policy::default_keep_float()));
  const kernels::Precision float_precision = precision == kernels::Precision::int8 ? kernels::Precision::f32 : precision;
  WeightSource weights =
      WeightSource::open(find_weights_file(dir)).with_compute_precision(float_precision).with_int8_policy(int8);
  UNet2DConditionModel model = load(cfg, weights);
  warn_unused(weights);
  return model;
}

UNet2DConditionModel UNet2DConditionModel::load(const UNetConfig& cfg, const WeightSource& w) {
  UNet2DConditionModel m;
  m.cfg_ = cfg;
  int64_t base = cfg.block_out_channels[0];
  m.conv_in_ = load_same_conv(w, "conv_in", cfg.in_channels, base, cfg.conv_in_kernel);
  m.time_linear_1_ = Linear::load(w, "time_embedding.linear_1", base, cfg.time_embed_dim);
  m.time_linear_2_ = Linear::load(w, "time_embedding.linear_2", cfg.time_embed_dim, cfg.time_embed_dim);
  m.down_blocks_ = load_down_blocks(cfg, w);
  if (!cfg.mid_block_type.empty()) m.mid_block_ = load_mid_block(cfg, w);
  m.up_blocks_ = load_up_blocks(cfg, w);
  m.conv_norm_out_ = GroupNorm::load(w, "conv_norm_out", base, cfg.norm_num_groups, cfg.norm_eps);
  m.conv_out_ = load_same_conv(w, "conv_out", base, cfg.out_channels, cfg.conv_out_kernel);
  return m;
}

void UNet2DConditionModel::check_inputs(const Tensor& sample, const std::vector<float>& timesteps,
                                        const Tensor& context) const {
  SDRT_CHECK(sample.rank() == 4 && sample.dim(1) == cfg_.in_channels, "UNet2DConditionModel: sample ",
             shape_str(sample.shape()), " is not [B, ", cfg_.in_channels, ", H, W]");
  int64_t batch = sample.dim(0);
  SDRT_CHECK(timesteps.size() == static_cast<size_t>(batch) || timesteps.size() == 1,
             "UNet2DConditionModel: ", timesteps.size(), " timesteps for a batch of ", batch, " (expected ", batch,
             " or 1)");
  SDRT_CHECK(context.rank() == 3 && context.dim(0) == batch, "UNet2DConditionModel: encoder_hidden_states ",
             shape_str(context.shape()), " is not [", batch, ", L, cross_attention_dim]");
}

// Timesteps -> sinusoid (time_proj) -> time_embedding (linear_1, act, linear_2, post_act).
Tensor UNet2DConditionModel::time_embedding(const std::vector<float>& timesteps, int64_t batch, Trace* trace) const {
  // A single timestep applies to the whole batch, as diffusers' expand() does.
  std::vector<float> per_sample = timesteps.size() == 1 ? std::vector<float>(batch, timesteps[0]) : timesteps;
  Tensor t = kernels::timestep_embedding(per_sample, static_cast<int>(cfg_.block_out_channels[0]), cfg_.flip_sin_to_cos,
                                         cfg_.freq_shift);
  record(trace, "time_proj", t);
  Tensor h = time_linear_1_(t);
  kernels::apply_activation(h, cfg_.act);
  Tensor emb = time_linear_2_(h);
  kernels::apply_activation(emb, cfg_.timestep_post_act);
  if (cfg_.time_embedding_act == kernels::Activation::None) {
    record(trace, "time_embedding", emb);
    return emb;
  }
  record(trace, "time_embedding", trace ? emb.clone() : emb);
  kernels::apply_activation(emb, cfg_.time_embedding_act);
  return emb;
}

Tensor UNet2DConditionModel::forward(const Tensor& sample, const std::vector<float>& timesteps,
                                     const Tensor& encoder_hidden_states) const {
  return forward(sample, timesteps, encoder_hidden_states, nullptr);
}

Tensor UNet2DConditionModel::forward(const Tensor& sample, const std::vector<float>& timesteps, const Tensor& context,
                                     Trace* trace) const {
  check_inputs(sample, timesteps, context);
  Tensor emb = time_embedding(timesteps, sample.dim(0), trace);

  Tensor h;
  if (cfg_.center_input_sample) {
    Tensor centered = sample.clone();
    kernels::scale_inplace(centered, 2.0f);
    kernels::add_inplace(centered, Tensor::full(centered.shape(), -1.0f));
    h = conv_in_(centered);
  } else {
    h = conv_in_(sample);
  }
  record(trace, "conv_in", h);

  SkipStack skips{h};
  for (size_t i = 0; i < down_blocks_.size(); ++i) {
    h = std::visit([&](const auto& block) { return block(h, emb, context, skips); }, down_blocks_[i]);
    record(trace, str("down_blocks.", i), h);
  }
  if (mid_block_) {
    h = (*mid_block_)(h, emb, context);
    record(trace, "mid_block", h);
  }
  for (size_t i = 0; i < up_blocks_.size(); ++i) {
    h = std::visit([&](const auto& block) { return block(h, emb, context, skips); }, up_blocks_[i]);
    record(trace, str("up_blocks.", i), h);
  }
  SDRT_CHECK(skips.empty(), "UNet2DConditionModel: ", skips.size(), " skip connections left unused");

  if (trace || cfg_.act != kernels::Activation::SiLU) {
    Tensor normed = conv_norm_out_(h);
    record(trace, "conv_norm_out", trace ? normed.clone() : normed);
    kernels::apply_activation(normed, cfg_.act);
    h = normed;
  } else {
    h = conv_norm_out_(h, /*fuse_silu=*/true);
  }
  Tensor out = conv_out_(h);
  record(trace, "conv_out", out);
  return out;
}

}  // namespace sdrt
