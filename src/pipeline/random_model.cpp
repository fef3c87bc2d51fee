#include "pipeline/random_model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/rng.h"
#include "models/clip_text_model.h"
#include "models/unet.h"
#include "models/vae.h"

namespace sdrt {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The published configs of runwayml/stable-diffusion-v1-5 and stabilityai/stable-diffusion-2-1,
// with the keys diffusers 0.27 / transformers 4.38 write.
struct Preset {
  json text_encoder, unet, vae, scheduler;
  std::string pad_token;
};

json unet_config(const json& heads, int cross_dim, bool linear_projection, bool upcast, int sample_size) {
  return {{"_class_name", "UNet2DConditionModel"}, {"_diffusers_version", "0.27.2"}, {"act_fn", "silu"},
          {"attention_head_dim", heads}, {"block_out_channels", {320, 640, 1280, 1280}},
          {"center_input_sample", false}, {"cross_attention_dim", cross_dim},
          {"down_block_types", {"CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"}},
          {"downsample_padding", 1}, {"dual_cross_attention", false}, {"flip_sin_to_cos", true}, {"freq_shift", 0},
          {"in_channels", 4}, {"layers_per_block", 2}, {"mid_block_scale_factor", 1}, {"norm_eps", 1e-05},
          {"norm_num_groups", 32}, {"num_class_embeds", nullptr}, {"only_cross_attention", false},
          {"out_channels", 4}, {"sample_size", sample_size}, {"upcast_attention", upcast},
          {"up_block_types", {"UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"}},
          {"use_linear_projection", linear_projection}};
}

json vae_config(int sample_size) {
  return {{"_class_name", "AutoencoderKL"}, {"_diffusers_version", "0.27.2"}, {"act_fn", "silu"},
          {"block_out_channels", {128, 256, 512, 512}},
          {"down_block_types", {"DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"}},
          {"in_channels", 3}, {"latent_channels", 4}, {"layers_per_block", 2}, {"norm_num_groups", 32},
          {"out_channels", 3}, {"sample_size", sample_size}, {"scaling_factor", 0.18215},
          {"up_block_types", {"UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"}}};
}

json text_encoder_config(int hidden, int intermediate, int heads, int layers, const char* act, int projection) {
  return {{"architectures", {"CLIPTextModel"}}, {"attention_dropout", 0.0}, {"bos_token_id", 0},
          {"eos_token_id", 2}, {"hidden_act", act}, {"hidden_size", hidden}, {"initializer_factor", 1.0},
          {"initializer_range", 0.02}, {"intermediate_size", intermediate}, {"layer_norm_eps", 1e-05},
          {"max_position_embeddings", 77}, {"model_type", "clip_text_model"}, {"num_attention_heads", heads},
          {"num_hidden_layers", layers}, {"pad_token_id", 1}, {"projection_dim", projection},
          {"torch_dtype", "float32"}, {"transformers_version", "4.38.0.dev0"}, {"vocab_size", 49408}};
}

json scheduler_config(const char* cls, const char* prediction) {
  return {{"_class_name", cls}, {"_diffusers_version", "0.27.2"}, {"beta_end", 0.012},
          {"beta_schedule", "scaled_linear"}, {"beta_start", 0.00085}, {"clip_sample", false},
          {"num_train_timesteps", 1000}, {"prediction_type", prediction}, {"set_alpha_to_one", false},
          {"skip_prk_steps", true}, {"steps_offset", 1}, {"trained_betas", nullptr}};
}

Preset preset(const std::string& like) {
  if (like == "sd15")
    return {text_encoder_config(768, 3072, 12, 12, "quick_gelu", 768), unet_config(8, 768, false, false, 64),
            vae_config(512), scheduler_config("PNDMScheduler", "epsilon"), "<|endoftext|>"};
  if (like == "sd21")
    return {text_encoder_config(1024, 4096, 16, 23, "gelu", 512), unet_config({5, 10, 20, 20}, 1024, true, true, 96),
            vae_config(768), scheduler_config("DDIMScheduler", "v_prediction"), "!"};
  fail("init-random: unknown preset '", like, "' (expected sd15 or sd21)");
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Matrices and kernels ~ N(0, 1/fan_in) keep activations O(1) layer after layer; norm scales are
// 1 and biases 0, as at initialisation. Each tensor has its own stream, seeded by its name.
TensorFactory random_init(uint64_t seed) {
  return [seed](const std::string& name, const Shape& shape) {
    if (shape.size() == 1) return Tensor::full(shape, name.ends_with(".weight") ? 1.0f : 0.0f);
    Tensor t = TorchCpuRng(seed ^ fnv1a(name)).randn(shape);
    float std = name.find("embedding") != std::string::npos
                    ? 1.0f
                    : 1.0f / std::sqrt(static_cast<float>(t.numel() / shape[0]));
    for (int64_t i = 0; i < t.numel(); ++i) t[i] *= std;
    return t;
  };
}

void write_json(const fs::path& path, const json& j) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) fail(path.string(), ": write failed");
}

// Records the tensors `build` asks for and writes them as one safetensors file.
template <typename Build>
int64_t write_component(const fs::path& file, const RandomModelOptions& opts, Build build) {
  WeightSource source = WeightSource::synthetic(random_init(opts.seed), file.string());
  build(source);
  SafeTensorsWriter writer;
  int64_t params = 0;
  for (const auto& [name, t] : source.made()) {
    writer.add(name, t, opts.dtype);
    params += t.numel();
  }
  writer.set_metadata("format", "pt");
  writer.set_metadata("description", "random weights written by sdrt init-random (not a trained model)");
  fs::create_directories(file.parent_path());
  writer.write(file.string());
  return params;
}

}  // namespace

std::vector<std::string> random_model_presets() { return {"sd15", "sd21"}; }

int64_t write_random_model(const RandomModelOptions& opts) {
  SDRT_CHECK(opts.dtype == DType::F16 || opts.dtype == DType::F32, "init-random: dtype must be f16 or f32");
  SDRT_CHECK(!opts.out_dir.empty(), "init-random: no output directory given");
  Preset p = preset(opts.like);
  fs::path out(opts.out_dir);
  for (const char* f : {"vocab.json", "merges.txt"})
    if (!fs::exists(fs::path(opts.tokenizer_dir) / f))
      fail(opts.tokenizer_dir, ": missing tokenizer file ", f, " to copy into the model");
  fs::create_directories(out / "tokenizer");
  for (const char* f : {"vocab.json", "merges.txt"})
    fs::copy_file(fs::path(opts.tokenizer_dir) / f, out / "tokenizer" / f, fs::copy_options::overwrite_existing);
  json special = {{"bos_token", "<|startoftext|>"}, {"eos_token", "<|endoftext|>"}, {"pad_token", p.pad_token},
                  {"unk_token", "<|endoftext|>"}};
  write_json(out / "tokenizer" / "special_tokens_map.json", special);
  json tok_cfg = special;
  tok_cfg.update({{"tokenizer_class", "CLIPTokenizer"}, {"model_max_length", 77}, {"do_lower_case", true}});
  write_json(out / "tokenizer" / "tokenizer_config.json", tok_cfg);

  write_json(out / "model_index.json",
             {{"_class_name", "StableDiffusionPipeline"}, {"_diffusers_version", "0.27.2"},
              {"feature_extractor", {nullptr, nullptr}}, {"requires_safety_checker", false},
              {"safety_checker", {nullptr, nullptr}}, {"scheduler", {"diffusers", p.scheduler["_class_name"]}},
              {"text_encoder", {"transformers", "CLIPTextModel"}}, {"tokenizer", {"transformers", "CLIPTokenizer"}},
              {"unet", {"diffusers", "UNet2DConditionModel"}}, {"vae", {"diffusers", "AutoencoderKL"}}});
  write_json(out / "scheduler" / "scheduler_config.json", p.scheduler);
  write_json(out / "text_encoder" / "config.json", p.text_encoder);
  write_json(out / "unet" / "config.json", p.unet);
  write_json(out / "vae" / "config.json", p.vae);

  int64_t params = 0;
  params += write_component(out / "text_encoder" / "model.safetensors", opts, [&](const WeightSource& w) {
    ClipTextModel::load(ClipTextConfig::load(Config::from_json(p.text_encoder, "text_encoder/config.json")), w);
  });
  params += write_component(out / "unet" / "diffusion_pytorch_model.safetensors", opts, [&](const WeightSource& w) {
    UNet2DConditionModel::load(UNetConfig::load(Config::from_json(p.unet, "unet/config.json")), w);
  });
  params += write_component(out / "vae" / "diffusion_pytorch_model.safetensors", opts, [&](const WeightSource& w) {
    AutoencoderKL::load(VaeConfig::load(Config::from_json(p.vae, "vae/config.json")), w);
  });
  return params;
}

}  // namespace sdrt
