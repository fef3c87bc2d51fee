#include "models/clip_text_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "models/component_files.h"
#include "models/config_helpers.h"

namespace sdrt {

ClipTextConfig ClipTextConfig::load(const Config& config) {
  ClipTextConfig c;
  c.hidden_size = config.get<int64_t>("hidden_size", c.hidden_size);
  c.intermediate_size = config.get<int64_t>("intermediate_size", c.intermediate_size);
  c.num_attention_heads = config.get<int>("num_attention_heads", c.num_attention_heads);
  c.num_hidden_layers = config.get<int>("num_hidden_layers", c.num_hidden_layers);
  c.max_position_embeddings = config.get<int64_t>("max_position_embeddings", c.max_position_embeddings);
  c.vocab_size = config.get<int64_t>("vocab_size", c.vocab_size);
  c.layer_norm_eps = config.get<float>("layer_norm_eps", c.layer_norm_eps);
  c.eos_token_id = config.get<int64_t>("eos_token_id", c.eos_token_id);
  c.hidden_act = read_activation(config, "hidden_act", "quick_gelu");

  config.require_positive("hidden_size", c.hidden_size);
  config.require_positive("intermediate_size", c.intermediate_size);
  config.require_positive("num_attention_heads", c.num_attention_heads);
  config.require_positive("num_hidden_layers", c.num_hidden_layers);
  config.require_positive("max_position_embeddings", c.max_position_embeddings);
  config.require_positive("vocab_size", c.vocab_size);
  if (c.hidden_size % c.num_attention_heads != 0)
    config.bad_value("num_attention_heads", str("does not divide hidden_size ", c.hidden_size));
  return c;
}

// ---- ClipEncoderLayer

ClipEncoderLayer ClipEncoderLayer::load(const WeightSource& w, const ClipTextConfig& cfg) {
  ClipEncoderLayer l;
  int64_t d = cfg.hidden_size;
  l.heads_ = cfg.num_attention_heads;
  l.act_ = cfg.hidden_act;
  l.layer_norm1_ = LayerNorm::load(w, "layer_norm1", d, cfg.layer_norm_eps);
  l.layer_norm2_ = LayerNorm::load(w, "layer_norm2", d, cfg.layer_norm_eps);
  WeightSource attn = w.sub("self_attn");
  l.q_proj_ = Linear::load(attn, "q_proj", d, d);
  l.k_proj_ = Linear::load(attn, "k_proj", d, d);
  l.v_proj_ = Linear::load(attn, "v_proj", d, d);
  l.out_proj_ = Linear::load(attn, "out_proj", d, d);
  WeightSource mlp = w.sub("mlp");
  l.fc1_ = Linear::load(mlp, "fc1", d, cfg.intermediate_size);
  l.fc2_ = Linear::load(mlp, "fc2", cfg.intermediate_size, d);
  return l;
}

Tensor ClipEncoderLayer::self_attention(const Tensor& x) const {
  Tensor q = q_proj_(x);
  // transformers scales q before the QK^T product (not the scores); doing the same keeps the rounding identical.
  float scale = 1.0f / std::sqrt(static_cast<float>(q.dim(-1) / heads_));
  kernels::scale_inplace(q, scale);
  Tensor k = k_proj_(x), v = v_proj_(x);
  return out_proj_(kernels::attention(q, k, v, heads_, 1.0f, /*causal=*/true));
}

Tensor ClipEncoderLayer::mlp(const Tensor& x) const {
  Tensor h = fc1_(x);
  kernels::apply_activation(h, act_);
  return fc2_(h);
}

Tensor ClipEncoderLayer::operator()(const Tensor& x) const {
  Tensor h = self_attention(layer_norm1_(x));
  kernels::add_inplace(h, x);
  Tensor out = mlp(layer_norm2_(h));
  kernels::add_inplace(out, h);
  return out;
}

// ---- ClipTextModel

ClipTextModel ClipTextModel::load(const std::string& dir, kernels::Precision precision) {
  ClipTextConfig config = ClipTextConfig::load(Config::load(dir + "/config.json"));
  // int8 is the UNet's (the 8-bit method quantises only the UNet); this model then runs f32.
  if (precision == kernels::Precision::int8) precision = kernels::Precision::f32;
  WeightSource weights = WeightSource::open(find_weights_file(dir)).with_compute_precision(precision);
  auto model = load(config, weights);
  warn_unused(weights);
  return model;
}

ClipTextModel ClipTextModel::load(const ClipTextConfig& config, const WeightSource& weights) {
  ClipTextModel m;
  m.config_ = config;
  WeightSource w = weights.sub("text_model");
  WeightSource emb = w.sub("embeddings");
  m.token_embedding_ = emb.get("token_embedding.weight", {config.vocab_size, config.hidden_size});
  m.position_embedding_ =
      emb.get("position_embedding.weight", {config.max_position_embeddings, config.hidden_size});
  // Older checkpoints also store the position_ids buffer; transformers ignores it (it is arange), so do we.
  m.layers_.reserve(config.num_hidden_layers);
  for (int i = 0; i < config.num_hidden_layers; ++i)
    m.layers_.push_back(ClipEncoderLayer::load(w.sub(str("encoder.layers.", i)), config));
  m.final_layer_norm_ = LayerNorm::load(w, "final_layer_norm", config.hidden_size, config.layer_norm_eps);
  return m;
}

Tensor ClipTextModel::embed(const std::vector<int64_t>& ids, int64_t batch) const {
  SDRT_CHECK(batch > 0 && !ids.empty() && static_cast<int64_t>(ids.size()) % batch == 0, "CLIPTextModel: ",
             ids.size(), " token ids do not split into ", batch, " sequences");
  int64_t len = static_cast<int64_t>(ids.size()) / batch;
  SDRT_CHECK(len <= config_.max_position_embeddings, "CLIPTextModel: sequence length ", len,
             " exceeds max_position_embeddings ", config_.max_position_embeddings);
  for (size_t i = 0; i < ids.size(); ++i)
    SDRT_CHECK(ids[i] >= 0 && ids[i] < config_.vocab_size, "CLIPTextModel: token id ", ids[i], " at sequence ",
               static_cast<int64_t>(i) / len, ", position ", static_cast<int64_t>(i) % len,
               " is outside the vocabulary [0, ", config_.vocab_size, ")");

  int64_t d = config_.hidden_size;
  Tensor x = Tensor::empty({batch, len, d});
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < len; ++t) {
      const float* tok = token_embedding_.data() + ids[b * len + t] * d;
      const float* pos = position_embedding_.data() + t * d;
      float* out = x.data() + (b * len + t) * d;
      for (int64_t c = 0; c < d; ++c) out[c] = tok[c] + pos[c];
    }
  }
  return x;
}

Tensor ClipTextModel::forward(const std::vector<int64_t>& ids, int64_t batch, int clip_skip,
                              std::vector<Tensor>* hidden_states) const {
  int layers = config_.num_hidden_layers;
  SDRT_CHECK(clip_skip >= 1 && clip_skip <= layers, "CLIPTextModel: clip_skip ", clip_skip,
             " out of range [1, ", layers, "] (1 = no skip)");
  int wanted_layer = layers - clip_skip + 1;  // index into hidden_states (0 = embeddings)
  int run = hidden_states ? layers : wanted_layer;

  Tensor h = embed(ids, batch);
  if (hidden_states) {
    hidden_states->clear();
    hidden_states->push_back(h);
  }
  Tensor chosen = wanted_layer == 0 ? h : Tensor();
  for (int i = 0; i < run; ++i) {
    h = layers_[i](h);
    if (hidden_states) hidden_states->push_back(h);
    if (i + 1 == wanted_layer) chosen = h;
  }
  return final_layer_norm_(chosen);
}

Tensor ClipTextModel::pooled_output(const Tensor& last_hidden_state, const std::vector<int64_t>& ids) const {
  SDRT_CHECK(last_hidden_state.rank() == 3 && last_hidden_state.dim(0) * last_hidden_state.dim(1) ==
                                                  static_cast<int64_t>(ids.size()),
             "CLIPTextModel pooled_output: hidden state ", shape_str(last_hidden_state.shape()), " does not match ",
             ids.size(), " token ids");
  int64_t batch = last_hidden_state.dim(0), len = last_hidden_state.dim(1), d = last_hidden_state.dim(2);
  Tensor pooled = Tensor::empty({batch, d});
  for (int64_t b = 0; b < batch; ++b) {
    auto first = ids.begin() + b * len, last = first + len;
    // Both rules take the first match, as torch.argmax does.
    auto at = config_.eos_token_id == 2 ? std::max_element(first, last) : std::find(first, last, config_.eos_token_id);
    int64_t pos = at == last ? 0 : at - first;  // no EOS: argmax of all-zeros is 0
    std::memcpy(pooled.data() + b * d, last_hidden_state.data() + (b * len + pos) * d, d * sizeof(float));
  }
  return pooled;
}

}  // namespace sdrt
