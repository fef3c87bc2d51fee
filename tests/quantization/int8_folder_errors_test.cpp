// A broken int8 model folder fails at load with sdrt's Error, naming the file and the tensor or
// field at fault (docs/quantization.md). Each test makes a real int8 UNet folder with
// quantize_model (ptq, one short calibration run), breaks one thing in it, and loads it.
// Also: calibration prompt files that hold no prompts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "models/unet.h"
#include "quantization/quantize_model.h"
#include "quantization_test_util.h"

namespace sdrt::quantization {
namespace {

namespace fs = std::filesystem;

// An int8 layer of each kind: a convolution and a linear layer (1x1-conv-free, bias-free q/k/v).
const std::string kConv = "mid_block.resnets.0.conv1";
const std::string kLinear = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q";

std::string current_test_name() { return ::testing::UnitTest::GetInstance()->current_test_info()->name(); }

// A fresh ptq int8 model folder in this test's scratch folder; returns its unet/ folder.
std::string make_int8_unet(const std::string& method = "ptq") {
  const std::string model = testing::tiny_model_links("int8-folder-" + current_test_name());
  const std::string out = fs::path(model).parent_path() / "int8";
  QuantizeOptions o;
  o.model_dir = model;
  o.out_dir = out;
  o.method = method;
  o.samples = 1;
  o.steps = 1;
  o.width = o.height = 64;
  quantize_model(o);
  return out + "/unet";
}

std::string weights_file(const std::string& unet) { return unet + "/diffusion_pytorch_model.safetensors"; }
std::string config_file(const std::string& unet) { return unet + "/quantization_config.json"; }

struct Stored {
  DType dtype;
  Shape shape;
  std::vector<uint8_t> bytes;
};
using Tensors = std::map<std::string, Stored>;

// Reads the UNet's weights, lets `edit` change them, writes them back.
void edit_weights(const std::string& unet, const std::function<void(Tensors&)>& edit) {
  Tensors t;
  {
    const SafeTensors file = SafeTensors::open(weights_file(unet));
    for (const auto& [name, info] : file.tensors()) {
      auto raw = file.raw(name);
      t[name] = {info.dtype, info.shape, {raw.begin(), raw.end()}};
    }
  }
  ASSERT_TRUE(t.count(kConv + ".weight") && t.at(kConv + ".weight").dtype == DType::I8);
  ASSERT_TRUE(t.count(kLinear + ".weight") && t.at(kLinear + ".weight").dtype == DType::I8);
  edit(t);
  SafeTensorsWriter w;
  for (const auto& [name, s] : t) w.add_raw(name, s.dtype, s.shape, s.bytes);
  w.write(weights_file(unet));
}

void set_f32(Tensors& t, const std::string& name, const Shape& shape, const std::vector<float>& values) {
  ASSERT_EQ(shape_numel(shape), static_cast<int64_t>(values.size()));
  std::vector<uint8_t> bytes(values.size() * sizeof(float));
  std::memcpy(bytes.data(), values.data(), bytes.size());
  t[name] = {DType::F32, shape, bytes};
}

// Sets one value of an F32 tensor.
void poke(Tensors& t, const std::string& name, size_t index, float value) {
  ASSERT_EQ(t.at(name).dtype, DType::F32);
  ASSERT_LT(index * sizeof(float), t.at(name).bytes.size());
  std::memcpy(t.at(name).bytes.data() + index * sizeof(float), &value, sizeof value);
}

void edit_config(const std::string& unet, const std::function<void(nlohmann::json&)>& edit) {
  std::ifstream in(config_file(unet));
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j);
  std::ofstream(config_file(unet)) << j.dump(2);
}

// Loading `unet` fails with sdrt::Error whose message holds every fragment.
void expect_load_error(const std::string& unet, const std::vector<std::string>& fragments,
                       kernels::Precision precision = kernels::Precision::f32) {
  try {
    UNet2DConditionModel::load(unet, precision);
    ADD_FAILURE() << "loaded without an error; expected one naming " << ::testing::PrintToString(fragments);
  } catch (const Error& e) {
    for (const auto& f : fragments) EXPECT_NE(std::string(e.what()).find(f), std::string::npos) << "'" << f << "' not in: " << e.what();
  }
}

TEST(Int8Folder, TheUnbrokenFolderLoads) {
  const std::string unet = make_int8_unet();
  EXPECT_NO_THROW(UNet2DConditionModel::load(unet));
  edit_weights(unet, [](Tensors&) {});  // the round trip through the editor changes nothing that matters
  EXPECT_NO_THROW(UNet2DConditionModel::load(unet));
}

TEST(Int8Folder, MissingWeightScale) {
  const std::string unet = make_int8_unet();
  edit_weights(unet, [](Tensors& t) { t.erase(kConv + ".weight_scale"); });
  expect_load_error(unet, {weights_file(unet), "missing tensor '" + kConv + ".weight_scale'"});
}

TEST(Int8Folder, MisShapedWeightScale) {
  const std::string unet = make_int8_unet();
  int64_t out = 0;
  edit_weights(unet, [&](Tensors& t) {
    out = t.at(kLinear + ".weight").shape[0];
    set_f32(t, kLinear + ".weight_scale", {out + 1}, std::vector<float>(out + 1, 0.01f));
  });
  expect_load_error(unet, {weights_file(unet), "'" + kLinear + ".weight_scale' has shape"});
  edit_weights(unet, [&](Tensors& t) { set_f32(t, kLinear + ".weight_scale", {1, out}, std::vector<float>(out, 0.01f)); });
  expect_load_error(unet, {weights_file(unet), "'" + kLinear + ".weight_scale' has shape"});
}

TEST(Int8Folder, ZeroNegativeOrNanWeightScale) {
  const std::string unet = make_int8_unet();
  const std::vector<uint8_t> original = [&] {
    std::vector<uint8_t> b;
    edit_weights(unet, [&](Tensors& t) { b = t.at(kConv + ".weight_scale").bytes; });
    return b;
  }();
  for (float bad : {0.0f, -0.5f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    SCOPED_TRACE(bad);
    edit_weights(unet, [&](Tensors& t) {
      t.at(kConv + ".weight_scale").bytes = original;
      poke(t, kConv + ".weight_scale", 3, bad);
    });
    expect_load_error(unet, {weights_file(unet), "'" + kConv + ".weight_scale'", "weight scale 3 is"});
  }
}

TEST(Int8Folder, MisShapedInt8Weight) {
  const std::string unet = make_int8_unet();
  edit_weights(unet, [](Tensors& t) {
    Stored& w = t.at(kConv + ".weight");
    w.shape = {w.shape[0], w.shape[1] * w.shape[2] * w.shape[3] - 1};
    w.bytes.resize(shape_numel(w.shape));
  });
  expect_load_error(unet, {weights_file(unet), "'" + kConv + ".weight' has shape"});
}

TEST(Int8Folder, MissingInputScale) {
  const std::string unet = make_int8_unet();
  edit_weights(unet, [](Tensors& t) { t.erase(kLinear + ".input_scale"); });
  expect_load_error(unet, {weights_file(unet), "missing tensor '" + kLinear + ".input_scale'"});
}

TEST(Int8Folder, ZeroOrNanInputScale) {
  const std::string unet = make_int8_unet();
  for (float bad : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE(bad);
    edit_weights(unet, [&](Tensors& t) { set_f32(t, kConv + ".input_scale", {1}, {bad}); });
    expect_load_error(unet, {weights_file(unet), "'" + kConv + ".input_scale' is", "must be finite and > 0"});
  }
  edit_weights(unet, [&](Tensors& t) { set_f32(t, kConv + ".input_scale", {2}, {0.1f, 0.1f}); });
  expect_load_error(unet, {weights_file(unet), "'" + kConv + ".input_scale' has shape"});
}

// A dynamic folder needs no input scales; one whose config says static does.
TEST(Int8Folder, StaticConfigOnADynamicFolder) {
  const std::string unet = make_int8_unet("dynamic");
  EXPECT_NO_THROW(UNet2DConditionModel::load(unet));
  edit_config(unet, [](nlohmann::json& j) { j["activations"]["static"] = true; });
  expect_load_error(unet, {weights_file(unet), ".input_scale'", "static activation scale"});
}

TEST(Int8Folder, ConfigVersionFormatAndSpecs) {
  const std::string unet = make_int8_unet();
  const std::string config = config_file(unet);
  std::string original;
  {
    std::ifstream in(config);
    std::stringstream s;
    s << in.rdbuf();
    original = s.str();
  }
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::vector<std::string> fragments;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["version"] = 2; }, {"version 2"}},
      {[](nlohmann::json& j) { j["version"] = "1"; }, {"version \"1\""}},
      {[](nlohmann::json& j) { j.erase("version"); }, {"'version'"}},
      {[](nlohmann::json& j) { j["format"] = "gguf-q8"; }, {"'format'", "gguf-q8"}},
      {[](nlohmann::json& j) { j["weights"]["granularity"] = "per_tensor"; }, {"'weights.granularity'", "per_tensor"}},
      {[](nlohmann::json& j) { j["weights"]["symmetric"] = false; }, {"'weights.symmetric'"}},
      {[](nlohmann::json& j) { j["weights"]["dtype"] = "int4"; }, {"'weights.dtype'", "int4"}},
      {[](nlohmann::json& j) { j["activations"]["granularity"] = "per_channel"; }, {"'activations.granularity'"}},
      {[](nlohmann::json& j) { j["activations"]["range"] = {0, 255}; }, {"'activations.range'", "[0,255]"}},
      {[](nlohmann::json& j) { j["activations"]["static"] = "yes"; }, {"'activations.static'"}},
      {[](nlohmann::json& j) { j["weights"] = "int8"; }, {"'weights'"}},
      {[](nlohmann::json& j) { j["rounding"] = "half_away_from_zero"; }, {"'rounding'"}},
      {[](nlohmann::json& j) { j.erase("method"); }, {"'method'"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.fragments.front());
    std::ofstream(config) << original;
    edit_config(unet, c.edit);
    std::vector<std::string> fragments = c.fragments;
    fragments.push_back(config);
    expect_load_error(unet, fragments);
  }
  std::ofstream(config) << original.substr(0, original.size() / 2);
  expect_load_error(unet, {config, "not valid JSON"});
  std::ofstream(config) << "[1, 2]";
  expect_load_error(unet, {config, "JSON object"});
  std::ofstream(config) << original;
  EXPECT_NO_THROW(UNet2DConditionModel::load(unet));
}

// Without the config, nothing says how to run the I8 tensors: the float model's loader must not
// guess, at either precision.
TEST(Int8Folder, Int8WeightsWithoutAConfig) {
  const std::string unet = make_int8_unet();
  fs::remove(config_file(unet));
  for (auto precision : {kernels::Precision::f32, kernels::Precision::int8}) {
    SCOPED_TRACE(kernels::precision_name(precision));
    expect_load_error(unet, {weights_file(unet), ".weight' holds int8 weights", "quantization_config.json"}, precision);
  }
}

TEST(CalibrationPrompts, ReadsOnePromptPerLineSkippingBlanksAndComments) {
  const std::string dir = testing::scratch_dir("calibration-prompts");
  const std::string path = dir + "/prompts.txt";
  std::ofstream(path) << "# a comment\n\nred apple\r\n   \n  # indented comment\na cat, # not a comment\n\tbanana";
  EXPECT_EQ(read_calibration_prompts(path), (std::vector<std::string>{"red apple", "a cat, # not a comment", "\tbanana"}));
}

TEST(CalibrationPrompts, EmptyCommentOnlyAndMissingFilesAreErrors) {
  const std::string dir = testing::scratch_dir("calibration-prompts-bad");
  auto expect_error = [](const std::string& path, const std::string& fragment) {
    try {
      read_calibration_prompts(path);
      ADD_FAILURE() << path << ": read without an error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  std::ofstream(dir + "/empty.txt");
  expect_error(dir + "/empty.txt", "holds no prompts");
  std::ofstream(dir + "/comments.txt") << "# one\n\n  # two\n\t\n#three";
  expect_error(dir + "/comments.txt", "holds no prompts");
  expect_error(dir + "/missing.txt", "cannot read");
  expect_error(dir, "");  // a folder is not a prompt file
}

}  // namespace
}  // namespace sdrt::quantization
