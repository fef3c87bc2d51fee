#include "models/clip_text_model.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "core/error.h"
#include "io/safetensors.h"
#include "test_util.h"

namespace sdrt {
namespace {

using testing::case_path;
using testing::tiny_model_dir;

std::string text_encoder_dir() { return tiny_model_dir() + "/text_encoder"; }

struct TextEncoderCase {
  SafeTensors file = SafeTensors::open(case_path("text_encoder.safetensors"));
  std::vector<int64_t> ids = file.load_i64("input_ids");
  int64_t batch = file.info("input_ids").shape[0];
  int64_t length = file.info("input_ids").shape[1];
  Tensor get(const std::string& name) const { return file.load_f32(name); }
};

const ClipTextModel& tiny_model() {
  static const ClipTextModel model = ClipTextModel::load(text_encoder_dir());
  return model;
}

// Rows [0, len) of every sequence of a [B, L, C] tensor.
Tensor first_positions(const Tensor& x, int64_t len) {
  int64_t b = x.dim(0), l = x.dim(1), c = x.dim(2);
  Tensor out = Tensor::empty({b, len, c});
  for (int64_t i = 0; i < b; ++i)
    std::copy(x.data() + i * l * c, x.data() + (i * l + len) * c, out.data() + i * len * c);
  return out;
}

TEST(ClipTextConfig, ReadsTheTinyConfig) {
  const ClipTextConfig& c = tiny_model().config();
  EXPECT_EQ(c.hidden_size, 32);
  EXPECT_EQ(c.intermediate_size, 64);
  EXPECT_EQ(c.num_attention_heads, 4);
  EXPECT_EQ(c.num_hidden_layers, 3);
  EXPECT_EQ(c.max_position_embeddings, 77);
  EXPECT_EQ(c.vocab_size, 49408);
  EXPECT_EQ(c.hidden_act, kernels::Activation::QuickGELU);
  EXPECT_FLOAT_EQ(c.layer_norm_eps, 1e-5f);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(c.head_dim(), 8);
}

TEST(ClipTextConfig, Sd2StyleGeluAndDefaults) {
  auto c = ClipTextConfig::load(Config::from_json({{"hidden_act", "gelu"}, {"hidden_size", 1024}}, "test"));
  EXPECT_EQ(c.hidden_act, kernels::Activation::GELU);
  EXPECT_EQ(c.hidden_size, 1024);
  EXPECT_EQ(c.num_hidden_layers, 12);  // transformers' default
  EXPECT_EQ(c.eos_token_id, 49407);
}

TEST(ClipTextConfig, RejectsBadValues) {
  EXPECT_THROW(ClipTextConfig::load(Config::from_json({{"hidden_act", "tanh"}}, "test")), Error);
  EXPECT_THROW(ClipTextConfig::load(Config::from_json({{"hidden_size", 30}, {"num_attention_heads", 4}}, "test")),
               Error);
  EXPECT_THROW(ClipTextConfig::load(Config::from_json({{"num_hidden_layers", 0}}, "test")), Error);
}

TEST(ClipTextModel, BindsEveryTensorOfTheCheckpoint) {
  WeightSource weights = WeightSource::open(text_encoder_dir() + "/model.safetensors");
  ClipTextModel::load(tiny_model().config(), weights);
  EXPECT_TRUE(weights.unused().empty()) << "first unused: " << weights.unused().front();
}

TEST(ClipTextModel, MatchesGoldenHiddenStates) {
  TextEncoderCase golden;
  std::vector<Tensor> hidden;
  Tensor out = tiny_model().forward(golden.ids, golden.batch, 1, &hidden);
  ASSERT_EQ(hidden.size(), 4u);
  for (size_t k = 0; k < hidden.size(); ++k) {
    SCOPED_TRACE("hidden_states." + std::to_string(k));
    std::printf("  hidden_states.%zu\n", k);
    EXPECT_REL_LE(hidden[k], golden.get("hidden_states." + std::to_string(k)), 1e-4);
  }
  EXPECT_REL_LE(out, golden.get("last_hidden_state"), 1e-4);
  EXPECT_REL_LE(tiny_model().pooled_output(out, golden.ids), golden.get("pooler_output"), 1e-4);
}

TEST(ClipTextModel, OutputWithoutHiddenStatesIsTheSame) {
  TextEncoderCase golden;
  std::vector<Tensor> hidden;
  Tensor with = tiny_model().forward(golden.ids, golden.batch, 1, &hidden);
  Tensor without = tiny_model().forward(golden.ids, golden.batch);
  EXPECT_EQ(testing::compare(without, with).max_abs, 0.0);
}

TEST(ClipTextModel, EachSequenceIsIndependentOfTheBatch) {
  TextEncoderCase golden;
  Tensor expected = golden.get("last_hidden_state");
  for (int64_t b = 0; b < golden.batch; ++b) {
    std::vector<int64_t> one(golden.ids.begin() + b * golden.length, golden.ids.begin() + (b + 1) * golden.length);
    Tensor out = tiny_model().forward(one, 1);
    EXPECT_REL_LE(out, expected.slice0(b, b + 1), 1e-4);
  }
}

// The mask is causal: a prefix of the sequence gives the prefix of the full output.
TEST(ClipTextModel, ShorterSequenceIsThePrefixOfTheFullOne) {
  TextEncoderCase golden;
  const int64_t len = 12;
  std::vector<int64_t> prefix;
  for (int64_t b = 0; b < golden.batch; ++b)
    prefix.insert(prefix.end(), golden.ids.begin() + b * golden.length, golden.ids.begin() + b * golden.length + len);
  Tensor out = tiny_model().forward(prefix, golden.batch);
  EXPECT_REL_LE(out, first_positions(golden.get("last_hidden_state"), len), 1e-4);
}

TEST(ClipTextModel, ClipSkipTwoIsFinalLayerNormOfThePenultimateLayer) {
  TextEncoderCase golden;
  WeightSource weights = WeightSource::open(text_encoder_dir() + "/model.safetensors");
  LayerNorm final_ln = LayerNorm::load(weights, "text_model.final_layer_norm", 32, 1e-5f);
  Tensor expected = final_ln(golden.get("hidden_states.2"));

  EXPECT_REL_LE(tiny_model().forward(golden.ids, golden.batch, 2), expected, 1e-4);
  // Asking for the hidden states runs every layer but must not change the chosen output.
  std::vector<Tensor> hidden;
  Tensor with_hidden = tiny_model().forward(golden.ids, golden.batch, 2, &hidden);
  EXPECT_EQ(hidden.size(), 4u);
  EXPECT_REL_LE(with_hidden, expected, 1e-4);
  // clip_skip = num_layers uses the first layer's output.
  EXPECT_REL_LE(tiny_model().forward(golden.ids, golden.batch, 3), final_ln(golden.get("hidden_states.1")), 1e-4);
}

TEST(ClipTextModel, PooledOutputWithARealEosTokenId) {
  // With a non-legacy eos_token_id the pooled token is the first occurrence of that id.
  ClipTextConfig config = tiny_model().config();
  config.eos_token_id = 49407;
  ClipTextModel model =
      ClipTextModel::load(config, WeightSource::open(text_encoder_dir() + "/model.safetensors"));
  TextEncoderCase golden;
  Tensor out = model.forward(golden.ids, golden.batch);
  EXPECT_REL_LE(model.pooled_output(out, golden.ids), golden.get("pooler_output"), 1e-4);
}

TEST(ClipTextModel, RejectsIdsOutsideTheVocabulary) {
  std::vector<int64_t> ids = {49406, 320, 49408, 49407};
  try {
    tiny_model().forward(ids, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("49408"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("position 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tiny_model().forward({49406, -1, 49407}, 1), Error);
}

TEST(ClipTextModel, RejectsBadShapesAndClipSkip) {
  std::vector<int64_t> ids(77, 49407);
  EXPECT_THROW(tiny_model().forward(ids, 2), Error);                        // 77 ids do not split in 2
  EXPECT_THROW(tiny_model().forward(std::vector<int64_t>(78, 1), 1), Error);  // longer than 77 positions
  EXPECT_THROW(tiny_model().forward({}, 1), Error);
  EXPECT_THROW(tiny_model().forward(ids, 1, 0), Error);
  EXPECT_THROW(tiny_model().forward(ids, 1, 4), Error);
}

TEST(ClipTextModel, MissingTensorIsNamed) {
  SafeTensors full = SafeTensors::open(text_encoder_dir() + "/model.safetensors");
  SafeTensorsWriter writer;
  const std::string dropped = "text_model.encoder.layers.1.mlp.fc2.weight";
  for (const auto& [name, info] : full.tensors())
    if (name != dropped) writer.add(name, full.load_f32(name));
  std::string path = testing::scratch_dir("clip_missing") + "/model.safetensors";
  writer.write(path);
  try {
    ClipTextModel::load(tiny_model().config(), WeightSource::open(path));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dropped), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdrt
