// diffusers' Attention module (attention_processor.py) with the plain AttnProcessor:
// softmax(Q K^T / sqrt(head_dim)) V over `heads` heads, then to_out.0.
#pragma once

#include "models/layers.h"

namespace sdrt {

struct AttentionConfig {
  int64_t query_dim = 0;
  int64_t context_dim = 0;  // 0: self-attention (context = query_dim)
  int heads = 1;
  int64_t head_dim = 0;
  bool qkv_bias = false;
};

class Attention {
 public:
  // Binds to_q/to_k/to_v/to_out.0 under `w`; also accepts the older VAE names
  // query/key/value/proj_attn and 1x1-conv-shaped weights.
  // The attention products run at w.compute_precision(), like the projections.
  static Attention load(const WeightSource& w, const AttentionConfig& cfg);
  // x [B, L, query_dim]; context [B, Lc, context_dim] or undefined for self-attention.
  Tensor operator()(const Tensor& x, const Tensor& context = Tensor()) const;

 private:
  AttentionConfig cfg_;
  kernels::Precision precision_ = kernels::Precision::f32;
  Linear to_q_, to_k_, to_v_, to_out_;
};

}  // namespace sdrt
