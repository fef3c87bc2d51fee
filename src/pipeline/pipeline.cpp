#include "pipeline/pipeline.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>

#include "core/buffer_cache.h"
#include "core/dry_run.h"
#include "core/error.h"
#include "core/memory_stats.h"
#include "core/rng.h"
#include "kernels/kernels.h"
#include "models/component_files.h"
#include "schedulers/scheduler.h"

namespace sdrt {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string component_dir(const std::string& root, const std::string& name) {
  auto p = std::filesystem::path(root) / name;
  if (!std::filesystem::is_directory(p))
    fail(root, ": missing component folder '", name, "/' (expected a diffusers pipeline folder)");
  return p.string();
}

// Reads model_index.json and rejects pipelines whose components sdrt does not implement.
void check_model_index(const std::string& dir) {
  auto index_path = (std::filesystem::path(dir) / "model_index.json").string();
  if (!std::filesystem::exists(index_path))
    fail(dir, ": no model_index.json; expected a diffusers folder with model_index.json, tokenizer/, "
              "text_encoder/, unet/, vae/ and scheduler/");
  Config index = Config::load(index_path);
  const std::map<std::string, std::string> expected = {
      {"unet", "UNet2DConditionModel"}, {"vae", "AutoencoderKL"}, {"text_encoder", "CLIPTextModel"}};
  for (const auto& [key, cls] : expected) {
    if (!index.has(key)) continue;
    const auto& v = index.json()[key];
    if (v.is_array() && v.size() == 2 && v[1].is_string() && v[1].get<std::string>() != cls)
      index.bad_value(key, str("sdrt implements ", cls, " for this component"));
  }
}

// [n, ...] -> [n * times, ...] with each row repeated `times` times in place (diffusers' repeat/view).
Tensor repeat_rows(const Tensor& x, int times) {
  if (times == 1) return x;
  Shape s = x.shape();
  int64_t rows = s[0], row = x.numel() / rows;
  s[0] *= times;
  Tensor y = Tensor::empty(s);
  for (int64_t r = 0; r < rows; ++r)
    for (int t = 0; t < times; ++t)
      std::copy(x.data() + r * row, x.data() + (r + 1) * row, y.data() + (r * times + t) * row);
  return y;
}

Tensor concat_rows(const Tensor& a, const Tensor& b) {
  Shape s = a.shape();
  s[0] += b.dim(0);
  Tensor y = Tensor::empty(s);
  std::copy(a.data(), a.data() + a.numel(), y.data());
  std::copy(b.data(), b.data() + b.numel(), y.data() + a.numel());
  return y;
}

// noise_pred = uncond + g * (text - uncond), for a batch laid out [uncond x n, text x n].
Tensor apply_guidance(const Tensor& batch_out, float guidance) {
  int64_t n = batch_out.dim(0) / 2;
  Tensor uncond = batch_out.slice0(0, n), text = batch_out.slice0(n, 2 * n);
  Tensor out = Tensor::empty(uncond.shape());
  for (int64_t i = 0; i < out.numel(); ++i) out[i] = uncond[i] + guidance * (text[i] - uncond[i]);
  return out;
}

// [N, 3, H, W] decoder output -> [N, H, W, 3] in [0, 1].
Tensor to_nhwc_unit_range(const Tensor& img) {
  int64_t n = img.dim(0), c = img.dim(1), h = img.dim(2), w = img.dim(3);
  Tensor out = Tensor::empty({n, h, w, c});
  for (int64_t b = 0; b < n; ++b)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t p = 0; p < h * w; ++p) {
        float v = img[(b * c + ch) * h * w + p] / 2.0f + 0.5f;
        out[(b * h * w + p) * c + ch] = std::fmin(std::fmax(v, 0.0f), 1.0f);
      }
  return out;
}

const std::map<std::string, std::string>& scheduler_class_names() {
  static const std::map<std::string, std::string> names = {
      {"PNDMScheduler", "pndm"},   {"DDIMScheduler", "ddim"},
      {"EulerDiscreteScheduler", "euler"}, {"EulerAncestralDiscreteScheduler", "euler_a"},
      {"DPMSolverMultistepScheduler", "dpmpp_2m"}, {"LMSDiscreteScheduler", "lms"},
      {"LCMScheduler", "lcm"}};
  return names;
}

}  // namespace

void validate_params(const GenerateParams& p, int vae_scale) {
  SDRT_CHECK(p.steps >= 1, "--steps must be at least 1, got ", p.steps);
  SDRT_CHECK(p.steps <= 1000, "--steps ", p.steps, " exceeds the 1000 training timesteps");
  SDRT_CHECK(p.images >= 1 && p.images <= 64, "--images must be between 1 and 64, got ", p.images);
  for (auto [name, v] : {std::pair{"--width", p.width}, std::pair{"--height", p.height}}) {
    SDRT_CHECK(v >= 0, name, " must be positive, got ", v);
    SDRT_CHECK(v % vae_scale == 0, name, " must be a multiple of ", vae_scale, ", got ", v);
    SDRT_CHECK(v <= 4096, name, " ", v, " exceeds the 4096-pixel limit");
  }
  SDRT_CHECK(p.clip_skip >= 1, "--clip-skip must be at least 1, got ", p.clip_skip);
  SDRT_CHECK(p.vae_tile_size == 0 || (p.vae_tile_size >= 4 * vae_scale && p.vae_tile_size % vae_scale == 0),
             "--vae-tile must be 0 (off) or a multiple of ", vae_scale, " of at least ", 4 * vae_scale, ", got ",
             p.vae_tile_size);
  SDRT_CHECK(std::isfinite(p.guidance), "--guidance must be finite");
}

Residency residency_from_name(const std::string& name) {
  if (name == "resident") return Residency::resident;
  if (name == "per-stage") return Residency::per_stage;
  fail("unknown residency '", name, "': expected resident or per-stage");
}

const char* residency_name(Residency r) { return r == Residency::resident ? "resident" : "per-stage"; }

StableDiffusionPipeline StableDiffusionPipeline::load(const std::string& dir, kernels::Precision precision,
                                                      Residency residency) {
  auto t0 = Clock::now();
  kernels::require_precision_supported(precision);  // before any weights are read
  check_model_index(dir);
  StableDiffusionPipeline p;
  p.compiled_arenas_ = std::make_shared<CompiledArenas>();
  p.dir_ = dir;
  p.precision_ = precision;
  p.residency_ = residency;
  auto config_of = [&dir](const char* component) {
    return Config::load((std::filesystem::path(component_dir(dir, component)) / "config.json").string());
  };
  p.text_encoder_config_ = ClipTextConfig::load(config_of("text_encoder"));
  p.unet_config_ = UNetConfig::load(config_of("unet"));
  p.vae_config_ = VaeConfig::load(config_of("vae"));
  p.tokenizer_ = std::make_shared<const ClipTokenizer>(ClipTokenizer::load(component_dir(dir, "tokenizer")));
  p.scheduler_config_ = std::make_shared<const Config>(
      Config::load((std::filesystem::path(component_dir(dir, "scheduler")) / "scheduler_config.json").string()));

  const auto& ucfg = p.unet_config_;
  int64_t hidden = p.text_encoder_config_.hidden_size;
  for (int64_t d : ucfg.cross_attention_dim)
    SDRT_CHECK(d == hidden, dir, ": unet cross_attention_dim ", d, " does not match the text encoder's hidden_size ",
               hidden);
  SDRT_CHECK(ucfg.in_channels == p.vae_config_.latent_channels, dir, ": unet in_channels ", ucfg.in_channels,
             " does not match the VAE's latent_channels ", p.vae_config_.latent_channels);

  if (residency == Residency::resident) {
    // Each load frees what packing let go of (loaded_or_load), so the RSS growth is the weights.
    int64_t rss = current_rss_bytes();
    auto rss_growth = [&rss] {
      int64_t now = current_rss_bytes(), growth = now - rss;
      rss = now;
      return growth;
    };
    double unused = 0;
    p.text_encoder_ = p.text_encoder_for_stage(unused);
    p.load_memory_.text_encoder = rss_growth();
    p.unet_ = p.unet_for_stage(unused);
    p.load_memory_.unet = rss_growth();
    p.vae_ = p.vae_for_stage(unused);
    p.load_memory_.vae = rss_growth();
  } else {
    // Weights load stage by stage later; a folder without them should fail now, not mid-run.
    for (const char* component : {"text_encoder", "unet", "vae"}) find_weights_file(component_dir(dir, component));
  }
  p.load_s_ = seconds_since(t0);
  return p;
}

namespace {

template <class Model>
std::shared_ptr<const Model> loaded_or_load(const std::shared_ptr<const Model>& resident, const std::string& dir,
                                            kernels::Precision precision, double& load_s) {
  if (resident) return resident;
  auto t0 = Clock::now();
  auto model = std::make_shared<const Model>(Model::load(dir, precision));
  // Packing lets go of each layer's unpacked float32 weights, and their buffers go to the
  // activation cache: free them now, or they stay resident (~0.5 GB for SD 1.5).
  BufferCache::instance().release();
  load_s += seconds_since(t0);
  return model;
}

template <class Model>
const Model& resident_model(const std::shared_ptr<const Model>& model, const char* name) {
  SDRT_CHECK(model, "the pipeline keeps no ", name, " between generations (Residency::per_stage)");
  return *model;
}

}  // namespace

std::shared_ptr<const ClipTextModel> StableDiffusionPipeline::text_encoder_for_stage(double& load_s) const {
  return loaded_or_load(text_encoder_, component_dir(dir_, "text_encoder"), precision_, load_s);
}

std::shared_ptr<const UNet2DConditionModel> StableDiffusionPipeline::unet_for_stage(double& load_s) const {
  return loaded_or_load(unet_, component_dir(dir_, "unet"), precision_, load_s);
}

std::shared_ptr<const AutoencoderKL> StableDiffusionPipeline::vae_for_stage(double& load_s) const {
  return loaded_or_load(vae_, component_dir(dir_, "vae"), precision_, load_s);
}

const UNet2DConditionModel& StableDiffusionPipeline::unet() const { return resident_model(unet_, "UNet"); }
const AutoencoderKL& StableDiffusionPipeline::vae() const { return resident_model(vae_, "VAE"); }
const ClipTextModel& StableDiffusionPipeline::text_encoder() const {
  return resident_model(text_encoder_, "text encoder");
}

std::string StableDiffusionPipeline::default_scheduler() const {
  std::string cls = scheduler_config_->get<std::string>("_class_name", "PNDMScheduler");
  auto it = scheduler_class_names().find(cls);
  if (it == scheduler_class_names().end())
    scheduler_config_->bad_value("_class_name", "not a scheduler sdrt implements; pass --scheduler");
  if (it->second == "dpmpp_2m" && scheduler_config_->get<bool>("use_karras_sigmas", false)) return "dpmpp_2m_karras";
  return it->second;
}

int StableDiffusionPipeline::default_width() const {
  int s = unet_config_.sample_size > 0 ? unet_config_.sample_size : 64;
  return s * vae_config_.downscale();
}

int StableDiffusionPipeline::default_height() const { return default_width(); }

struct StableDiffusionPipeline::CompiledArenas {
  std::mutex mutex;
  // By input shape.
  std::map<Shape, std::shared_ptr<ActivationArena>> unet, vae_decoder;
};

std::shared_ptr<ActivationArena> StableDiffusionPipeline::compiled_arena(Stage stage, const Shape& input) const {
  std::lock_guard lock(compiled_arenas_->mutex);
  auto& arenas = stage == Stage::unet ? compiled_arenas_->unet : compiled_arenas_->vae_decoder;
  auto it = arenas.find(input);
  return it == arenas.end() ? nullptr : it->second;
}

void StableDiffusionPipeline::compile_arena(Stage stage, const Shape& input, const std::function<void()>& run) const {
  auto arena = std::make_shared<ActivationArena>();
  {
    ActivationArena::Run record(*arena);
    run();
  }
  std::lock_guard lock(compiled_arenas_->mutex);
  (stage == Stage::unet ? compiled_arenas_->unet : compiled_arenas_->vae_decoder)[input] = arena;
}

namespace {

StageTimes::ArenaUse arena_use(const ActivationArena& arena, const ActivationArena::Counts& before) {
  const ActivationArena::Counts now = arena.counts();
  return {arena.block_bytes(), now.served - before.served, now.fallbacks - before.fallbacks};
}

}  // namespace

Shape StableDiffusionPipeline::latent_shape_for(int images, int width, int height) const {
  const int scale = vae_config_.downscale();
  return {images, unet_config_.in_channels, (height ? height : default_height()) / scale,
          (width ? width : default_width()) / scale};
}

Tensor StableDiffusionPipeline::encode_prompt(const std::string& prompt, int images, int clip_skip) const {
  double load_s = 0;
  return encode_prompt(*text_encoder_for_stage(load_s), prompt, images, clip_skip);
}

Tensor StableDiffusionPipeline::encode_prompt(const ClipTextModel& text_encoder, const std::string& prompt, int images,
                                              int clip_skip) const {
  int max_len = static_cast<int>(text_encoder.config().max_position_embeddings);
  auto ids = tokenizer_->encode(prompt, max_len);
  Tensor embeds = text_encoder.forward(ids, 1, clip_skip);
  return repeat_rows(embeds, images);
}

double StableDiffusionPipeline::compile(const StaticShape& shape) const {
  SDRT_CHECK(residency_ == Residency::resident,
             "compile: a per-stage pipeline frees each model after its stage, so nothing compiled would be kept; "
             "load it with Residency::resident");
  auto t0 = Clock::now();
  GenerateParams p;
  p.images = shape.images;
  p.width = shape.width;
  p.height = shape.height;
  validate_params(p, vae_config_.downscale());
  const Shape latent = latent_shape_for(shape.images, shape.width, shape.height);
  const int64_t rows = latent[0] * (shape.guided ? 2 : 1);
  // The same calls generate() makes, with the same shapes: the prompt (always one 77-token
  // sequence), one batched UNet call, and the decoder, which always runs one image at a time.
  Tensor context = repeat_rows(encode_prompt(*text_encoder_, "", 1, 1), static_cast<int>(rows));
  std::vector<float> timesteps(static_cast<size_t>(rows), 999.0f);
  const Shape unet_input{rows, latent[1], latent[2], latent[3]}, vae_input{1, latent[1], latent[2], latent[3]};
  // The inputs exist before the recording starts, as generate()'s do.
  const Tensor unet_zeros(unet_input), vae_zeros(vae_input);
  // Plans and allocations depend on shapes only: the heavy kernels need not compute anything.
  DryRun dry_run;
  compile_arena(Stage::unet, unet_input, [&] { unet_->forward(unet_zeros, timesteps, context); });
  BufferCache::instance().release();
  compile_arena(Stage::vae_decoder, vae_input, [&] { vae_->decode(vae_zeros); });
  BufferCache::instance().release();
  return seconds_since(t0);
}

GenerateResult StableDiffusionPipeline::generate(const GenerateParams& params, const StepCallback& on_step) const {
  auto t_start = Clock::now();
  const int scale = vae_config_.downscale();
  validate_params(params, scale);
  const Shape latent_shape = latent_shape_for(params.images, params.width, params.height);
  const int64_t n = latent_shape[0], channels = latent_shape[1];

  GenerateResult result;
  result.scheduler = params.scheduler.empty() ? default_scheduler() : params.scheduler;
  auto scheduler = make_scheduler(result.scheduler, *scheduler_config_);
  scheduler->set_timesteps(params.steps);
  const auto& timesteps = scheduler->timesteps();

  // Text conditioning: [uncond x n, text x n] when guided, so one batched UNet call serves both.
  bool guided = params.guidance > 1.0f;
  // The stage's peak RSS, when asked for: the counter is reset as the stage starts.
  const bool measure_memory = params.measure_stage_memory && reset_peak_rss();
  auto stage_peak = [&]() -> int64_t { return measure_memory ? peak_rss_bytes() : 0; };
  double& load_s = result.times.load_s;
  Tensor context;
  {
    auto text_encoder = text_encoder_for_stage(load_s);
    auto t0 = Clock::now();
    context = encode_prompt(*text_encoder, params.prompt, params.images, params.clip_skip);
    if (guided)
      context = concat_rows(encode_prompt(*text_encoder, params.negative_prompt, params.images, params.clip_skip),
                            context);
    result.times.text_encoder_s = seconds_since(t0);
  }
  result.times.text_encoder_peak_rss = stage_peak();
  if (measure_memory) reset_peak_rss();

  TorchCpuRng rng(params.seed);
  Tensor latents;
  if (params.latents) {
    SDRT_CHECK(params.latents->shape() == latent_shape, "--latents: tensor has shape ",
               shape_str(params.latents->shape()), ", expected ", shape_str(latent_shape), " for ", params.images,
               " image(s) at ", latent_shape[3] * scale, "x", latent_shape[2] * scale);
    latents = params.latents->clone();
  } else {
    latents = rng.randn(latent_shape);
  }
  kernels::scale_inplace(latents, scheduler->init_noise_sigma());
  if (params.noise) {
    Shape expected{static_cast<int64_t>(timesteps.size()), n, channels, latent_shape[2], latent_shape[3]};
    SDRT_CHECK(params.noise->shape() == expected, "--noise: tensor has shape ", shape_str(params.noise->shape()),
               ", expected ", shape_str(expected), " (one noise sample per step)");
  }

  auto unet = unet_for_stage(load_s);
  const Shape unet_input{n * (guided ? 2 : 1), channels, latent_shape[2], latent_shape[3]};
  std::shared_ptr<ActivationArena> arena = compiled_arena(Stage::unet, unet_input);
  if (!arena) arena = std::make_shared<ActivationArena>();  // the first step plans it for this generation
  const ActivationArena::Counts unet_before = arena->counts();
  for (size_t i = 0; i < timesteps.size(); ++i) {
    auto t_step = Clock::now();
    Tensor scaled = scheduler->scale_model_input(latents, i);
    Tensor model_in = guided ? concat_rows(scaled, scaled) : scaled;
    std::vector<float> t(static_cast<size_t>(model_in.dim(0)), static_cast<float>(timesteps[i]));
    Tensor out;
    {
      ActivationArena::Run run(*arena);
      out = unet->forward(model_in, t, context);
    }
    Tensor noise_pred = guided ? apply_guidance(out, params.guidance) : out;
    Tensor step_noise;
    if (scheduler->needs_noise(i)) {
      step_noise = params.noise ? params.noise->slice0(static_cast<int64_t>(i), static_cast<int64_t>(i) + 1)
                                      .reshape(latent_shape)
                                : rng.randn(latent_shape);
    }
    latents = scheduler->step(noise_pred, i, latents, step_noise.defined() ? &step_noise : nullptr);
    result.times.unet_step_s.push_back(seconds_since(t_step));
    if (on_step)
      on_step(StepInfo{static_cast<int>(i) + 1, static_cast<int>(timesteps.size()), result.times.unet_step_s.back(),
                       scaled, noise_pred, latents});
  }
  result.latents = latents;
  result.times.unet_peak_rss = stage_peak();
  result.times.unet_arena = arena_use(*arena, unet_before);
  arena.reset();  // a generation's own arena goes now; a compiled one stays with the pipeline

  // The UNet's cached activation buffers are the wrong sizes for the decoder: free them first, and
  // the UNet itself unless it stays resident.
  unet.reset();
  BufferCache::instance().release();
  if (measure_memory) reset_peak_rss();
  auto vae = vae_for_stage(load_s);
  // Decode one image at a time: identical results, a fraction of the peak activation memory.
  auto t0 = Clock::now();
  const auto& vcfg = vae->config();
  std::vector<Tensor> decoded;
  const Shape vae_input{1, channels, latent_shape[2], latent_shape[3]};
  std::shared_ptr<ActivationArena> vae_arena = compiled_arena(Stage::vae_decoder, vae_input);
  const ActivationArena::Counts vae_before = vae_arena ? vae_arena->counts() : ActivationArena::Counts{};
  for (int64_t b = 0; b < n; ++b) {
    Tensor z = latents.slice0(b, b + 1).clone();
    for (int64_t i = 0; i < z.numel(); ++i) z[i] = z[i] / vcfg.scaling_factor + vcfg.shift_factor;
    Tensor image;
    {
      std::optional<ActivationArena::Run> run;
      if (vae_arena && params.vae_tile_size == 0) run.emplace(*vae_arena);
      image = params.vae_tile_size ? vae->decode_tiled(z, params.vae_tile_size) : vae->decode(z);
    }
    decoded.push_back(to_nhwc_unit_range(image));
  }
  if (vae_arena) result.times.vae_arena = arena_use(*vae_arena, vae_before);
  result.images = Tensor::empty({n, decoded[0].dim(1), decoded[0].dim(2), 3});
  for (int64_t b = 0; b < n; ++b)
    std::copy(decoded[b].data(), decoded[b].data() + decoded[b].numel(), result.images.data() + b * decoded[b].numel());
  result.times.vae_decode_s = seconds_since(t0);
  result.times.vae_decode_peak_rss = stage_peak();
  // An idle pipeline holds its weights, not the decoder's GB of activation buffers; the next
  // generation's first UNet step refills the cache.
  vae.reset();
  BufferCache::instance().release();
  result.times.total_s = seconds_since(t_start) - load_s;
  return result;
}

}  // namespace sdrt
