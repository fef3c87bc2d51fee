#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>

#include "commands.h"
#include "core/error.h"
#include "core/memory_stats.h"
#include "core/parallel.h"
#include "io/png.h"
#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "progress.h"
#include "schedulers/scheduler.h"

namespace sdrt::app {

namespace {

struct GenerateOptions {
  std::string model = default_model_dir();
  GenerateParams params;
  bool seed_given = false;
  std::string output = "sdrt-output.png";
  std::string latents_file, noise_file, output_tensor;
  int threads = 0;
  std::string precision = "fp32";
  // One generation loads each model once either way; per-stage frees each after its stage.
  std::string residency = "per-stage";
  bool quiet = false;
};

Tensor load_named(const std::string& path, const std::string& name) {
  auto st = SafeTensors::open(path);
  if (!st.contains(name)) fail(path, ": has no tensor '", name, "'");
  return st.load_f32(name).clone();  // owns its memory after the mapping closes
}

// out.png -> out.png for one image, out-0.png, out-1.png, ... for several.
std::string image_path(const std::string& output, int index, int count) {
  if (count == 1) return output;
  std::filesystem::path p(output);
  return (p.parent_path() / (p.stem().string() + "-" + std::to_string(index) + p.extension().string())).string();
}

// A1111's "parameters" text, which image viewers and UIs read back.
std::string parameters_text(const GenerateOptions& o, const GenerateResult& r, int index) {
  const auto& p = o.params;
  std::string text = p.prompt + "\n";
  if (!p.negative_prompt.empty()) text += "Negative prompt: " + p.negative_prompt + "\n";
  char line[512];
  std::snprintf(line, sizeof line, "Steps: %d, Sampler: %s, CFG scale: %g, Seed: %llu, Size: %lldx%lld, Model: %s",
                p.steps, r.scheduler.c_str(), p.guidance, static_cast<unsigned long long>(p.seed),
                static_cast<long long>(r.images.dim(2)), static_cast<long long>(r.images.dim(1)),
                std::filesystem::path(o.model).filename().c_str());
  text += line;
  if (p.clip_skip > 1) text += ", Clip skip: " + std::to_string(p.clip_skip);
  if (p.images > 1) text += ", Batch size: " + std::to_string(p.images) + ", Batch pos: " + std::to_string(index);
  return text + ", Version: sdrt";
}

void run_generate(GenerateOptions& o) {
  set_num_threads(o.threads);
  if (!o.seed_given) o.params.seed = std::random_device{}() & 0xffffffffu;
  if (!o.latents_file.empty()) o.params.latents = load_named(o.latents_file, "latents");
  if (!o.noise_file.empty()) o.params.noise = load_named(o.noise_file, "noise");

  auto pipe = StableDiffusionPipeline::load(o.model, kernels::precision_from_name(o.precision),
                                            residency_from_name(o.residency));
  if (!o.quiet)
    std::fprintf(stderr, "model %s %s in %.2f s; seed %llu; %d thread(s); %s\n", o.model.c_str(),
                 pipe.residency() == Residency::resident ? "loaded" : "checked", pipe.load_seconds(),
                 static_cast<unsigned long long>(o.params.seed), num_threads(), o.precision.c_str());
  ProgressBar bar(!o.quiet);
  GenerateResult r = pipe.generate(o.params, [&](const StepInfo& s) { bar.update(s.step, s.total, s.seconds); });

  for (int i = 0; i < o.params.images; ++i) {
    Tensor hwc = r.images.slice0(i, i + 1).reshape({r.images.dim(1), r.images.dim(2), 3});
    std::string path = image_path(o.output, i, o.params.images);
    write_png(path, to_image8_hwc(hwc), {{"parameters", parameters_text(o, r, i)}});
    if (!o.quiet) std::fprintf(stderr, "wrote %s\n", path.c_str());
  }
  if (!o.output_tensor.empty()) {
    SafeTensorsWriter w;
    w.add("image", r.images);
    w.add("latents", r.latents);
    w.write(o.output_tensor);
  }
  if (o.quiet) return;
  const auto& t = r.times;
  double unet_total = 0;
  for (double s : t.unet_step_s) unet_total += s;
  std::fprintf(stderr,
               "timing: load %.2f s | text encoder %.2f s | unet %zu x %.2f s = %.2f s | vae decode %.2f s | "
               "total %.2f s | peak RSS %.0f MB\n",
               pipe.load_seconds() + t.load_s, t.text_encoder_s, t.unet_step_s.size(),
               t.unet_step_s.empty() ? 0.0 : unet_total / t.unet_step_s.size(), unet_total, t.vae_decode_s,
               pipe.load_seconds() + t.load_s + t.total_s, peak_rss_bytes() / 1e6);
}

}  // namespace

std::string default_model_dir() {
  if (const char* env = std::getenv("SDRT_MODEL")) return env;
  return std::string(SDRT_SOURCE_DIR) + "/models/default";
}

Command add_generate_command(CLI::App& app) {
  auto o = std::make_shared<GenerateOptions>();
  auto* cmd = app.add_subcommand("generate", "Generate images from a text prompt");
  auto& p = o->params;
  cmd->add_option("--model,-m", o->model, "diffusers model folder (default: $SDRT_MODEL or the shipped model)")
      ->capture_default_str();
  cmd->add_option("--prompt,-p", p.prompt, "what to draw")->required();
  cmd->add_option("--negative-prompt,-n", p.negative_prompt, "what to steer away from");
  cmd->add_option("--steps", p.steps, "denoising steps")->capture_default_str();
  cmd->add_option("--guidance,--cfg", p.guidance, "classifier-free guidance scale; <= 1 disables it")
      ->capture_default_str();
  cmd->add_option("--scheduler", p.scheduler, "sampler (default: the model's scheduler_config.json)")
      ->check(CLI::IsMember(scheduler_names()));
  cmd->add_option("--seed", p.seed, "random seed (default: random, printed); same seed = same image as diffusers "
                                    "with a CPU torch.Generator")
      ->each([o](const std::string&) { o->seed_given = true; });
  cmd->add_option("--width,-W", p.width, "image width, a multiple of 8 (default: the model's native size)");
  cmd->add_option("--height,-H", p.height, "image height, a multiple of 8 (default: the model's native size)");
  cmd->add_option("--images", p.images, "images per prompt")->capture_default_str();
  cmd->add_option("--clip-skip", p.clip_skip, "use the text encoder's k-th last layer (1 = last)")
      ->capture_default_str();
  cmd->add_option("--vae-tile", p.vae_tile_size,
                  "decode in tiles of this many pixels (diffusers' VAE tiling): the decoder's memory becomes one "
                  "tile's, for ~1.5x its time; 0 = whole")
      ->capture_default_str();
  cmd->add_option("--output,-o", o->output, "PNG file; with --images N: NAME-0.png ...")->capture_default_str();
  cmd->add_option("--latents", o->latents_file,
                  "replay: safetensors with tensor 'latents' [images,4,h/8,w/8], unit normal");
  cmd->add_option("--noise", o->noise_file,
                  "replay: safetensors with tensor 'noise' [steps,images,4,h/8,w/8], ancestral noise per step");
  cmd->add_option("--output-tensor", o->output_tensor,
                  "also write safetensors with 'image' (float32 NHWC in [0,1]) and final 'latents'");
  cmd->add_option("--threads,-t", o->threads, "threads (default: physical cores)");
  cmd->add_option("--precision", o->precision, "compute precision of convolutions, linear layers and attention: fp32, bf16, or int8 (the UNet's "
                  "convolutions and linear layers quantised at load with dynamic scales; an int8 model folder from "
                  "sdrt quantize runs its own static int8 layers whatever this says)")
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}))
      ->capture_default_str();
  cmd->add_option("--residency", o->residency,
                  "per-stage: each model is loaded for its stage only and then freed (the lowest peak memory); "
                  "resident: all three stay loaded for the whole run")
      ->check(CLI::IsMember({"per-stage", "resident"}))
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", o->quiet, "no progress or timing output");
  return [o] { run_generate(*o); };
}

}  // namespace sdrt::app
