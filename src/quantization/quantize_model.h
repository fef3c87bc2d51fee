// `sdrt quantize`: a float model folder -> an int8 model folder (docs/quantization.md).
//
// ptq: post-training calibration. The float pipeline generates images for the calibration prompts
// (all S steps, both halves of the guidance batch) while every quantisable UNet layer's input is
// recorded (ActivationRange); each layer's static activation scale is the MSE-optimal one over the
// whole trajectory. dynamic: no calibration; the folder holds int8 weights and the engine measures
// activation scales on every call. Either way the weights are int8 per output channel, and the
// layers matching the keep-float patterns (Int8Policy::default_keep_float() unless given) stay as
// they were. Everything but the UNet's weights is copied unchanged.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sdrt::quantization {

struct QuantizeOptions {
  std::string model_dir, out_dir;
  std::string method = "ptq";        // ptq | dynamic
  std::vector<std::string> prompts;  // empty: default_calibration_prompts()
  int samples = 8;                   // calibration prompts used (the first N); 0: all
  int steps = 20;                    // sampling steps per calibration image
  int width = 0, height = 0;         // 0: the model's native size
  float guidance = 7.5f;
  uint64_t seed = 1;                 // prompt i uses seed + i
  std::string scheduler;             // empty: the model's own
  std::vector<std::string> keep_float;  // empty: the defaults
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

struct QuantizeReport {
  int int8_layers = 0, float_layers = 0;  // conv/linear layers of the UNet
  int64_t unet_bytes_before = 0, unet_bytes_after = 0;  // the UNet's weights file
  int calibration_images = 0;
  int64_t calibration_unet_calls = 0;
  double calibration_s = 0, total_s = 0;
};

QuantizeReport quantize_model(const QuantizeOptions& options);

const std::vector<std::string>& default_calibration_prompts();
// One prompt per line; blank lines and lines starting with # are skipped. An unreadable or empty
// file is an error naming it.
std::vector<std::string> read_calibration_prompts(const std::string& path);

}  // namespace sdrt::quantization
