#include "models/unet_blocks.h"

#include "core/error.h"

namespace sdrt {

namespace {

ResnetBlock2DConfig resnet_config(const UNetBlockConfig& cfg, int64_t in, int64_t out) {
  ResnetBlock2DConfig r;
  r.in_channels = in;
  r.out_channels = out;
  r.temb_channels = cfg.temb_channels;
  r.groups = cfg.groups;
  r.eps = cfg.eps;
  r.act = cfg.act;
  r.output_scale_factor = cfg.output_scale_factor;
  return r;
}

// The blocks build each Transformer2DModel with out_channels // heads as the head size.
Transformer2DConfig transformer_config(const UNetBlockConfig& cfg, int64_t channels, int layers) {
  Transformer2DConfig t;
  t.in_channels = channels;
  t.heads = cfg.heads;
  t.head_dim = channels / cfg.heads;
  t.num_layers = layers;
  t.cross_attention_dim = cfg.cross_attention_dim;
  t.norm_groups = cfg.groups;
  t.use_linear_projection = cfg.use_linear_projection;
  t.only_cross_attention = cfg.only_cross_attention;
  t.upcast_attention = cfg.upcast_attention;
  return t;
}

ResnetBlock2D load_resnet(const WeightSource& w, int i, const UNetBlockConfig& cfg, int64_t in, int64_t out) {
  return ResnetBlock2D::load(w.sub(str("resnets.", i)), resnet_config(cfg, in, out));
}

Transformer2DModel load_attention(const WeightSource& w, int i, const UNetBlockConfig& cfg, int64_t channels) {
  SDRT_CHECK(static_cast<int>(cfg.transformer_layers.size()) > i, w.path(),
             ": no transformer_layers_per_block entry for attentions.", i);
  return Transformer2DModel::load(w.sub(str("attentions.", i)),
                                  transformer_config(cfg, channels, cfg.transformer_layers[i]));
}

std::optional<Downsample2D> load_downsampler(const WeightSource& w, const UNetBlockConfig& cfg) {
  if (!cfg.add_sampler) return std::nullopt;
  return Downsample2D::load(w.sub("downsamplers.0"), cfg.out_channels, cfg.downsample_padding);
}

// diffusers forwards `upsample_size` = the next skip connection's size whenever the sample is
// not a multiple of 2^levels (e.g. 520x520 images); otherwise that size is exactly 2x.
Tensor upsample_to_next_skip(const Upsample2D& upsampler, const Tensor& h, const SkipStack& skips) {
  if (skips.empty()) return upsampler(h);
  return upsampler(h, skips.back().dim(2), skips.back().dim(3));
}

std::optional<Upsample2D> load_upsampler(const WeightSource& w, const UNetBlockConfig& cfg) {
  if (!cfg.add_sampler) return std::nullopt;
  return Upsample2D::load(w.sub("upsamplers.0"), cfg.out_channels);
}

// Up-block resnet i reads the previous hidden state concatenated with one skip connection. Its
// input width follows diffusers' formula: the skip of the last resnet comes from the level below
// (in_channels), the others from the same level (out_channels).
int64_t up_resnet_in_channels(const UNetBlockConfig& cfg, int i) {
  int64_t skip = i == cfg.num_layers - 1 ? cfg.in_channels : cfg.out_channels;
  int64_t hidden = i == 0 ? cfg.prev_output_channels : cfg.out_channels;
  return hidden + skip;
}

// torch.cat([hidden, skip], dim=1) with the most recent skip.
Tensor concat_skip(const char* block, const Tensor& x, SkipStack& skips, int64_t expected_channels) {
  SDRT_CHECK(!skips.empty(), block, ": no skip connection left to consume");
  Tensor skip = std::move(skips.back());
  skips.pop_back();
  SDRT_CHECK(x.dim(1) + skip.dim(1) == expected_channels, block, ": hidden state ", shape_str(x.shape()),
             " and skip connection ", shape_str(skip.shape()), " concatenate to ", x.dim(1) + skip.dim(1),
             " channels, but the resnet expects ", expected_channels,
             " (layers_per_block that differ per level do not line up, as in diffusers)");
  return kernels::concat_channels(x, skip);
}

}  // namespace

DownBlock2D DownBlock2D::load(const WeightSource& w, const UNetBlockConfig& cfg) {
  DownBlock2D b;
  for (int i = 0; i < cfg.num_layers; ++i)
    b.resnets_.push_back(load_resnet(w, i, cfg, i == 0 ? cfg.in_channels : cfg.out_channels, cfg.out_channels));
  b.downsampler_ = load_downsampler(w, cfg);
  return b;
}

Tensor DownBlock2D::operator()(const Tensor& x, const Tensor& temb, const Tensor& /*context*/, SkipStack& skips) const {
  Tensor h = x;
  for (const auto& resnet : resnets_) {
    h = resnet(h, temb);
    skips.push_back(h);
  }
  if (downsampler_) {
    h = (*downsampler_)(h);
    skips.push_back(h);
  }
  return h;
}

CrossAttnDownBlock2D CrossAttnDownBlock2D::load(const WeightSource& w, const UNetBlockConfig& cfg) {
  CrossAttnDownBlock2D b;
  for (int i = 0; i < cfg.num_layers; ++i) {
    b.resnets_.push_back(load_resnet(w, i, cfg, i == 0 ? cfg.in_channels : cfg.out_channels, cfg.out_channels));
    b.attentions_.push_back(load_attention(w, i, cfg, cfg.out_channels));
  }
  b.downsampler_ = load_downsampler(w, cfg);
  return b;
}

Tensor CrossAttnDownBlock2D::operator()(const Tensor& x, const Tensor& temb, const Tensor& context,
                                        SkipStack& skips) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    h = attentions_[i](resnets_[i](h, temb), context);
    skips.push_back(h);
  }
  if (downsampler_) {
    h = (*downsampler_)(h);
    skips.push_back(h);
  }
  return h;
}

UNetMidBlock2DCrossAttn UNetMidBlock2DCrossAttn::load(const WeightSource& w, const UNetBlockConfig& cfg) {
  UNetMidBlock2DCrossAttn b;
  b.resnets_.push_back(load_resnet(w, 0, cfg, cfg.in_channels, cfg.in_channels));
  for (int i = 0; i < cfg.num_layers; ++i) {
    b.attentions_.push_back(load_attention(w, i, cfg, cfg.in_channels));
    b.resnets_.push_back(load_resnet(w, i + 1, cfg, cfg.in_channels, cfg.in_channels));
  }
  return b;
}

Tensor UNetMidBlock2DCrossAttn::operator()(const Tensor& x, const Tensor& temb, const Tensor& context) const {
  Tensor h = resnets_[0](x, temb);
  for (size_t i = 0; i < attentions_.size(); ++i) h = resnets_[i + 1](attentions_[i](h, context), temb);
  return h;
}

UpBlock2D UpBlock2D::load(const WeightSource& w, const UNetBlockConfig& cfg) {
  UpBlock2D b;
  for (int i = 0; i < cfg.num_layers; ++i) {
    b.resnet_in_channels_.push_back(up_resnet_in_channels(cfg, i));
    b.resnets_.push_back(load_resnet(w, i, cfg, b.resnet_in_channels_.back(), cfg.out_channels));
  }
  b.upsampler_ = load_upsampler(w, cfg);
  return b;
}

Tensor UpBlock2D::operator()(const Tensor& x, const Tensor& temb, const Tensor& /*context*/, SkipStack& skips) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i)
    h = resnets_[i](concat_skip("UpBlock2D", h, skips, resnet_in_channels_[i]), temb);
  if (upsampler_) h = upsample_to_next_skip(*upsampler_, h, skips);
  return h;
}

CrossAttnUpBlock2D CrossAttnUpBlock2D::load(const WeightSource& w, const UNetBlockConfig& cfg) {
  CrossAttnUpBlock2D b;
  for (int i = 0; i < cfg.num_layers; ++i) {
    b.resnet_in_channels_.push_back(up_resnet_in_channels(cfg, i));
    b.resnets_.push_back(load_resnet(w, i, cfg, b.resnet_in_channels_.back(), cfg.out_channels));
    b.attentions_.push_back(load_attention(w, i, cfg, cfg.out_channels));
  }
  b.upsampler_ = load_upsampler(w, cfg);
  return b;
}

Tensor CrossAttnUpBlock2D::operator()(const Tensor& x, const Tensor& temb, const Tensor& context,
                                      SkipStack& skips) const {
  Tensor h = x;
  for (size_t i = 0; i < resnets_.size(); ++i) {
    h = resnets_[i](concat_skip("CrossAttnUpBlock2D", h, skips, resnet_in_channels_[i]), temb);
    h = attentions_[i](h, context);
  }
  if (upsampler_) h = upsample_to_next_skip(*upsampler_, h, skips);
  return h;
}

}  // namespace sdrt
