// StableDiffusionPipeline: prompt -> CLIP text encoder -> guided UNet denoising loop with a
// scheduler -> VAE decode -> images. Mirrors diffusers' pipeline step for step, so given the
// same latents (and ancestral noise) it reproduces diffusers' images.
//
// The loaded models are immutable; generate() keeps all per-run state on its own stack, so
// one loaded pipeline can serve several generations.
//
// Residency decides whether the models stay loaded between generations or only for their stage.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/activation_arena.h"
#include "core/tensor.h"
#include "io/config.h"
#include "models/clip_text_model.h"
#include "models/unet.h"
#include "models/vae.h"
#include "tokenizer/clip_tokenizer.h"

namespace sdrt {

struct GenerateParams {
  std::string prompt;
  std::string negative_prompt;
  int steps = 20;
  float guidance = 7.5f;  // <= 1 skips the unconditional pass
  std::string scheduler;  // empty: the model's own scheduler_config.json class
  uint64_t seed = 0;
  int width = 0, height = 0;  // 0: the model's native size (unet sample_size x VAE scale)
  int images = 1;
  int clip_skip = 1;  // 1 = last layer (A1111 convention)
  // Decode in tiles of this many pixels (AutoencoderKL::decode_tiled), bounding the decoder's
  // memory to one tile's; 0 decodes whole. diffusers' enable_vae_tiling() uses the VAE's sample_size.
  int vae_tile_size = 0;
  // Fill StageTimes' peak RSS per stage. Resets the process's peak-RSS counter at each stage
  // (reset_peak_rss), so it is for benchmarks, not for a process that reports its own peak.
  bool measure_stage_memory = false;
  // Exact replay: unit-normal latents [images, C, h, w] (scaled by init_noise_sigma like diffusers)
  // and per-step ancestral noise [steps, images, C, h, w]. Unset: drawn from the seeded generator.
  std::optional<Tensor> latents;
  std::optional<Tensor> noise;
};

struct StageTimes {
  double load_s = 0;  // loading models inside generate() (Residency::per_stage); not in the stage times
  double text_encoder_s = 0;
  std::vector<double> unet_step_s;  // one entry per model evaluation (guided batch)
  double vae_decode_s = 0;
  double total_s = 0;  // the whole generation, less load_s
  // With GenerateParams::measure_stage_memory: the peak RSS during each stage, in bytes (0: not measured).
  int64_t text_encoder_peak_rss = 0, unet_peak_rss = 0, vae_decode_peak_rss = 0;
  // The UNet calls' activations come from a planned arena (ActivationArena): the first call of a
  // shape records, later ones (and every one, after compile()) take their buffers from its block.
  // The decoder has one only for a compiled shape.
  struct ArenaUse {
    size_t block_bytes = 0;
    size_t served = 0;    // buffers this generation took from the block
    size_t fallback = 0;  // replayed buffers that went to the buffer cache instead
  };
  ArenaUse unet_arena, vae_arena;
};

struct GenerateResult {
  Tensor images;  // [images, H, W, 3] float in [0, 1] (NHWC, like diffusers' output_type="np")
  Tensor latents;  // final latents [images, C, h, w]
  StageTimes times;
  std::string scheduler;  // the scheduler actually used
};

// What a step callback sees after each denoising step.
struct StepInfo {
  int step = 0;  // from 1
  int total = 0;
  double seconds = 0;
  const Tensor& model_input;  // scale_model_input(latents, t), before the guidance batch is formed
  const Tensor& noise_pred;   // after classifier-free guidance
  const Tensor& latents;      // the scheduler's output
};
using StepCallback = std::function<void(const StepInfo&)>;

// RSS growth while each component loaded, in bytes: its weights as held (packed), plus whatever
// the allocator kept.
struct LoadMemory {
  int64_t text_encoder = 0, unet = 0, vae = 0;
};

// A generation size, for StableDiffusionPipeline::compile.
struct StaticShape {
  int images = 1;
  int width = 0, height = 0;  // 0: the model's native size
  bool guided = true;         // guidance > 1: every UNet call runs 2 x images rows
};

// Where the models live between generations.
enum class Residency {
  // load() loads all three and they stay: repeated generations pay no load time (server, bench).
  resident,
  // Each model loads when its stage starts and is freed when the stage ends, so the peak RSS is the
  // largest stage's (the UNet's weights plus its activations) instead of every model's weights plus
  // the largest stage's activations. For one-shot runs, which load each model once anyway.
  per_stage,
};
Residency residency_from_name(const std::string& name);  // "resident" | "per-stage"
const char* residency_name(Residency r);

class StableDiffusionPipeline {
 public:
  // `dir` is a diffusers folder: model_index.json, tokenizer/, text_encoder/, unet/, vae/, scheduler/.
  // `precision` is what the models' convolutions, linear layers and (UNet, VAE) attention products
  // compute in (kernels::Precision). Configs are read and checked now in either residency, so a
  // bad folder fails here, not halfway through a generation.
  static StableDiffusionPipeline load(const std::string& dir, kernels::Precision precision = kernels::Precision::f32,
                                      Residency residency = Residency::resident);

  GenerateResult generate(const GenerateParams& params, const StepCallback& on_step = nullptr) const;

  // Static shapes: creates every kernel plan (oneDNN primitive, weight layout) that generations of
  // `shape` need now, not in the first generation's steps, by running the text encoder, then one
  // UNet call and one VAE decode on zeros as a dry run (core/dry_run.h: the heavy kernels plan
  // and allocate but compute nothing), and plans the UNet's and the decoder's activation arenas
  // for the shape, which the pipeline keeps (that memory stays held): the UNet calls and decodes of
  // such generations create no plan and allocate no large buffer.
  // Generations of other shapes still work and plan as they go. Resident pipelines only. Returns
  // the seconds taken.
  double compile(const StaticShape& shape) const;

  // Prompt -> [images, 77, hidden] conditioning (repeated per image).
  Tensor encode_prompt(const std::string& prompt, int images, int clip_skip) const;

  const std::string& dir() const { return dir_; }
  // The loaded models (Residency::resident only; per_stage holds none between generations).
  const UNet2DConditionModel& unet() const;
  const AutoencoderKL& vae() const;
  const ClipTextModel& text_encoder() const;
  const UNetConfig& unet_config() const { return unet_config_; }
  const VaeConfig& vae_config() const { return vae_config_; }
  const ClipTextConfig& text_encoder_config() const { return text_encoder_config_; }
  const ClipTokenizer& tokenizer() const { return *tokenizer_; }
  const Config& scheduler_config() const { return *scheduler_config_; }
  // pndm, ddim, euler, ... from scheduler_config.json's _class_name.
  std::string default_scheduler() const;
  int default_width() const;
  int default_height() const;
  double load_seconds() const { return load_s_; }
  kernels::Precision precision() const { return precision_; }
  Residency residency() const { return residency_; }
  // Residency::resident: what each model added to the RSS as load() loaded it (per_stage: zeros).
  const LoadMemory& load_memory() const { return load_memory_; }

 private:
  // The model itself when resident, else a fresh load that the caller's stage frees.
  std::shared_ptr<const ClipTextModel> text_encoder_for_stage(double& load_s) const;
  std::shared_ptr<const UNet2DConditionModel> unet_for_stage(double& load_s) const;
  std::shared_ptr<const AutoencoderKL> vae_for_stage(double& load_s) const;
  Tensor encode_prompt(const ClipTextModel& text_encoder, const std::string& prompt, int images, int clip_skip) const;
  // [images, latent channels, h, w] for a request's size (0: the model's native size).
  Shape latent_shape_for(int images, int width, int height) const;
  // The activation arenas compile() plans, by stage and input shape.
  enum class Stage { unet, vae_decoder };
  std::shared_ptr<ActivationArena> compiled_arena(Stage stage, const Shape& input) const;  // or null
  // Records `run` into a new arena and keeps it for (stage, input).
  void compile_arena(Stage stage, const Shape& input, const std::function<void()>& run) const;

  std::string dir_;
  ClipTextConfig text_encoder_config_;
  UNetConfig unet_config_;
  VaeConfig vae_config_;
  std::shared_ptr<const ClipTokenizer> tokenizer_;
  std::shared_ptr<const ClipTextModel> text_encoder_;
  std::shared_ptr<const UNet2DConditionModel> unet_;
  std::shared_ptr<const AutoencoderKL> vae_;
  std::shared_ptr<const Config> scheduler_config_;
  double load_s_ = 0;
  kernels::Precision precision_ = kernels::Precision::f32;
  Residency residency_ = Residency::resident;
  LoadMemory load_memory_;
  // compile()'s UNet arenas by input shape; shared so that the pipeline stays movable.
  struct CompiledArenas;
  std::shared_ptr<CompiledArenas> compiled_arenas_;
};

// Validates what a user may ask for before any work is done: sizes, steps, images.
void validate_params(const GenerateParams& p, int vae_scale);

}  // namespace sdrt
