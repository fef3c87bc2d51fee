// diffusers' AutoencoderKL (autoencoders/autoencoder_kl.py and vae.py, v0.27.2): the SD image <-> latent
// autoencoder. Encoder: conv_in -> DownEncoderBlock2D x levels -> mid block -> GroupNorm+SiLU -> conv_out
// (2 * latent channels) -> quant_conv. Decoder: post_quant_conv -> conv_in -> mid block ->
// UpDecoderBlock2D x levels -> GroupNorm+SiLU -> conv_out.
//
// Tensors are freed as soon as they are dead: at 512x512 one 128-channel activation is 128 MB, so
// only the tensors a block needs at once are alive (unless a trace is requested).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "io/config.h"
#include "models/vae_blocks.h"

namespace sdrt {

struct VaeConfig {
  // Defaults are diffusers' AutoencoderKL defaults, used for keys a config.json leaves out.
  int64_t in_channels = 3;
  int64_t out_channels = 3;
  int64_t latent_channels = 4;
  std::vector<int64_t> block_out_channels = {64};
  int layers_per_block = 1;
  int norm_num_groups = 32;
  kernels::Activation act_fn = kernels::Activation::SiLU;
  bool mid_block_add_attention = true;  // config key from diffusers >= 0.28; absent means true
  // Newer diffusers (SD3/Flux-style VAEs) can drop the 1x1 quant convs; absent means present.
  bool use_quant_conv = true;
  bool use_post_quant_conv = true;
  // The pipeline maps latents to VAE space as latents / scaling_factor + shift_factor before decode, and
  // back as (mean - shift_factor) * scaling_factor after encode. shift_factor is 0 when null or absent.
  float scaling_factor = 0.18215f;
  float shift_factor = 0.0f;

  int levels() const { return static_cast<int>(block_out_channels.size()); }
  // Image pixels per latent pixel along each axis: 2^(levels - 1), 8 for SD.
  int downscale() const { return 1 << (levels() - 1); }
  static VaeConfig load(const Config& config);
};

// DiagonalGaussianDistribution over the latents, as returned by encode().
struct LatentDistribution {
  Tensor mean;    // [N, latent_channels, h, w]
  Tensor logvar;  // same shape, already clamped to [-30, 20]
  Tensor std() const;  // exp(0.5 * logvar)
  // mean + std * noise; `noise` is standard normal with mean's shape (drawn by the caller, so the
  // caller's RNG decides reproducibility).
  Tensor sample(const Tensor& noise) const;
  const Tensor& mode() const { return mean; }
};

// Named intermediate tensors for debugging and tests (see AutoencoderKL::encode/decode).
using VaeTrace = std::map<std::string, Tensor>;

class VaeEncoder {
 public:
  static VaeEncoder load(const WeightSource& w, const VaeConfig& config);
  // image [N, in_channels, H, W] -> [N, 2 * latent_channels, H/f, W/f] (conv_out, before quant_conv).
  Tensor operator()(const Tensor& image, VaeTrace* trace) const;

 private:
  Conv2d conv_in_;
  std::vector<DownEncoderBlock2D> down_blocks_;
  VaeMidBlock mid_block_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

class VaeDecoder {
 public:
  static VaeDecoder load(const WeightSource& w, const VaeConfig& config);
  // z [N, latent_channels, h, w] (after post_quant_conv) -> [N, out_channels, h*f, w*f].
  Tensor operator()(Tensor z, VaeTrace* trace) const;

 private:
  Conv2d conv_in_;
  VaeMidBlock mid_block_;
  std::vector<UpDecoderBlock2D> up_blocks_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

class AutoencoderKL {
 public:
  // Tiles overlap by this fraction (diffusers' tile_overlap_factor).
  static constexpr double kTileOverlap = 0.25;

  // `dir` is a vae/ folder: config.json + diffusion_pytorch_model.safetensors.
  // `precision`: what its convolutions, linear layers and attention products compute in (kernels::Precision).
  static AutoencoderKL load(const std::string& dir, kernels::Precision precision = kernels::Precision::f32);
  static AutoencoderKL load(const VaeConfig& config, const WeightSource& weights);

  const VaeConfig& config() const { return config_; }

  // z: latents already mapped to VAE space (divided by scaling_factor, plus shift_factor), [N, latent, h, w]
  // -> image [N, out_channels, h*f, w*f], nominally [-1, 1], not clamped.
  Tensor decode(const Tensor& z) const { return decode(z, nullptr); }
  // image [N, in_channels, H, W] in [-1, 1] -> the latent distribution (not yet scaled by scaling_factor).
  LatentDistribution encode(const Tensor& image) const { return encode(image, nullptr); }

  // Tiled decoding, as diffusers' AutoencoderKL.tiled_decode (enable_tiling): the latents are cut
  // into tiles of tile_size / f latents, every 3/4 of a tile, each decoded on its own, and each
  // tile is blended linearly with the one above and the one to its left over tile_size / 4 pixels
  // before the tiles' top-left (tile_size - tile_size / 4)^2 pixels are put side by side. The
  // decoder's memory is then one tile's, whatever the image size, for about 1.5x the work; the
  // result differs from decode() (GroupNorm sees one tile at a time), as it does in diffusers.
  // Latents no larger than one tile decode whole. diffusers' tile_size is the config's sample_size.
  Tensor decode_tiled(const Tensor& z, int tile_size) const;

  // With `trace`, also records intermediates: post_quant_conv, decoder.conv_in, decoder.mid_block,
  // decoder.up_blocks.{i} (after its upsampler), decoder.conv_norm_out (before SiLU), decoder.conv_out.
  Tensor decode(const Tensor& z, VaeTrace* trace) const;
  // Trace names: encoder.conv_in, encoder.down_blocks.{i} (after its downsampler), encoder.mid_block,
  // encoder.conv_norm_out (before SiLU), encoder.conv_out, quant_conv (the moments).
  LatentDistribution encode(const Tensor& image, VaeTrace* trace) const;

 private:
  VaeConfig config_;
  VaeEncoder encoder_;
  VaeDecoder decoder_;
  std::optional<Conv2d> quant_conv_, post_quant_conv_;
};

}  // namespace sdrt
