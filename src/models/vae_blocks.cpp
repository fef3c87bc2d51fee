#include "models/vae_blocks.h"

#include <utility>

#include "core/error.h"

namespace sdrt {

namespace {

ResnetBlock2D load_resnet(const WeightSource& w, int64_t in_channels, int64_t out_channels, const VaeBlockParams& p) {
  ResnetBlock2DConfig cfg;
  cfg.in_channels = in_channels;
  cfg.out_channels = out_channels;
  cfg.temb_channels = 0;
  cfg.groups = p.groups;
  cfg.eps = p.eps;
  cfg.act = p.act;
  return ResnetBlock2D::load(w, cfg);
}

std::vector<ResnetBlock2D> load_resnets(const WeightSource& w, int64_t in_channels, int64_t out_channels, int layers,
                                        const VaeBlockParams& p) {
  std::vector<ResnetBlock2D> resnets;
  resnets.reserve(layers);
  for (int i = 0; i < layers; ++i)
    resnets.push_back(load_resnet(w.sub(str("resnets.", i)), i == 0 ? in_channels : out_channels, out_channels, p));
  return resnets;
}

Tensor run_resnets(const std::vector<ResnetBlock2D>& resnets, Tensor h) {
  for (const auto& resnet : resnets) h = resnet.channels_last(h);  // the previous activation is released here
  return h;
}

}  // namespace

// ---- VaeAttentionBlock

VaeAttentionBlock VaeAttentionBlock::load(const WeightSource& w, int64_t channels, const VaeBlockParams& p) {
  VaeAttentionBlock a;
  a.group_norm_ = GroupNorm::load(w, "group_norm", channels, p.groups, p.eps);
  AttentionConfig cfg;
  cfg.query_dim = channels;
  cfg.heads = 1;
  cfg.head_dim = channels;
  cfg.qkv_bias = true;
  a.attention_ = Attention::load(w, cfg);
  return a;
}

Tensor VaeAttentionBlock::operator()(const Tensor& x) const {
  // GroupNorm statistics do not depend on the layout, so normalising channels last is the same as
  // diffusers normalising [N, C, H*W] before its transpose to tokens.
  Tensor tokens = group_norm_.channels_last(x);
  Tensor out = attention_(tokens.reshape({x.dim(0), x.dim(1) * x.dim(2), x.dim(3)})).reshape(x.shape());
  kernels::add_inplace(out, x);
  return out;
}

// ---- VaeMidBlock

VaeMidBlock VaeMidBlock::load(const WeightSource& w, int64_t channels, const VaeBlockParams& p, bool add_attention) {
  VaeMidBlock m;
  m.resnet0_ = load_resnet(w.sub("resnets.0"), channels, channels, p);
  if (add_attention) m.attention_ = VaeAttentionBlock::load(w.sub("attentions.0"), channels, p);
  m.resnet1_ = load_resnet(w.sub("resnets.1"), channels, channels, p);
  return m;
}

Tensor VaeMidBlock::operator()(Tensor x) const {
  Tensor h = resnet0_.channels_last(x);
  x = Tensor();
  if (attention_) h = (*attention_)(h);
  return resnet1_.channels_last(h);
}

// ---- DownEncoderBlock2D / UpDecoderBlock2D

DownEncoderBlock2D DownEncoderBlock2D::load(const WeightSource& w, int64_t in_channels, int64_t out_channels,
                                            int layers, bool add_downsample, const VaeBlockParams& p) {
  DownEncoderBlock2D b;
  b.resnets_ = load_resnets(w, in_channels, out_channels, layers, p);
  if (add_downsample) b.downsampler_ = Downsample2D::load(w.sub("downsamplers.0"), out_channels, /*padding=*/0);
  return b;
}

Tensor DownEncoderBlock2D::operator()(Tensor x) const {
  Tensor h = run_resnets(resnets_, std::move(x));
  return downsampler_ ? downsampler_->channels_last(h) : h;
}

UpDecoderBlock2D UpDecoderBlock2D::load(const WeightSource& w, int64_t in_channels, int64_t out_channels, int layers,
                                        bool add_upsample, const VaeBlockParams& p) {
  UpDecoderBlock2D b;
  b.resnets_ = load_resnets(w, in_channels, out_channels, layers, p);
  if (add_upsample) b.upsampler_ = Upsample2D::load(w.sub("upsamplers.0"), out_channels);
  return b;
}

Tensor UpDecoderBlock2D::operator()(Tensor x) const {
  Tensor h = run_resnets(resnets_, std::move(x));
  return upsampler_ ? upsampler_->channels_last(h) : h;
}

}  // namespace sdrt
