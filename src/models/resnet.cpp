#include "models/resnet.h"

#include "core/error.h"

namespace sdrt {

ResnetBlock2D ResnetBlock2D::load(const WeightSource& w, const ResnetBlock2DConfig& cfg) {
  ResnetBlock2D r;
  r.cfg_ = cfg;
  r.norm1_ = GroupNorm::load(w, "norm1", cfg.in_channels, cfg.groups, cfg.eps);
  r.conv1_ = Conv2d::load_same(w, "conv1", cfg.in_channels, cfg.out_channels, 3);
  if (cfg.temb_channels > 0) r.time_emb_proj_ = Linear::load(w, "time_emb_proj", cfg.temb_channels, cfg.out_channels);
  r.norm2_ = GroupNorm::load(w, "norm2", cfg.out_channels, cfg.groups, cfg.eps);
  r.conv2_ = Conv2d::load_same(w, "conv2", cfg.out_channels, cfg.out_channels, 3);
  r.has_shortcut_ = cfg.in_channels != cfg.out_channels;
  if (r.has_shortcut_) r.conv_shortcut_ = Conv2d::load_same(w, "conv_shortcut", cfg.in_channels, cfg.out_channels, 1);
  return r;
}

namespace {

// GroupNorm then the block's activation, fused when it is SiLU.
template <typename Norm>
Tensor normalise_then_activate(Norm norm, kernels::Activation act) {
  if (act == kernels::Activation::SiLU) return norm(/*fuse_silu=*/true);
  Tensor y = norm(false);
  kernels::apply_activation(y, act);
  return y;
}

}  // namespace

Tensor ResnetBlock2D::channels_last(const Tensor& x) const {
  SDRT_CHECK(cfg_.temb_channels == 0, "ResnetBlock2D: the channels-last forward has no time embedding");
  auto norm_act_of = [&](const GroupNorm& norm, const Tensor& t) {
    return normalise_then_activate([&](bool silu) { return norm.channels_last(t, silu); }, cfg_.act);
  };
  Tensor h = conv1_.channels_last(norm_act_of(norm1_, x));
  h = conv2_.channels_last(norm_act_of(norm2_, h));
  if (has_shortcut_) {
    conv_shortcut_.accumulate_channels_last(x, h);
  } else {
    kernels::add_inplace(h, x);
  }
  if (cfg_.output_scale_factor != 1.0f) kernels::scale_inplace(h, 1.0f / cfg_.output_scale_factor);
  return h;
}

Tensor ResnetBlock2D::operator()(const Tensor& x, const Tensor& temb) const {
  auto norm_act = [&](const GroupNorm& norm, const Tensor& t) {
    return normalise_then_activate([&](bool silu) { return norm(t, silu); }, cfg_.act);
  };
  Tensor h = conv1_(norm_act(norm1_, x));
  if (cfg_.temb_channels > 0 && temb.defined()) {
    Tensor t = temb.clone();
    kernels::apply_activation(t, cfg_.act);
    kernels::add_channel_broadcast(h, time_emb_proj_(t));
  }
  h = conv2_(norm_act(norm2_, h));
  if (has_shortcut_) {
    conv_shortcut_.accumulate(x, h);
  } else {
    kernels::add_inplace(h, x);
  }
  if (cfg_.output_scale_factor != 1.0f) kernels::scale_inplace(h, 1.0f / cfg_.output_scale_factor);
  return h;
}

Downsample2D Downsample2D::load(const WeightSource& w, int64_t channels, int padding) {
  Downsample2D d;
  kernels::Conv2dParams p = padding == 0 ? kernels::Conv2dParams{2, 0, 0, 1, 1}
                                         : kernels::Conv2dParams::symmetric(2, padding);
  d.conv_ = Conv2d::load(w, "conv", channels, channels, 3, p);
  return d;
}

Upsample2D Upsample2D::load(const WeightSource& w, int64_t channels) {
  Upsample2D u;
  u.conv_ = Conv2d::load_same(w, "conv", channels, channels, 3);
  return u;
}

}  // namespace sdrt
