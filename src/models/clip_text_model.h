// transformers' CLIPTextModel (modeling_clip.py): token + position embeddings, pre-LayerNorm
// transformer layers with causal self-attention, final LayerNorm. This is the text encoder of
// SD 1.x (quick_gelu) and SD 2.x (gelu). No padding mask: the SD pipelines pass none, so padding
// tokens attend like any other token (causally).
#pragma once

#include <string>
#include <vector>

#include "io/config.h"
#include "models/layers.h"

namespace sdrt {

struct ClipTextConfig {
  // Defaults are transformers' CLIPTextConfig defaults, used for keys a config.json leaves out.
  int64_t hidden_size = 512;
  int64_t intermediate_size = 2048;
  int num_attention_heads = 8;
  int num_hidden_layers = 12;
  int64_t max_position_embeddings = 77;
  int64_t vocab_size = 49408;
  kernels::Activation hidden_act = kernels::Activation::QuickGELU;
  float layer_norm_eps = 1e-5f;
  // Selects how pooler_output finds the EOS token. SD 1.x configs carry the legacy value 2, for
  // which transformers takes the position of the largest id instead.
  int64_t eos_token_id = 49407;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  static ClipTextConfig load(const Config& config);
};

// One CLIPEncoderLayer: x + attn(ln1(x)), then h + mlp(ln2(h)).
class ClipEncoderLayer {
 public:
  static ClipEncoderLayer load(const WeightSource& w, const ClipTextConfig& cfg);
  Tensor operator()(const Tensor& x) const;  // [B, L, hidden]

 private:
  Tensor self_attention(const Tensor& x) const;
  Tensor mlp(const Tensor& x) const;

  int heads_ = 1;
  kernels::Activation act_ = kernels::Activation::QuickGELU;
  LayerNorm layer_norm1_, layer_norm2_;
  Linear q_proj_, k_proj_, v_proj_, out_proj_;
  Linear fc1_, fc2_;
};

class ClipTextModel {
 public:
  // `dir` is a text_encoder/ folder: config.json + model.safetensors.
  // `precision`: what its linear layers compute in (kernels::Precision); its causal attention stays f32.
  static ClipTextModel load(const std::string& dir, kernels::Precision precision = kernels::Precision::f32);
  // Binds the transformers names (text_model.embeddings..., text_model.encoder.layers.{i}..., text_model.final_layer_norm).
  static ClipTextModel load(const ClipTextConfig& config, const WeightSource& weights);

  const ClipTextConfig& config() const { return config_; }

  // ids: [batch * L] row-major token ids, L <= max_position_embeddings -> [batch, L, hidden].
  //
  // clip_skip follows A1111's "CLIP skip": 1 = no skip, the normal last_hidden_state. clip_skip = k
  // takes the output of encoder layer (num_layers - k + 1), i.e. transformers' hidden_states[-k], and
  // applies final_layer_norm to it. diffusers' pipeline argument counts one lower: its clip_skip = k - 1
  // (hidden_states[-(clip_skip + 1)]) is our k. Layers after the chosen one are not run.
  //
  // hidden_states, when given, receives transformers' output_hidden_states tuple: the embeddings
  // followed by every layer's output (num_layers + 1 tensors, before final_layer_norm). Asking for it
  // runs all layers whatever clip_skip is.
  Tensor forward(const std::vector<int64_t>& ids, int64_t batch, int clip_skip = 1,
                 std::vector<Tensor>* hidden_states = nullptr) const;

  // transformers' pooler_output: the row of last_hidden_state [batch, L, hidden] at each sequence's EOS
  // token -> [batch, hidden]. With the legacy eos_token_id 2 (SD 1.x) that is the position of the
  // largest id (the first <|endoftext|>); otherwise the first position holding eos_token_id.
  // Meaningful for the clip_skip = 1 output only. SD itself does not use it.
  Tensor pooled_output(const Tensor& last_hidden_state, const std::vector<int64_t>& ids) const;

 private:
  // Token + position embeddings, transformers' hidden_states[0].
  Tensor embed(const std::vector<int64_t>& ids, int64_t batch) const;

  ClipTextConfig config_;
  Tensor token_embedding_;     // [vocab, hidden]
  Tensor position_embedding_;  // [max_positions, hidden]
  std::vector<ClipEncoderLayer> layers_;
  LayerNorm final_layer_norm_;
};

}  // namespace sdrt
