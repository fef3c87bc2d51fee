// diffusers Transformer2DModel for continuous (image) input, as the SD UNets use it
// (transformers/transformer_2d.py), and its BasicTransformerBlock (attention.py) with
// norm_type "layer_norm", GEGLU feed-forward and no attention bias.
#pragma once

#include <vector>

#include "models/attention.h"
#include "models/layers.h"

namespace sdrt {

struct Transformer2DConfig {
  int64_t in_channels = 0;
  int heads = 1;
  int64_t head_dim = 0;  // inner_dim = heads * head_dim (the UNet uses channels / heads)
  int num_layers = 1;    // BasicTransformerBlocks
  int64_t cross_attention_dim = 0;
  int norm_groups = 32;
  bool use_linear_projection = false;  // proj_in/proj_out are Linear instead of 1x1 convolutions
  bool only_cross_attention = false;   // attn1 attends to the context instead of itself
  bool upcast_attention = false;       // fp16 softmax upcast in diffusers; everything is fp32 here
  // Runtime, not from config.json: the most bytes of GEGLU input one feed-forward slice of rows
  // may take (see BasicTransformerBlock::feed_forward_inplace).
  int64_t feed_forward_slice_bytes = int64_t{16} << 20;
  int64_t inner_dim() const { return heads * head_dim; }
};

class BasicTransformerBlock {
 public:
  static BasicTransformerBlock load(const WeightSource& w, int64_t dim, const Transformer2DConfig& cfg);
  // Adds the three pre-norm residual branches (self-attention, cross-attention, feed-forward)
  // to x [B, L, dim] in place; context is [B, Lc, cross_attention_dim].
  void apply_inplace(Tensor& x, const Tensor& context) const;

 private:
  void feed_forward_inplace(Tensor& x) const;

  bool only_cross_attention_ = false;
  int64_t feed_forward_slice_bytes_ = 0;
  LayerNorm norm1_, norm2_, norm3_;
  Attention attn1_, attn2_;
  Linear ff_proj_in_;   // ff.net.0.proj: dim -> 2 * 4dim, split into (hidden, gate) for GEGLU
  Linear ff_proj_out_;  // ff.net.2: 4dim -> dim
};

class Transformer2DModel {
 public:
  static Transformer2DModel load(const WeightSource& w, const Transformer2DConfig& cfg);
  // x [B, C, H, W], context [B, Lc, cross_attention_dim] -> [B, C, H, W] (includes the residual).
  Tensor operator()(const Tensor& x, const Tensor& context) const;
  const Transformer2DConfig& config() const { return cfg_; }

 private:
  Transformer2DConfig cfg_;
  GroupNorm norm_;
  // Both projection kinds act on each pixel's channel vector, so a 1x1 convolution is held as
  // the Linear it is equivalent to and both run on the token layout.
  Linear proj_in_, proj_out_;
  std::vector<BasicTransformerBlock> blocks_;
};

}  // namespace sdrt
