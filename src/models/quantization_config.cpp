#include "models/quantization_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace sdrt {

namespace {

// The arithmetic of kernels/int8.h, as the file states it.
nlohmann::json weights_spec() {
  return {{"dtype", "int8"}, {"granularity", "per_output_channel"}, {"symmetric", true}, {"range", {-127, 127}}};
}
nlohmann::json activations_spec() {
  return {{"dtype", "int8"}, {"granularity", "per_tensor"}, {"symmetric", true}, {"range", {-128, 127}}};
}
constexpr const char* kRounding = "half_to_even";

const nlohmann::json& field(const nlohmann::json& j, const std::string& key, const std::string& source) {
  if (!j.is_object() || !j.contains(key)) fail(source, ": missing required key '", key, "'");
  return j.at(key);
}

void require_equal(const nlohmann::json& j, const std::string& key, const nlohmann::json& expected,
                   const std::string& source, const std::string& path) {
  const nlohmann::json& got = field(j, key, source);
  if (got != expected)
    fail(source, ": '", path, key, "' is ", got.dump(), "; sdrt implements ", expected.dump(),
         " (docs/quantization.md)");
}

void require_spec(const nlohmann::json& j, const std::string& key, const nlohmann::json& spec,
                  const std::string& source) {
  const nlohmann::json& part = field(j, key, source);
  if (!part.is_object()) fail(source, ": '", key, "' must be an object, got ", part.dump());
  for (const auto& [k, v] : spec.items()) require_equal(part, k, v, source, key + ".");
}

}  // namespace

QuantizationConfig QuantizationConfig::parse(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(source, ": not valid JSON: ", e.what());
  }
  if (!j.is_object()) fail(source, ": expected a JSON object");
  require_equal(j, "format", kFormat, source, "");
  const nlohmann::json& version = field(j, "version", source);
  if (!version.is_number_integer() || version.get<int64_t>() != kVersion)
    fail(source, ": quantization_config version ", version.dump(), " is not one this sdrt reads (it reads version ",
         kVersion, ")");
  require_spec(j, "weights", weights_spec(), source);
  require_spec(j, "activations", activations_spec(), source);
  const nlohmann::json& is_static = field(j.at("activations"), "static", source);
  if (!is_static.is_boolean()) fail(source, ": 'activations.static' must be true or false, got ", is_static.dump());
  require_equal(j, "rounding", kRounding, source, "");

  QuantizationConfig c;
  const nlohmann::json& method = field(j, "method", source);
  if (!method.is_string()) fail(source, ": 'method' must be a string, got ", method.dump());
  c.method = method.get<std::string>();
  c.static_activations = is_static.get<bool>();
  if (j.contains("keep_float")) {
    const nlohmann::json& list = j.at("keep_float");
    if (!list.is_array()) fail(source, ": 'keep_float' must be a list of patterns, got ", list.dump());
    for (const auto& p : list) {
      if (!p.is_string()) fail(source, ": 'keep_float' entry ", p.dump(), " is not a string");
      c.keep_float.push_back(p.get<std::string>());
    }
  }
  for (const char* key : {"calibration", "training", "source_model"})
    if (j.contains(key)) c.details[key] = j.at(key);
  return c;
}

std::optional<QuantizationConfig> QuantizationConfig::load_if_present(const std::string& component_dir) {
  const std::filesystem::path path = std::filesystem::path(component_dir) / kFileName;
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path);
  if (!in) fail(path.string(), ": cannot read");
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), path.string());
}

nlohmann::json QuantizationConfig::to_json() const {
  nlohmann::json j = {{"format", kFormat},         {"version", version},
                      {"method", method},          {"weights", weights_spec()},
                      {"activations", activations_spec()}, {"rounding", kRounding},
                      {"keep_float", keep_float}};
  j["activations"]["static"] = static_activations;
  for (const auto& [k, v] : details.items()) j[k] = v;
  return j;
}

void QuantizationConfig::save(const std::string& component_dir) const {
  const std::filesystem::path path = std::filesystem::path(component_dir) / kFileName;
  std::ofstream out(path);
  out << to_json().dump(2) << "\n";
  if (!out) fail(path.string(), ": cannot write");
}

}  // namespace sdrt
