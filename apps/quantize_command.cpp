#include <cstdio>

#include "commands.h"
#include "core/parallel.h"
#include "quantization/quantize_model.h"

namespace sdrt::app {

Command add_quantize_command(CLI::App& app) {
  struct Options {
    quantization::QuantizeOptions q;
    std::string prompt_file;
    int threads = 0;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand("quantize",
                                 "Write an int8 copy of a model folder: int8 UNet weights, and with ptq static "
                                 "activation scales calibrated on real sampling runs (docs/quantization.md)");
  cmd->add_option("--model,-m", o->q.model_dir, "float diffusers model folder")->required();
  cmd->add_option("--out,-o", o->q.out_dir, "new int8 model folder (must not exist, or be empty)")->required();
  cmd->add_option("--method", o->q.method,
                  "ptq: static activation scales from calibration; dynamic: int8 weights only, activation scales "
                  "measured on every call")
      ->check(CLI::IsMember({"ptq", "dynamic"}))
      ->capture_default_str();
  cmd->add_option("--calibration-prompts", o->prompt_file,
                  "file with one prompt per line (# comments); default: sdrt's built-in list of 32");
  cmd->add_option("--calibration-samples", o->q.samples, "prompts used, the first N (0: all)")->capture_default_str();
  cmd->add_option("--calibration-steps", o->q.steps, "sampling steps per calibration image")->capture_default_str();
  cmd->add_option("--calibration-width", o->q.width, "calibration image width (default: the model's native size)");
  cmd->add_option("--calibration-height", o->q.height, "calibration image height (default: the model's native size)");
  cmd->add_option("--guidance", o->q.guidance, "guidance scale of the calibration runs")->capture_default_str();
  cmd->add_option("--seed", o->q.seed, "seed of the first calibration image (prompt i uses seed + i)")
      ->capture_default_str();
  cmd->add_option("--keep-float", o->q.keep_float,
                  "regular expression (repeatable) on UNet layer names to leave float; replaces the default list "
                  "^conv_in$ ^conv_out$ ^time_embedding\\. \\.time_emb_proj$");
  cmd->add_option("--threads,-t", o->threads, "threads (default: physical cores)");
  return [o] {
    set_num_threads(o->threads);
    if (!o->prompt_file.empty()) o->q.prompts = quantization::read_calibration_prompts(o->prompt_file);
    o->q.log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
    auto r = quantization::quantize_model(o->q);
    std::fprintf(stderr,
                 "wrote %s: %d UNet layers int8, %d float; UNet weights %.1f MB -> %.1f MB; %d calibration images "
                 "(%lld UNet calls) in %.1f s; total %.1f s\n",
                 o->q.out_dir.c_str(), r.int8_layers, r.float_layers, r.unet_bytes_before / 1e6,
                 r.unet_bytes_after / 1e6, r.calibration_images, static_cast<long long>(r.calibration_unet_calls),
                 r.calibration_s, r.total_s);
  };
}

}  // namespace sdrt::app
