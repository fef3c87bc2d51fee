// int8 UNets at the model level: a folder written here by the documented format
// (docs/quantization.md), independently of `sdrt quantize`, loads and runs close to the fp32
// golden UNet; its dynamic form computes exactly what --precision int8 does; and
// unet/quantization_config.json is checked field by field (QuantizationConfig::parse).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "kernels/int8.h"
#include "models/layers.h"
#include "models/quantization_config.h"
#include "models/unet.h"
#include "models/weights.h"
#include "test_util.h"

namespace sdrt {
namespace {

namespace fs = std::filesystem;

std::string tiny_unet_dir() { return testing::tiny_model_dir() + "/unet"; }

struct UNetCase {
  Tensor sample, encoder_hidden_states, out;
  std::vector<float> timesteps;
};

UNetCase load_case(int i) {
  auto file = SafeTensors::open(testing::case_path(str("unet_case", i, ".safetensors")));
  return {file.load_f32("sample"), file.load_f32("encoder_hidden_states"), file.load_f32("out"),
          file.load_f32("timestep").to_vector()};
}

Tensor run(const UNet2DConditionModel& unet, const UNetCase& c) {
  return unet.forward(c.sample, c.timesteps, c.encoder_hidden_states);
}

bool keeps_float(const std::string& layer) {
  for (const auto& p : Int8Policy::default_keep_float())
    if (std::regex_search(layer, std::regex(p))) return true;
  return false;
}

// The largest |input| of every conv/linear layer of the float UNet on one case.
class MaxRecorder : public ActivationObserver {
 public:
  void observe(const std::string& layer, const Tensor& x) override {
    float& m = max_[layer];
    for (int64_t i = 0; i < x.numel(); ++i) m = std::max(m, std::fabs(x[i]));
  }
  const std::map<std::string, float>& max() const { return max_; }

 private:
  std::map<std::string, float> max_;
};

struct WriteOptions {
  const std::map<std::string, float>* input_max = nullptr;  // static scales max / 127; null: dynamic
  bool one_by_one_as_matrix = false;  // store 1x1 conv weights [O, C] instead of [O, C, 1, 1]
  bool config = true;
};

// An int8 copy of the tiny UNet in `dir`, written by the format: each conv/linear layer outside
// the default keep-float set as `.weight` I8 (kernels::Int8Weights::quantize), `.weight_scale`
// F32 [O] and, for static scales, `.input_scale` F32 [1]; everything else unchanged.
std::string write_int8_unet(const std::string& dir, const WriteOptions& o) {
  fs::create_directories(dir);
  fs::copy_file(tiny_unet_dir() + "/config.json", dir + "/config.json");
  const SafeTensors src = SafeTensors::open(tiny_unet_dir() + "/diffusion_pytorch_model.safetensors");
  SafeTensorsWriter w;
  for (const auto& [name, info] : src.tensors()) {
    const std::string layer = name.size() > 7 ? name.substr(0, name.size() - 7) : "";
    const bool layer_weight = name == layer + ".weight" && (info.shape.size() == 4 || info.shape.size() == 2);
    if (!layer_weight || keeps_float(layer)) {
      w.add_raw(name, info.dtype, info.shape, src.raw(name));
      continue;
    }
    const kernels::Int8Weights q = kernels::Int8Weights::quantize(src.load_f32(name));
    Shape shape = info.shape;
    if (o.one_by_one_as_matrix && shape.size() == 4 && shape[2] == 1 && shape[3] == 1) shape = {shape[0], shape[1]};
    w.add_raw(name, DType::I8, shape, {reinterpret_cast<const uint8_t*>(q.data.get()), static_cast<size_t>(shape_numel(shape))});
    w.add(layer + ".weight_scale", Tensor::from_vector({shape[0]}, q.scales));
    if (o.input_max) w.add(layer + ".input_scale", Tensor::from_vector({1}, {o.input_max->at(layer) / 127.0f}));
  }
  w.write(dir + "/diffusion_pytorch_model.safetensors");
  if (o.config) {
    QuantizationConfig c;
    c.method = o.input_max ? "ptq" : "dynamic";
    c.static_activations = o.input_max != nullptr;
    c.keep_float = Int8Policy::default_keep_float();
    c.save(dir);
  }
  return dir;
}

// UNet case 1 (t = 500), rel = max|diff| / max|ref| against diffusers' fp32 output, measured:
//                                             VNNI     AVX2 (7-bit weights)   scalar
//   dynamic (per image / per row)             0.0445   0.0770                 0.0742
//   static (scales: this case's own maxima)   0.0676   0.0734                 0.0731
// The bound is ~1.3x the worst (each int8 layer adds ~0.5 % and the UNet has ~100 of them; fp32
// reaches 1e-6). Static scales 2x too coarse give 0.114, 2x too fine (clipping) 0.253 (VNNI).
constexpr double kDynamicTol = 0.10, kStaticTol = 0.10;

TEST(Int8UNet, WrittenDynamicFolderEqualsPrecisionInt8AndIsCloseToFp32) {
  const std::string dir = write_int8_unet(testing::scratch_dir("int8-unet-dynamic") + "/unet", {});
  const UNetCase c = load_case(1);
  const Tensor from_folder = run(UNet2DConditionModel::load(dir), c);
  const Tensor at_load = run(UNet2DConditionModel::load(tiny_unet_dir(), kernels::Precision::int8), c);
  EXPECT_EQ(testing::compare(from_folder, at_load).max_abs, 0) << "the same weights and arithmetic should agree exactly";
  EXPECT_REL_LE(from_folder, c.out, kDynamicTol);
  EXPECT_GT(testing::compare(from_folder, c.out).rel(), 1e-4) << "int8 should not be as close as fp32";
  // An int8 folder runs its int8 layers whatever precision is asked for.
  EXPECT_EQ(testing::compare(run(UNet2DConditionModel::load(dir, kernels::Precision::int8), c), from_folder).max_abs, 0);
}

TEST(Int8UNet, WrittenStaticFolderIsCloseToFp32) {
  const UNetCase c = load_case(1);
  MaxRecorder recorder;
  {
    const UNet2DConditionModel f32 = UNet2DConditionModel::load(tiny_unet_dir());
    ObserveActivations scope(recorder);
    run(f32, c);
  }
  WriteOptions o;
  o.input_max = &recorder.max();
  const std::string dir = write_int8_unet(testing::scratch_dir("int8-unet-static") + "/unet", o);
  const Tensor out = run(UNet2DConditionModel::load(dir), c);
  EXPECT_REL_LE(out, c.out, kStaticTol);
  EXPECT_GT(testing::compare(out, c.out).rel(), 1e-4);
}

// A 1x1 convolution's I8 weights may be stored as [O, C] (what a linear layer exporter writes).
TEST(Int8UNet, OneByOneConvWeightsMayBeStoredAsMatrices) {
  const std::string base = testing::scratch_dir("int8-unet-1x1");
  WriteOptions as_matrix;
  as_matrix.one_by_one_as_matrix = true;
  const std::string a = write_int8_unet(base + "/conv", {}), b = write_int8_unet(base + "/matrix", as_matrix);
  ASSERT_EQ(SafeTensors::open(b + "/diffusion_pytorch_model.safetensors").info("mid_block.attentions.0.proj_in.weight").shape.size(), 2u);
  const UNetCase c = load_case(1);
  EXPECT_EQ(testing::compare(run(UNet2DConditionModel::load(a), c), run(UNet2DConditionModel::load(b), c)).max_abs, 0);
}

TEST(Int8UNet, I8WeightsWithoutAConfigAreAnError) {
  WriteOptions no_config;
  no_config.config = false;
  const std::string dir = write_int8_unet(testing::scratch_dir("int8-unet-no-config") + "/unet", no_config);
  for (auto precision : {kernels::Precision::f32, kernels::Precision::int8}) {
    try {
      UNet2DConditionModel::load(dir, precision);
      ADD_FAILURE() << kernels::precision_name(precision) << ": I8 weights loaded without a quantization_config.json";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(dir + "/diffusion_pytorch_model.safetensors"), std::string::npos) << m;
      EXPECT_NE(m.find(".weight' holds int8 weights"), std::string::npos) << m;
      EXPECT_NE(m.find("quantization_config.json"), std::string::npos) << m;
    }
  }
}

// ---- unet/quantization_config.json ----

nlohmann::json valid_config() {
  QuantizationConfig c;
  c.method = "ptq";
  c.keep_float = {"^conv_in$"};
  return c.to_json();
}

void expect_parse_error(const std::string& text, const std::vector<std::string>& fragments) {
  try {
    QuantizationConfig::parse(text, "some/unet/quantization_config.json");
    ADD_FAILURE() << "parsed: " << text;
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("some/unet/quantization_config.json"), std::string::npos) << m;
    for (const auto& f : fragments) EXPECT_NE(m.find(f), std::string::npos) << "'" << f << "' not in: " << m;
  }
}

void expect_parse_error(const std::function<void(nlohmann::json&)>& edit, const std::vector<std::string>& fragments) {
  nlohmann::json j = valid_config();
  edit(j);
  expect_parse_error(j.dump(), fragments);
}

TEST(Int8Config, RoundTripsThroughJson) {
  QuantizationConfig c;
  c.method = "qat";
  c.static_activations = true;
  c.keep_float = {"^conv_in$", "\\.time_emb_proj$"};
  c.details["training"] = {{"steps", 1000}, {"lr", 1e-5}};
  c.details["source_model"] = "models/tiny";
  const QuantizationConfig back = QuantizationConfig::parse(c.to_json().dump(), "mem");
  EXPECT_EQ(back.version, QuantizationConfig::kVersion);
  EXPECT_EQ(back.method, "qat");
  EXPECT_TRUE(back.static_activations);
  EXPECT_EQ(back.keep_float, c.keep_float);
  EXPECT_EQ(back.details, c.details);

  c.static_activations = false;
  const std::string dir = testing::scratch_dir("int8-config-save");
  EXPECT_FALSE(QuantizationConfig::load_if_present(dir).has_value());
  c.save(dir);
  const auto loaded = QuantizationConfig::load_if_present(dir);
  ASSERT_TRUE(loaded.has_value());
  EXPECT_FALSE(loaded->static_activations);
  EXPECT_EQ(loaded->to_json(), c.to_json());
}

TEST(Int8Config, UnknownKeysAreIgnoredAndKeepFloatIsOptional) {
  nlohmann::json j = valid_config();
  j["producer"] = "someone else's exporter";
  j.erase("keep_float");
  const QuantizationConfig c = QuantizationConfig::parse(j.dump(), "mem");
  EXPECT_TRUE(c.keep_float.empty());
  EXPECT_EQ(c.method, "ptq");
}

TEST(Int8Config, RejectsWhatSdrtDoesNotImplement) {
  expect_parse_error([](nlohmann::json& j) { j["format"] = "sdrt-int4"; }, {"'format'", "sdrt-int4"});
  expect_parse_error([](nlohmann::json& j) { j.erase("format"); }, {"'format'"});
  expect_parse_error([](nlohmann::json& j) { j["version"] = 2; }, {"version 2", "reads version 1"});
  expect_parse_error([](nlohmann::json& j) { j["version"] = 1.5; }, {"version 1.5"});
  expect_parse_error([](nlohmann::json& j) { j["version"] = nullptr; }, {"version null"});
  expect_parse_error([](nlohmann::json& j) { j["weights"]["granularity"] = "per_tensor"; }, {"'weights.granularity'"});
  expect_parse_error([](nlohmann::json& j) { j["weights"]["range"] = {-128, 127}; }, {"'weights.range'"});
  expect_parse_error([](nlohmann::json& j) { j["weights"]["symmetric"] = false; }, {"'weights.symmetric'"});
  expect_parse_error([](nlohmann::json& j) { j["weights"].erase("dtype"); }, {"'dtype'"});
  expect_parse_error([](nlohmann::json& j) { j["weights"] = nlohmann::json::array(); }, {"'weights'"});
  expect_parse_error([](nlohmann::json& j) { j["activations"]["granularity"] = "per_token"; }, {"'activations.granularity'"});
  expect_parse_error([](nlohmann::json& j) { j["activations"]["dtype"] = "uint8"; }, {"'activations.dtype'", "uint8"});
  expect_parse_error([](nlohmann::json& j) { j["activations"].erase("static"); }, {"'static'"});
  expect_parse_error([](nlohmann::json& j) { j["activations"]["static"] = 1; }, {"'activations.static'"});
  expect_parse_error([](nlohmann::json& j) { j.erase("activations"); }, {"'activations'"});
  expect_parse_error([](nlohmann::json& j) { j["rounding"] = "stochastic"; }, {"'rounding'", "stochastic"});
  expect_parse_error([](nlohmann::json& j) { j["method"] = 3; }, {"'method'"});
  expect_parse_error([](nlohmann::json& j) { j["keep_float"] = "^conv_in$"; }, {"'keep_float'"});
  expect_parse_error([](nlohmann::json& j) { j["keep_float"] = {"^conv_in$", 7}; }, {"'keep_float'", "7"});
}

TEST(Int8Config, RejectsWhatIsNotAJsonObject) {
  for (const char* text : {"", "{", "{\"format\": \"sdrt-int8\",}", "\xff\xfe", "nul"})
    expect_parse_error(text, {"not valid JSON"});
  for (const char* text : {"[]", "42", "\"sdrt-int8\"", "null"}) expect_parse_error(text, {"JSON object"});
}

}  // namespace
}  // namespace sdrt
