// `unet/quantization_config.json`: what makes a model folder an int8 model (docs/quantization.md).
// Its presence switches the UNet's loader to the file's int8 layers (models/weights.h,
// Int8Policy::from_file()); every field that fixes the arithmetic is checked against what the
// engine implements (kernels/int8.h), so a file made for other arithmetic fails at load, naming
// the file and the field, instead of running with the wrong numbers.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdrt {

struct QuantizationConfig {
  static constexpr const char* kFileName = "quantization_config.json";
  static constexpr const char* kFormat = "sdrt-int8";
  static constexpr int kVersion = 1;

  int version = kVersion;
  std::string method;                   // "ptq", "qat" or "dynamic": how the scales were made
  // true: every int8 layer stores `<layer>.input_scale`; false: activation scales are measured on
  // every call (per image / per row), and the file holds only int8 weights and their scales.
  bool static_activations = true;
  std::vector<std::string> keep_float;  // the patterns of the layers left float (information)
  nlohmann::json details = nlohmann::json::object();  // calibration or training record, free-form

  // Checks and reads `text`; `source` names it in errors.
  static QuantizationConfig parse(const std::string& text, const std::string& source);
  // The config in `component_dir` (e.g. the UNet's folder), or nothing if it has none.
  static std::optional<QuantizationConfig> load_if_present(const std::string& component_dir);

  nlohmann::json to_json() const;
  void save(const std::string& component_dir) const;
};

}  // namespace sdrt
