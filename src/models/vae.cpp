#include "models/vae.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "core/error.h"
#include "models/component_files.h"
#include "models/config_helpers.h"

namespace sdrt {

namespace {

void check_block_types(const Config& config, const std::string& key, const std::string& supported, int levels) {
  if (!config.has(key)) return;  // absent: one supported block per level (real configs always list them)
  auto types = config.get<std::vector<std::string>>(key);
  if (static_cast<int>(types.size()) != levels)
    config.bad_value(key, str("has ", types.size(), " entries but block_out_channels has ", levels));
  for (const auto& t : types)
    if (t != supported) config.bad_value(key, str("block type '", t, "' is not supported (only ", supported, ")"));
}

void record(VaeTrace* trace, const std::string& name, const Tensor& t) {
  if (trace) (*trace)[name] = t;
}

// Traces hold NCHW tensors, as diffusers has them.
void record_channels_last(VaeTrace* trace, const std::string& name, const Tensor& t) {
  if (trace) (*trace)[name] = kernels::nhwc_to_nchw(t);
}

// conv_norm_out then SiLU (nn.SiLU in diffusers, whatever act_fn is) on channels-last x. The
// pre-activation value is only materialised when it is traced.
Tensor norm_silu(const GroupNorm& norm, const Tensor& x, VaeTrace* trace, const std::string& name) {
  if (!trace) return norm.channels_last(x, /*fuse_silu=*/true);
  Tensor y = norm.channels_last(x);
  record_channels_last(trace, name, y);
  kernels::apply_activation(y, kernels::Activation::SiLU);
  return y;
}

void check_input(const Tensor& x, int64_t channels, const char* what) {
  SDRT_CHECK(x.rank() == 4 && x.dim(1) == channels, "AutoencoderKL ", what, ": expected [N, ", channels,
             ", H, W], got ", shape_str(x.shape()));
  SDRT_CHECK(x.dim(0) > 0 && x.dim(2) > 0 && x.dim(3) > 0, "AutoencoderKL ", what, ": empty input ",
             shape_str(x.shape()));
}

}  // namespace

// ---- VaeConfig

VaeConfig VaeConfig::load(const Config& config) {
  VaeConfig c;
  c.in_channels = config.get<int64_t>("in_channels", c.in_channels);
  c.out_channels = config.get<int64_t>("out_channels", c.out_channels);
  c.latent_channels = config.get<int64_t>("latent_channels", c.latent_channels);
  c.block_out_channels = config.get<std::vector<int64_t>>("block_out_channels", c.block_out_channels);
  c.layers_per_block = config.get<int>("layers_per_block", c.layers_per_block);
  c.norm_num_groups = config.get<int>("norm_num_groups", c.norm_num_groups);
  c.mid_block_add_attention = config.get<bool>("mid_block_add_attention", c.mid_block_add_attention);
  c.use_quant_conv = config.get<bool>("use_quant_conv", c.use_quant_conv);
  c.use_post_quant_conv = config.get<bool>("use_post_quant_conv", c.use_post_quant_conv);
  c.scaling_factor = config.get<float>("scaling_factor", c.scaling_factor);
  c.shift_factor = config.get<float>("shift_factor", c.shift_factor);
  c.act_fn = read_activation(config, "act_fn", "silu");

  config.require_positive("in_channels", c.in_channels);
  config.require_positive("out_channels", c.out_channels);
  config.require_positive("latent_channels", c.latent_channels);
  config.require_positive("layers_per_block", c.layers_per_block);
  config.require_positive("norm_num_groups", c.norm_num_groups);
  if (c.block_out_channels.empty() || c.block_out_channels.size() > 30)
    config.bad_value("block_out_channels", "needs between 1 and 30 levels");
  for (int64_t ch : c.block_out_channels)
    if (ch <= 0 || ch % c.norm_num_groups != 0)
      config.bad_value("block_out_channels", str("channel count ", ch, " is not a positive multiple of norm_num_groups ",
                                                 c.norm_num_groups));
  check_block_types(config, "down_block_types", "DownEncoderBlock2D", c.levels());
  check_block_types(config, "up_block_types", "UpDecoderBlock2D", c.levels());
  return c;
}

// ---- LatentDistribution

Tensor LatentDistribution::std() const {
  Tensor s = Tensor::empty(logvar.shape());
  for (int64_t i = 0; i < s.numel(); ++i) s[i] = std::exp(0.5f * logvar[i]);
  return s;
}

Tensor LatentDistribution::sample(const Tensor& noise) const {
  SDRT_CHECK(noise.shape() == mean.shape(), "LatentDistribution::sample: noise ", shape_str(noise.shape()),
             " does not match the latents ", shape_str(mean.shape()));
  Tensor s = std();
  for (int64_t i = 0; i < s.numel(); ++i) s[i] = mean[i] + s[i] * noise[i];
  return s;
}

namespace {

// moments [N, 2C, h, w] -> mean = moments[:, :C], logvar = clamp(moments[:, C:], -30, 20).
LatentDistribution split_moments(const Tensor& moments) {
  int64_t n = moments.dim(0), c = moments.dim(1) / 2, plane = c * moments.dim(2) * moments.dim(3);
  Shape shape = {n, c, moments.dim(2), moments.dim(3)};
  LatentDistribution d{Tensor::empty(shape), Tensor::empty(shape)};
  for (int64_t b = 0; b < n; ++b) {
    const float* src = moments.data() + b * 2 * plane;
    std::copy(src, src + plane, d.mean.data() + b * plane);
    float* logvar = d.logvar.data() + b * plane;
    for (int64_t i = 0; i < plane; ++i) logvar[i] = std::clamp(src[plane + i], -30.0f, 20.0f);
  }
  return d;
}

}  // namespace

// ---- VaeEncoder

VaeEncoder VaeEncoder::load(const WeightSource& w, const VaeConfig& config) {
  VaeEncoder e;
  VaeBlockParams p{config.norm_num_groups, config.act_fn};
  const auto& channels = config.block_out_channels;
  e.conv_in_ = Conv2d::load_same(w, "conv_in", config.in_channels, channels.front(), 3);
  int64_t in = channels.front();
  for (int i = 0; i < config.levels(); ++i) {
    bool last = i + 1 == config.levels();
    e.down_blocks_.push_back(DownEncoderBlock2D::load(w.sub(str("down_blocks.", i)), in, channels[i],
                                                      config.layers_per_block, /*add_downsample=*/!last, p));
    in = channels[i];
  }
  e.mid_block_ = VaeMidBlock::load(w.sub("mid_block"), channels.back(), p, config.mid_block_add_attention);
  e.conv_norm_out_ = GroupNorm::load(w, "conv_norm_out", channels.back(), config.norm_num_groups, p.eps);
  e.conv_out_ = Conv2d::load_same(w, "conv_out", channels.back(), 2 * config.latent_channels, 3);
  return e;
}

Tensor VaeEncoder::operator()(const Tensor& image, VaeTrace* trace) const {
  Tensor h = conv_in_.channels_last(kernels::nchw_to_nhwc(image));
  record_channels_last(trace, "encoder.conv_in", h);
  for (size_t i = 0; i < down_blocks_.size(); ++i) {
    h = down_blocks_[i](std::move(h));
    record_channels_last(trace, str("encoder.down_blocks.", i), h);
  }
  h = mid_block_(std::move(h));
  record_channels_last(trace, "encoder.mid_block", h);
  h = kernels::nhwc_to_nchw(conv_out_.channels_last(norm_silu(conv_norm_out_, h, trace, "encoder.conv_norm_out")));
  record(trace, "encoder.conv_out", h);
  return h;
}

// ---- VaeDecoder

VaeDecoder VaeDecoder::load(const WeightSource& w, const VaeConfig& config) {
  VaeDecoder d;
  VaeBlockParams p{config.norm_num_groups, config.act_fn};
  std::vector<int64_t> channels(config.block_out_channels.rbegin(), config.block_out_channels.rend());
  d.conv_in_ = Conv2d::load_same(w, "conv_in", config.latent_channels, channels.front(), 3);
  d.mid_block_ = VaeMidBlock::load(w.sub("mid_block"), channels.front(), p, config.mid_block_add_attention);
  int64_t in = channels.front();
  for (int i = 0; i < config.levels(); ++i) {
    bool last = i + 1 == config.levels();
    // The decoder has one resnet more per level than the encoder.
    d.up_blocks_.push_back(UpDecoderBlock2D::load(w.sub(str("up_blocks.", i)), in, channels[i],
                                                  config.layers_per_block + 1, /*add_upsample=*/!last, p));
    in = channels[i];
  }
  d.conv_norm_out_ = GroupNorm::load(w, "conv_norm_out", channels.back(), config.norm_num_groups, p.eps);
  d.conv_out_ = Conv2d::load_same(w, "conv_out", channels.back(), config.out_channels, 3);
  return d;
}

Tensor VaeDecoder::operator()(Tensor z, VaeTrace* trace) const {
  Tensor h = conv_in_.channels_last(kernels::nchw_to_nhwc(z));
  z = Tensor();
  record_channels_last(trace, "decoder.conv_in", h);
  h = mid_block_(std::move(h));
  record_channels_last(trace, "decoder.mid_block", h);
  for (size_t i = 0; i < up_blocks_.size(); ++i) {
    h = up_blocks_[i](std::move(h));
    record_channels_last(trace, str("decoder.up_blocks.", i), h);
    // The buffers cached from the lower levels stay cached: channels last needs no reorder buffers,
    // so they add only ~150 MB to the decoder's peak at 512x512 (bf16: 1.25 -> 1.4 GB, still under
    // the UNet stage's), and releasing them cost ~0.3 s of page faults per decode.
  }
  h = kernels::nhwc_to_nchw(conv_out_.channels_last(norm_silu(conv_norm_out_, h, trace, "decoder.conv_norm_out")));
  record(trace, "decoder.conv_out", h);
  return h;
}

// ---- AutoencoderKL

AutoencoderKL AutoencoderKL::load(const std::string& dir, kernels::Precision precision) {
  VaeConfig config = VaeConfig::load(Config::load(dir + "/config.json"));
  // int8 is the UNet's (the 8-bit method quantises only the UNet); this model then runs f32.
  if (precision == kernels::Precision::int8) precision = kernels::Precision::f32;
  WeightSource weights = WeightSource::open(find_weights_file(dir)).with_compute_precision(precision);
  auto model = load(config, weights);
  warn_unused(weights);
  return model;
}

AutoencoderKL AutoencoderKL::load(const VaeConfig& config, const WeightSource& weights) {
  AutoencoderKL vae;
  vae.config_ = config;
  vae.encoder_ = VaeEncoder::load(weights.sub("encoder"), config);
  vae.decoder_ = VaeDecoder::load(weights.sub("decoder"), config);
  int64_t latent = config.latent_channels;
  const auto one_by_one = kernels::Conv2dParams::symmetric(1, 0);
  if (config.use_quant_conv)
    vae.quant_conv_ = Conv2d::load(weights, "quant_conv", 2 * latent, 2 * latent, 1, one_by_one);
  if (config.use_post_quant_conv)
    vae.post_quant_conv_ = Conv2d::load(weights, "post_quant_conv", latent, latent, 1, one_by_one);
  return vae;
}

Tensor AutoencoderKL::decode(const Tensor& z, VaeTrace* trace) const {
  check_input(z, config_.latent_channels, "decode");
  Tensor h = post_quant_conv_ ? (*post_quant_conv_)(z) : z;
  record(trace, "post_quant_conv", h);
  return decoder_(std::move(h), trace);
}

namespace {

// x[:, :, rows, cols] of an NCHW tensor, as a new tensor.
Tensor crop(const Tensor& x, int64_t row0, int64_t row1, int64_t col0, int64_t col1) {
  const int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor out = Tensor::empty({x.dim(0), x.dim(1), row1 - row0, col1 - col0});
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t r = row0; r < row1; ++r)
      std::copy(x.data() + (p * h + r) * w + col0, x.data() + (p * h + r) * w + col1,
                out.data() + (p * (row1 - row0) + r - row0) * (col1 - col0));
  return out;
}

// diffusers' blend_v / blend_h: the first `extent` rows (columns) of b fade in from the last
// `extent` rows (columns) of a, in place. The weights are computed in double and rounded to float,
// as torch multiplies a float tensor by a Python float.
void blend(const Tensor& a, Tensor& b, int64_t extent, bool vertical) {
  const int64_t planes = b.dim(0) * b.dim(1), ah = a.dim(2), aw = a.dim(3), bh = b.dim(2), bw = b.dim(3);
  extent = std::min({vertical ? ah : aw, vertical ? bh : bw, extent});
  for (int64_t k = 0; k < extent; ++k) {
    const auto from_a = static_cast<float>(1.0 - static_cast<double>(k) / static_cast<double>(extent));
    const auto from_b = static_cast<float>(static_cast<double>(k) / static_cast<double>(extent));
    for (int64_t p = 0; p < planes; ++p) {
      const float* pa = a.data() + p * ah * aw;
      float* pb = b.data() + p * bh * bw;
      if (vertical) {
        for (int64_t x = 0; x < bw; ++x)
          pb[k * bw + x] = pa[(ah - extent + k) * aw + x] * from_a + pb[k * bw + x] * from_b;
      } else {
        for (int64_t y = 0; y < bh; ++y)
          pb[y * bw + k] = pa[y * aw + aw - extent + k] * from_a + pb[y * bw + k] * from_b;
      }
    }
  }
}

}  // namespace

Tensor AutoencoderKL::decode_tiled(const Tensor& z, int tile_size) const {
  check_input(z, config_.latent_channels, "decode");
  const int f = config_.downscale();
  SDRT_CHECK(tile_size >= 4 * f && tile_size % f == 0, "AutoencoderKL tiled decode: tile size ", tile_size,
             " must be a multiple of ", f, " and at least ", 4 * f, " pixels");
  const int64_t tile = tile_size / f, h = z.dim(2), w = z.dim(3);
  if (h <= tile && w <= tile) return decode(z);
  // The integer truncations are diffusers' int(...).
  const auto stride = static_cast<int64_t>(static_cast<double>(tile) * (1 - kTileOverlap));
  const auto blend_extent = static_cast<int64_t>(static_cast<double>(tile_size) * kTileOverlap);
  const int64_t keep = tile_size - blend_extent;
  std::vector<std::vector<Tensor>> rows;
  for (int64_t i = 0; i < h; i += stride) {
    rows.emplace_back();
    for (int64_t j = 0; j < w; j += stride)
      rows.back().push_back(decode(crop(z, i, std::min(i + tile, h), j, std::min(j + tile, w))));
  }
  // Blend in diffusers' order, in place: a tile blends with its neighbours as already blended.
  int64_t out_h = 0, out_w = 0;
  for (const auto& row : rows) out_h += std::min(keep, row.front().dim(2));
  for (const Tensor& t : rows.front()) out_w += std::min(keep, t.dim(3));
  Tensor image = Tensor::empty({z.dim(0), config_.out_channels, out_h, out_w});
  const int64_t planes = z.dim(0) * config_.out_channels;
  int64_t y0 = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    int64_t x0 = 0;
    for (size_t j = 0; j < rows[i].size(); ++j) {
      Tensor& t = rows[i][j];
      if (i > 0) blend(rows[i - 1][j], t, blend_extent, /*vertical=*/true);
      if (j > 0) blend(rows[i][j - 1], t, blend_extent, /*vertical=*/false);
      const int64_t th = std::min(keep, t.dim(2)), tw = std::min(keep, t.dim(3));
      for (int64_t p = 0; p < planes; ++p)
        for (int64_t y = 0; y < th; ++y)
          std::copy(t.data() + (p * t.dim(2) + y) * t.dim(3), t.data() + (p * t.dim(2) + y) * t.dim(3) + tw,
                    image.data() + (p * out_h + y0 + y) * out_w + x0);
      x0 += tw;
    }
    y0 += std::min(keep, rows[i].front().dim(2));
  }
  return image;
}

LatentDistribution AutoencoderKL::encode(const Tensor& image, VaeTrace* trace) const {
  check_input(image, config_.in_channels, "encode");
  Tensor moments = encoder_(image, trace);
  if (quant_conv_) moments = (*quant_conv_)(moments);
  record(trace, "quant_conv", moments);
  return split_moments(moments);
}

}  // namespace sdrt
