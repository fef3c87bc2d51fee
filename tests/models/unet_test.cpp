#include "models/unet.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace sdrt {
namespace {

std::string tiny_unet_dir() { return testing::tiny_model_dir() + "/unet"; }
std::string tiny_weights_path() { return tiny_unet_dir() + "/diffusion_pytorch_model.safetensors"; }

nlohmann::json tiny_config_json() {
  std::ifstream in(tiny_unet_dir() + "/config.json");
  return nlohmann::json::parse(in);
}

UNetConfig config_from(const nlohmann::json& j) { return UNetConfig::load(Config::from_json(j, "test/config.json")); }

const UNet2DConditionModel& tiny_unet() {
  static const UNet2DConditionModel model = UNet2DConditionModel::load(tiny_unet_dir());
  return model;
}

struct UNetCase {
  Tensor sample, encoder_hidden_states, out;
  std::vector<float> timesteps;
  SafeTensors file;
};

UNetCase load_case(int i) {
  auto file = SafeTensors::open(testing::case_path(str("unet_case", i, ".safetensors")));
  Tensor t = file.load_f32("timestep");
  return {file.load_f32("sample"), file.load_f32("encoder_hidden_states"), file.load_f32("out"), t.to_vector(), file};
}

// Expects `f` to throw an sdrt::Error whose message contains every one of `parts`.
template <typename F>
void expect_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error mentioning '" << parts.front() << "'";
  } catch (const Error& e) {
    for (const auto& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

bool all_finite(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t[i])) return false;
  return true;
}

// ---- Golden cases ----------------------------------------------------------------------------

class UNetGolden : public ::testing::TestWithParam<int> {};

TEST_P(UNetGolden, MatchesDiffusers) {
  UNetCase c = load_case(GetParam());
  Tensor out = tiny_unet().forward(c.sample, c.timesteps, c.encoder_hidden_states);
  EXPECT_REL_LE(out, c.out, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(UNetGolden, UNetGolden, ::testing::Values(0, 1, 2, 3));

TEST(UNet, Case0IntermediatesMatchDiffusers) {
  UNetCase c = load_case(0);
  std::map<std::string, Tensor> trace;
  Tensor out = tiny_unet().forward(c.sample, c.timesteps, c.encoder_hidden_states, &trace);
  for (const char* name : {"time_proj", "time_embedding", "conv_in", "down_blocks.0", "down_blocks.1", "mid_block",
                           "up_blocks.0", "up_blocks.1", "conv_norm_out", "conv_out"}) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(trace.count(name)) << "not traced: " << name;
    Tensor expected = c.file.load_f32(str("intermediate.", name));
    std::printf("  %s:\n", name);
    EXPECT_REL_LE(trace.at(name), expected, 1e-4);
  }
  EXPECT_REL_LE(out, c.out, 1e-4);
}

TEST(UNet, SingleTimestepBroadcastsOverBatch) {
  UNetCase c = load_case(1);  // timesteps 500, 500
  Tensor out = tiny_unet().forward(c.sample, {c.timesteps[0]}, c.encoder_hidden_states);
  EXPECT_REL_LE(out, c.out, 1e-4);
}

TEST(UNet, ConfigOfTinyModel) {
  const UNetConfig& cfg = tiny_unet().config();
  EXPECT_EQ(cfg.num_attention_heads, (std::vector<int>{8, 8}));  // attention_head_dim 8 = 8 heads
  EXPECT_EQ(cfg.time_embed_dim, 128);
  EXPECT_EQ(cfg.down_transformer_layers, (std::vector<std::vector<int>>{{1, 1}, {1, 1}}));
  EXPECT_EQ(cfg.up_transformer_layers, (std::vector<std::vector<int>>{{1, 1, 1}, {1, 1, 1}}));
  EXPECT_EQ(cfg.mid_block_type, "UNetMidBlock2DCrossAttn");
}

// ---- Config variants on the tiny weights ------------------------------------------------------

// Copies the tiny checkpoint, letting `edit` rename, reshape, drop or add tensors.
std::string rewrite_tiny_weights(
    const std::string& name, const std::function<void(const std::string&, const Tensor&, SafeTensorsWriter&)>& edit) {
  auto src = SafeTensors::open(tiny_weights_path());
  SafeTensorsWriter out;
  for (const auto& [key, info] : src.tensors()) edit(key, src.load_f32(key), out);
  std::string path = testing::scratch_dir(name) + "/diffusion_pytorch_model.safetensors";
  out.write(path);
  return path;
}

bool is_projection(const std::string& key) {
  return key.find(".proj_in.weight") != std::string::npos || key.find(".proj_out.weight") != std::string::npos;
}

// SD 2.x style: Linear proj_in/proj_out and a per-level attention_head_dim list. The same
// weights as 2-D matrices compute exactly what the 1x1 convolutions compute.
TEST(UNet, LinearProjectionAndPerLevelHeadsMatchGolden) {
  auto j = tiny_config_json();
  j["use_linear_projection"] = true;
  j["attention_head_dim"] = {8, 8};
  std::string path = rewrite_tiny_weights("unet_linear_proj", [](const std::string& key, const Tensor& t, auto& out) {
    out.add(key, is_projection(key) ? t.reshape({t.dim(0), t.dim(1)}) : t);
  });
  auto model = UNet2DConditionModel::load(config_from(j), WeightSource::open(path));
  UNetCase c = load_case(2);
  EXPECT_REL_LE(model.forward(c.sample, c.timesteps, c.encoder_hidden_states), c.out, 1e-4);
}

TEST(UNet, ProjectionKindMustMatchCheckpoint) {
  auto j = tiny_config_json();
  j["use_linear_projection"] = true;  // but the tiny checkpoint holds 1x1 convolutions
  expect_error([&] { UNet2DConditionModel::load(config_from(j), WeightSource::open(tiny_weights_path())); },
               {"down_blocks.0.attentions.0.proj_in.weight", "[32, 32, 1, 1]", "expected [32, 32]"});
}

TEST(UNet, NumAttentionHeadsOverridesAttentionHeadDim) {
  auto j = tiny_config_json();
  j["attention_head_dim"] = {4, 16};
  j["num_attention_heads"] = 2;
  EXPECT_EQ(config_from(j).num_attention_heads, (std::vector<int>{2, 2}));
  j.erase("num_attention_heads");
  EXPECT_EQ(config_from(j).num_attention_heads, (std::vector<int>{4, 16}));
}

TEST(UNet, HeadCountChangesTheResult) {
  auto j = tiny_config_json();
  j["attention_head_dim"] = 1;
  auto model = UNet2DConditionModel::load(config_from(j), WeightSource::open(tiny_weights_path()));
  UNetCase c = load_case(0);
  Tensor out = model.forward(c.sample, c.timesteps, c.encoder_hidden_states);
  // The README measures ~20% for 1 head instead of 8.
  EXPECT_GT(testing::compare(out, c.out).rel(), 1e-2);
}

TEST(UNet, NullMidBlockSkipsIt) {
  auto j = tiny_config_json();
  j["mid_block_type"] = nullptr;
  auto weights = WeightSource::open(tiny_weights_path());
  auto model = UNet2DConditionModel::load(config_from(j), weights);
  for (const auto& name : weights.unused()) EXPECT_EQ(name.rfind("mid_block.", 0), 0u) << name;
  UNetCase c = load_case(0);
  Tensor out = model.forward(c.sample, c.timesteps, c.encoder_hidden_states);
  EXPECT_EQ(out.shape(), c.out.shape());
  EXPECT_TRUE(all_finite(out));
}

// ---- A different architecture, random weights ---------------------------------------------------

// Names and shapes written out from diffusers' module tree for one config, independently of the
// loader, with weights scaled so activations stay O(1).
class RandomWeights {
 public:
  void linear(const std::string& p, int64_t in, int64_t out, bool bias = true) {
    add(p + ".weight", {out, in}, 1.0f / std::sqrt(float(in)));
    if (bias) add(p + ".bias", {out}, 0.05f);
  }
  void conv(const std::string& p, int64_t in, int64_t out, int64_t k) {
    add(p + ".weight", {out, in, k, k}, 1.0f / std::sqrt(float(in * k * k)));
    add(p + ".bias", {out}, 0.05f);
  }
  void norm(const std::string& p, int64_t c) {
    add(p + ".weight", {c}, 0.1f, 1.0f);
    add(p + ".bias", {c}, 0.05f);
  }
  void resnet(const std::string& p, int64_t in, int64_t out, int64_t temb) {
    norm(p + ".norm1", in);
    conv(p + ".conv1", in, out, 3);
    linear(p + ".time_emb_proj", temb, out);
    norm(p + ".norm2", out);
    conv(p + ".conv2", out, out, 3);
    if (in != out) conv(p + ".conv_shortcut", in, out, 1);
  }
  // Transformer2DModel with Linear projections (use_linear_projection) and heads * head_dim == c.
  void transformer(const std::string& p, int64_t c, int layers, int64_t cross, bool only_cross) {
    norm(p + ".norm", c);
    linear(p + ".proj_in", c, c);
    for (int l = 0; l < layers; ++l) {
      std::string b = p + ".transformer_blocks." + std::to_string(l);
      for (const char* n : {".norm1", ".norm2", ".norm3"}) norm(b + n, c);
      attention(b + ".attn1", c, only_cross ? cross : c);
      attention(b + ".attn2", c, cross);
      linear(b + ".ff.net.0.proj", c, 8 * c);
      linear(b + ".ff.net.2", 4 * c, c);
    }
    linear(p + ".proj_out", c, c);
  }
  void attention(const std::string& p, int64_t c, int64_t ctx) {
    linear(p + ".to_q", c, c, false);
    linear(p + ".to_k", ctx, c, false);
    linear(p + ".to_v", ctx, c, false);
    linear(p + ".to_out.0", c, c);
  }
  void write(const std::string& path) const { writer_.write(path); }

 private:
  void add(const std::string& name, Shape shape, float scale, float offset = 0.0f) {
    Tensor t(shape);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (int64_t i = 0; i < t.numel(); ++i) t[i] = offset + scale * normal(rng_);
    writer_.add(name, t);
  }
  std::mt19937 rng_{1234};
  SafeTensorsWriter writer_;
};

// 3 levels, channels 32/48/64, per-level layers, heads, transformer depths and only_cross_attention.
nlohmann::json three_level_config() {
  return {{"_class_name", "UNet2DConditionModel"},
          {"in_channels", 4},
          {"out_channels", 3},
          {"block_out_channels", {32, 48, 64}},
          {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
          {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
          {"mid_block_type", "UNetMidBlock2DCrossAttn"},
          {"layers_per_block", {1, 2, 1}},
          {"attention_head_dim", {2, 4, 8}},
          {"transformer_layers_per_block", {1, 2, 1}},
          {"only_cross_attention", {false, true, false}},
          {"cross_attention_dim", 24},
          {"use_linear_projection", true},
          {"upcast_attention", true},
          {"norm_num_groups", 16},
          {"flip_sin_to_cos", true},
          {"freq_shift", 0}};
}

// The tensors diffusers would create for three_level_config().
void write_three_level_weights(const std::string& path) {
  const std::vector<int64_t> ch = {32, 48, 64};
  const std::vector<int> layers = {1, 2, 1}, depth = {1, 2, 1};
  const std::vector<bool> only_cross = {false, true, false}, cross_attn = {true, true, false};
  const int64_t temb = 128, cross = 24;
  RandomWeights w;
  w.conv("conv_in", 4, 32, 3);
  w.linear("time_embedding.linear_1", 32, temb);
  w.linear("time_embedding.linear_2", temb, temb);
  for (int i = 0; i < 3; ++i) {
    std::string p = "down_blocks." + std::to_string(i);
    for (int r = 0; r < layers[i]; ++r) {
      w.resnet(p + ".resnets." + std::to_string(r), r == 0 ? ch[std::max(i - 1, 0)] : ch[i], ch[i], temb);
      if (cross_attn[i]) w.transformer(p + ".attentions." + std::to_string(r), ch[i], depth[i], cross, only_cross[i]);
    }
    if (i < 2) w.conv(p + ".downsamplers.0.conv", ch[i], ch[i], 3);
  }
  w.resnet("mid_block.resnets.0", 64, 64, temb);
  w.transformer("mid_block.attentions.0", 64, 1, cross, false);
  w.resnet("mid_block.resnets.1", 64, 64, temb);
  // Up block j runs level 2-j. Resnet inputs (hidden + skip), worked out from the skip stack
  // conv_in 32 | down0: 32, ds 32 | down1: 48, 48, ds 48 | down2: 64, popped from the back.
  const std::vector<std::vector<int64_t>> up_in = {{64 + 64, 64 + 48}, {64 + 48, 48 + 48, 48 + 32}, {48 + 32, 32 + 32}};
  for (int j = 0; j < 3; ++j) {
    int level = 2 - j;
    std::string p = "up_blocks." + std::to_string(j);
    for (size_t r = 0; r < up_in[j].size(); ++r) {
      w.resnet(p + ".resnets." + std::to_string(r), up_in[j][r], ch[level], temb);
      if (cross_attn[level])
        w.transformer(p + ".attentions." + std::to_string(r), ch[level], depth[level], cross, only_cross[level]);
    }
    if (j < 2) w.conv(p + ".upsamplers.0.conv", ch[level], ch[level], 3);
  }
  w.norm("conv_norm_out", 32);
  w.conv("conv_out", 32, 3, 3);
  w.write(path);
}

TEST(UNet, ThreeLevelLinearProjectionArchitectureLoadsAndRuns) {
  std::string path = testing::scratch_dir("unet_three_level") + "/model.safetensors";
  write_three_level_weights(path);
  auto weights = WeightSource::open(path);
  auto model = UNet2DConditionModel::load(config_from(three_level_config()), weights);
  EXPECT_TRUE(weights.unused().empty()) << weights.unused().front();
  EXPECT_EQ(model.config().num_attention_heads, (std::vector<int>{2, 4, 8}));
  EXPECT_EQ(model.config().up_transformer_layers, (std::vector<std::vector<int>>{{1, 1}, {2, 2, 2}, {1, 1}}));

  Tensor sample({2, 4, 16, 12});
  Tensor context({2, 7, 24});
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < sample.numel(); ++i) sample[i] = normal(rng);
  for (int64_t i = 0; i < context.numel(); ++i) context[i] = normal(rng);
  std::map<std::string, Tensor> trace;
  Tensor out = model.forward(sample, {10.0f, 900.5f}, context, &trace);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 16, 12}));
  EXPECT_TRUE(all_finite(out));
  EXPECT_EQ(trace.at("down_blocks.2").shape(), (Shape{2, 64, 4, 3}));
  EXPECT_EQ(trace.at("up_blocks.1").shape(), (Shape{2, 48, 16, 12}));

  // Sizes that do not halve evenly at every level take diffusers' forwarded upsample sizes.
  EXPECT_EQ(model.forward(Tensor({2, 4, 18, 10}), {1.0f}, context).shape(), (Shape{2, 3, 18, 10}));
  expect_error([&] { model.forward(sample, {1.0f}, Tensor({2, 7, 32})); }, {"encoder_hidden_states", "[2, 7, 32]"});
}

// ---- Errors ----------------------------------------------------------------------------------

TEST(UNet, MissingTensorNamesTensorAndFile) {
  const std::string missing = "up_blocks.1.attentions.2.transformer_blocks.0.attn2.to_k.weight";
  std::string path = rewrite_tiny_weights("unet_missing", [&](const std::string& key, const Tensor& t, auto& out) {
    if (key != missing) out.add(key, t);
  });
  expect_error([&] { UNet2DConditionModel::load(config_from(tiny_config_json()), WeightSource::open(path)); },
               {missing, path, "[32, 32]"});
}

TEST(UNet, WrongShapeTensorReportsExpectedAndGot) {
  const std::string bad = "mid_block.resnets.1.conv1.weight";
  std::string path = rewrite_tiny_weights("unet_wrong_shape", [&](const std::string& key, const Tensor& t, auto& out) {
    out.add(key, key == bad ? Tensor({64, 64, 1, 1}) : t);
  });
  expect_error([&] { UNet2DConditionModel::load(config_from(tiny_config_json()), WeightSource::open(path)); },
               {bad, path, "[64, 64, 1, 1]", "expected [64, 64, 3, 3]"});
}

TEST(UNet, LoadFromDirWarnsAboutUnusedTensors) {
  std::string dir = testing::scratch_dir("unet_dir");
  std::filesystem::copy_file(tiny_unet_dir() + "/config.json", dir + "/config.json");
  auto src = SafeTensors::open(tiny_weights_path());
  SafeTensorsWriter out;
  for (const auto& [key, info] : src.tensors()) out.add(key, src.load_f32(key));
  out.add("extra.unexpected_tensor", Tensor({3}));
  out.write(dir + "/model.safetensors");  // the alternative file name
  ::testing::internal::CaptureStderr();
  auto model = UNet2DConditionModel::load(dir);
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("extra.unexpected_tensor"), std::string::npos) << err;
  EXPECT_EQ(model.config().block_out_channels, (std::vector<int64_t>{32, 64}));
  expect_error([&] { UNet2DConditionModel::load(testing::scratch_dir("unet_empty_dir")); }, {"config.json"});
}

TEST(UNet, UnsupportedConfigKeysAreNamed) {
  const std::vector<std::pair<std::string, nlohmann::json>> unsupported = {
      {"class_embed_type", "timestep"},
      {"addition_embed_type", "text_time"},
      {"time_cond_proj_dim", 256},
      {"resnet_time_scale_shift", "scale_shift"},
      {"time_embedding_type", "fourier"},
      {"dual_cross_attention", true},
      {"mid_block_type", "UNetMidBlock2DSimpleCrossAttn"},
      {"down_block_types", {"AttnDownBlock2D", "DownBlock2D"}},
      {"attention_type", "gated"},
      {"act_fn", "mish"},
  };
  for (const auto& [key, value] : unsupported) {
    SCOPED_TRACE(key);
    auto j = tiny_config_json();
    j[key] = value;
    expect_error([&] { config_from(j); }, {"'" + key + "'", "test/config.json"});
  }
  auto j = tiny_config_json();
  j["class_embed_type"] = "timestep";
  expect_error([&] { config_from(j); }, {"class_embed_type", "not supported yet"});
}

TEST(UNet, InconsistentConfigListsAreRejected) {
  auto j = tiny_config_json();
  j["attention_head_dim"] = {8, 8, 8};
  expect_error([&] { config_from(j); }, {"attention_head_dim", "2 entries"});
  j = tiny_config_json();
  j["up_block_types"] = {"UpBlock2D"};
  expect_error([&] { config_from(j); }, {"up_block_types"});
  j = tiny_config_json();
  j["transformer_layers_per_block"] = {{1, 1}, {1, 1}};
  expect_error([&] { config_from(j); }, {"reverse_transformer_layers_per_block"});
}

TEST(UNet, RejectsBadInputs) {
  UNetCase c = load_case(0);
  expect_error([&] { tiny_unet().forward(c.sample, {1.0f, 2.0f, 3.0f}, c.encoder_hidden_states); }, {"3 timesteps"});
  expect_error(
      [&] {
        tiny_unet().forward(Tensor({2, 3, 32, 32}), c.timesteps, c.encoder_hidden_states);
      },
      {"sample", "[2, 3, 32, 32]"});
  expect_error([&] { tiny_unet().forward(c.sample, c.timesteps, Tensor({1, 77, 32})); }, {"encoder_hidden_states"});
}

}  // namespace
}  // namespace sdrt
