#include "models/vae.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <functional>

#include "core/error.h"
#include "core/rng.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace sdrt {
namespace {

using testing::case_path;
using testing::tiny_model_dir;

std::string vae_dir() { return tiny_model_dir() + "/vae"; }
std::string vae_weights_path() { return vae_dir() + "/diffusion_pytorch_model.safetensors"; }

const AutoencoderKL& tiny_vae() {
  static const AutoencoderKL vae = AutoencoderKL::load(vae_dir());
  return vae;
}

// Rewrites the tiny VAE's weights through `rename` (empty name = drop) and `reshape`, and loads the result.
AutoencoderKL load_rewritten(const std::string& scratch, const std::function<std::string(const std::string&)>& rename,
                             const std::function<Tensor(const std::string&, const Tensor&)>& reshape = nullptr) {
  SafeTensors original = SafeTensors::open(vae_weights_path());
  SafeTensorsWriter writer;
  for (const auto& [name, info] : original.tensors()) {
    std::string new_name = rename(name);
    if (new_name.empty()) continue;
    Tensor t = original.load_f32(name);
    writer.add(new_name, reshape ? reshape(name, t) : t);
  }
  std::string path = testing::scratch_dir(scratch) + "/diffusion_pytorch_model.safetensors";
  writer.write(path);
  return AutoencoderKL::load(tiny_vae().config(), WeightSource::open(path));
}

std::string replace_suffix_part(const std::string& name, const std::string& from, const std::string& to) {
  auto at = name.find(from);
  return at == std::string::npos ? name : name.substr(0, at) + to + name.substr(at + from.size());
}

Tensor ramp(Shape shape, float scale) {
  Tensor t = Tensor::empty(std::move(shape));
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = scale * std::sin(0.37f * static_cast<float>(i));
  return t;
}

// ---- config

TEST(VaeConfig, ReadsTheTinyConfig) {
  const VaeConfig& c = tiny_vae().config();
  EXPECT_EQ(c.in_channels, 3);
  EXPECT_EQ(c.out_channels, 3);
  EXPECT_EQ(c.latent_channels, 4);
  EXPECT_EQ(c.block_out_channels, (std::vector<int64_t>{32, 32, 64, 64}));
  EXPECT_EQ(c.layers_per_block, 1);
  EXPECT_EQ(c.norm_num_groups, 32);
  EXPECT_EQ(c.act_fn, kernels::Activation::SiLU);
  EXPECT_TRUE(c.mid_block_add_attention);
  EXPECT_FLOAT_EQ(c.scaling_factor, 0.18215f);
  EXPECT_EQ(c.shift_factor, 0.0f);
  EXPECT_EQ(c.downscale(), 8);
}

TEST(VaeConfig, ShiftFactorNullOrPresent) {
  EXPECT_EQ(VaeConfig::load(Config::from_json({{"shift_factor", nullptr}}, "test")).shift_factor, 0.0f);
  auto c = VaeConfig::load(Config::from_json({{"shift_factor", 0.0609}, {"scaling_factor", 1.5305}}, "test"));
  EXPECT_FLOAT_EQ(c.shift_factor, 0.0609f);
  EXPECT_FLOAT_EQ(c.scaling_factor, 1.5305f);
}

TEST(VaeConfig, RejectsUnsupportedBlocksAndBadSizes) {
  EXPECT_THROW(VaeConfig::load(Config::from_json(
                   {{"block_out_channels", {64}}, {"down_block_types", {"AttnDownEncoderBlock2D"}}}, "test")),
               Error);
  EXPECT_THROW(VaeConfig::load(Config::from_json({{"block_out_channels", {64, 64}},
                                                  {"up_block_types", {"UpDecoderBlock2D"}}},
                                                 "test")),
               Error);
  EXPECT_THROW(VaeConfig::load(Config::from_json({{"block_out_channels", {48}}}, "test")), Error);
  EXPECT_THROW(VaeConfig::load(Config::from_json({{"act_fn", "mish"}}, "test")), Error);
}

// ---- weights

TEST(AutoencoderKL, BindsEveryTensorOfTheCheckpoint) {
  WeightSource weights = WeightSource::open(vae_weights_path());
  AutoencoderKL::load(tiny_vae().config(), weights);
  EXPECT_TRUE(weights.unused().empty()) << "first unused: " << weights.unused().front();
}

TEST(AutoencoderKL, MissingTensorIsNamed) {
  const std::string dropped = "decoder.up_blocks.2.resnets.1.conv2.weight";
  try {
    load_rewritten("vae_missing", [&](const std::string& n) { return n == dropped ? std::string() : n; });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dropped), std::string::npos) << e.what();
  }
  const std::string dropped_attn = "encoder.mid_block.attentions.0.to_v.bias";
  try {
    load_rewritten("vae_missing", [&](const std::string& n) { return n == dropped_attn ? std::string() : n; });
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dropped_attn), std::string::npos) << e.what();
  }
}

TEST(AutoencoderKL, WithoutMidBlockAttentionNeedsNoAttentionWeights) {
  VaeConfig config = tiny_vae().config();
  config.mid_block_add_attention = false;
  SafeTensors original = SafeTensors::open(vae_weights_path());
  SafeTensorsWriter writer;
  for (const auto& [name, info] : original.tensors())
    if (name.find(".attentions.") == std::string::npos) writer.add(name, original.load_f32(name));
  std::string path = testing::scratch_dir("vae_no_attention") + "/diffusion_pytorch_model.safetensors";
  writer.write(path);
  WeightSource weights = WeightSource::open(path);
  AutoencoderKL vae = AutoencoderKL::load(config, weights);
  EXPECT_TRUE(weights.unused().empty());
  EXPECT_EQ(vae.decode(ramp({1, 4, 4, 4}, 1.0f)).shape(), (Shape{1, 3, 32, 32}));
}

// Older diffusers files name the mid-block attention query/key/value/proj_attn, and LDM conversions
// store those weights as 1x1 convolutions. Both must give bit-identical results.
TEST(AutoencoderKL, OldAttentionNamesAndConvShapedWeightsDecodeIdentically) {
  auto old_name = [](const std::string& n) {
    std::string r = replace_suffix_part(n, "attentions.0.to_q.", "attentions.0.query.");
    r = replace_suffix_part(r, "attentions.0.to_k.", "attentions.0.key.");
    r = replace_suffix_part(r, "attentions.0.to_v.", "attentions.0.value.");
    return replace_suffix_part(r, "attentions.0.to_out.0.", "attentions.0.proj_attn.");
  };
  auto as_conv = [](const std::string& n, const Tensor& t) {
    bool attn_weight = n.find(".attentions.0.") != std::string::npos && t.rank() == 2;
    return attn_weight ? t.reshape({t.dim(0), t.dim(1), 1, 1}) : t;
  };
  AutoencoderKL old_layout = load_rewritten("vae_old_names", old_name, as_conv);

  SafeTensors golden = SafeTensors::open(case_path("vae_decode_case0.safetensors"));
  Tensor z = golden.load_f32("vae_input");
  EXPECT_EQ(testing::compare(old_layout.decode(z), tiny_vae().decode(z)).max_abs, 0.0);

  Tensor image = ramp({1, 3, 64, 64}, 0.9f);
  LatentDistribution a = old_layout.encode(image), b = tiny_vae().encode(image);
  EXPECT_EQ(testing::compare(a.mean, b.mean).max_abs, 0.0);
  EXPECT_EQ(testing::compare(a.logvar, b.logvar).max_abs, 0.0);
}

// ---- golden decode / encode

void check_decode_case(int index, bool intermediates) {
  SafeTensors golden = SafeTensors::open(case_path("vae_decode_case" + std::to_string(index) + ".safetensors"));
  Tensor latents = golden.load_f32("latents"), z = golden.load_f32("vae_input");
  // The stored VAE input is the pipeline's latents / scaling_factor.
  Tensor scaled = latents.clone();
  kernels::scale_inplace(scaled, 1.0f / tiny_vae().config().scaling_factor);
  EXPECT_REL_LE(scaled, z, 1e-6);

  VaeTrace trace;
  Tensor image = tiny_vae().decode(z, intermediates ? &trace : nullptr);
  EXPECT_REL_LE(image, golden.load_f32("image"), 1e-4);
  if (!intermediates) return;
  for (const char* name : {"post_quant_conv", "decoder.conv_in", "decoder.mid_block", "decoder.up_blocks.0",
                           "decoder.conv_out"}) {
    SCOPED_TRACE(name);
    std::printf("  intermediate.%s\n", name);
    ASSERT_TRUE(trace.count(name));
    EXPECT_REL_LE(trace.at(name), golden.load_f32(std::string("intermediate.") + name), 1e-4);
  }
}

TEST(AutoencoderKL, DecodeMatchesGoldenCase0WithIntermediates) { check_decode_case(0, true); }
TEST(AutoencoderKL, DecodeMatchesGoldenCase1) { check_decode_case(1, false); }

// Against our PyTorch reference of diffusers' tiled_decode (tools/crosscheck/make_vae_tiled_case.py):
// 48 x 40 latents in 32-latent tiles, so 2 x 2 tiles with a partial last row and column, and
// every blend (vertical, horizontal, both).
TEST(AutoencoderKL, TiledDecodeMatchesTheReference) {
  SafeTensors ref = SafeTensors::open(testing::data_dir() + "/crosscheck/vae_tiled_decode.safetensors");
  const Tensor z = ref.load_f32("z"), expected = ref.load_f32("image");
  const int tile = static_cast<int>(ref.load_f32("tile_size")[0]);
  Tensor image = tiny_vae().decode_tiled(z, tile);
  ASSERT_EQ(image.shape(), expected.shape());
  EXPECT_REL_LE(image, expected, 1e-4);
}

TEST(AutoencoderKL, TiledDecodeOfOneTileIsThePlainDecode) {
  Tensor z = TorchCpuRng(5).randn({1, 4, 16, 24});
  EXPECT_REL_LE(tiny_vae().decode_tiled(z, 24 * tiny_vae().config().downscale()), tiny_vae().decode(z), 0.0);
  EXPECT_THROW(tiny_vae().decode_tiled(z, 20), Error);  // not a multiple of the downscale
  EXPECT_THROW(tiny_vae().decode_tiled(z, 8), Error);   // too small to overlap
}

void check_encode_case(int index, bool intermediates) {
  SafeTensors golden = SafeTensors::open(case_path("vae_encode_case" + std::to_string(index) + ".safetensors"));
  VaeTrace trace;
  LatentDistribution dist = tiny_vae().encode(golden.load_f32("image"), intermediates ? &trace : nullptr);
  EXPECT_REL_LE(dist.mean, golden.load_f32("mean"), 1e-4);
  EXPECT_REL_LE(dist.logvar, golden.load_f32("logvar"), 1e-4);
  EXPECT_REL_LE(dist.std(), golden.load_f32("std"), 1e-4);
  Tensor mean_scaled = dist.mean.clone();
  kernels::scale_inplace(mean_scaled, tiny_vae().config().scaling_factor);
  EXPECT_REL_LE(mean_scaled, golden.load_f32("mean_scaled"), 1e-4);
  if (!intermediates) return;
  for (const char* name : {"encoder.down_blocks.1", "encoder.down_blocks.2", "encoder.down_blocks.3",
                           "encoder.mid_block", "encoder.conv_norm_out", "encoder.conv_out", "quant_conv"}) {
    SCOPED_TRACE(name);
    std::printf("  intermediate.%s\n", name);
    ASSERT_TRUE(trace.count(name));
    EXPECT_REL_LE(trace.at(name), golden.load_f32(std::string("intermediate.") + name), 1e-4);
  }
  EXPECT_REL_LE(trace.at("quant_conv"), golden.load_f32("moments"), 1e-4);
}

TEST(AutoencoderKL, EncodeMatchesGoldenCase0WithIntermediates) { check_encode_case(0, true); }
TEST(AutoencoderKL, EncodeMatchesGoldenCase1) { check_encode_case(1, false); }

// ---- behaviour

// Up to float rounding: the convolution kernels block differently for batch 1 and 2.
TEST(AutoencoderKL, BatchElementsAreIndependent) {
  Tensor z = ramp({2, 4, 6, 5}, 2.0f);
  Tensor both = tiny_vae().decode(z);
  ASSERT_EQ(both.shape(), (Shape{2, 3, 48, 40}));
  for (int64_t b = 0; b < 2; ++b) EXPECT_REL_LE(tiny_vae().decode(z.slice0(b, b + 1).clone()), both.slice0(b, b + 1), 1e-5);

  Tensor image = ramp({2, 3, 48, 40}, 0.8f);
  LatentDistribution dist = tiny_vae().encode(image);
  ASSERT_EQ(dist.mean.shape(), (Shape{2, 4, 6, 5}));
  for (int64_t b = 0; b < 2; ++b) {
    LatentDistribution one = tiny_vae().encode(image.slice0(b, b + 1).clone());
    EXPECT_REL_LE(one.mean, dist.mean.slice0(b, b + 1), 1e-5);
    EXPECT_REL_LE(one.logvar, dist.logvar.slice0(b, b + 1), 1e-5);
  }
}

TEST(AutoencoderKL, EncodeHandlesSizesNotDivisibleByEight) {
  // Each downsampler pads (0, 1, 0, 1) and convolves 3x3 with stride 2: H -> floor((H - 2) / 2) + 1,
  // so 50 -> 25 -> 12 -> 6 and 36 -> 18 -> 9 -> 4, as in diffusers.
  LatentDistribution dist = tiny_vae().encode(ramp({1, 3, 50, 36}, 0.5f));
  EXPECT_EQ(dist.mean.shape(), (Shape{1, 4, 6, 4}));
}

TEST(AutoencoderKL, RejectsInputsWithTheWrongChannels) {
  EXPECT_THROW(tiny_vae().decode(Tensor({1, 3, 8, 8})), Error);
  EXPECT_THROW(tiny_vae().decode(Tensor({4, 8, 8})), Error);
  EXPECT_THROW(tiny_vae().encode(Tensor({1, 4, 64, 64})), Error);
}

TEST(LatentDistribution, SampleIsMeanPlusStdTimesNoise) {
  Tensor mean = Tensor::from_vector({1, 1, 1, 3}, {0.5f, -1.0f, 2.0f});
  Tensor logvar = Tensor::from_vector({1, 1, 1, 3}, {0.0f, std::log(4.0f), -2.0f});
  LatentDistribution d{mean, logvar};
  Tensor noise = Tensor::from_vector({1, 1, 1, 3}, {1.0f, -0.5f, 0.0f});
  Tensor s = d.sample(noise);
  EXPECT_FLOAT_EQ(s[0], 1.5f);
  EXPECT_FLOAT_EQ(s[1], -2.0f);
  EXPECT_FLOAT_EQ(s[2], 2.0f);
  EXPECT_FLOAT_EQ(d.std()[2], std::exp(-1.0f));
  EXPECT_THROW(d.sample(Tensor({1, 1, 1, 4})), Error);
}

}  // namespace
}  // namespace sdrt
