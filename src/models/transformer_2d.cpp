#include "models/transformer_2d.h"

#include <algorithm>

#include "core/error.h"

namespace sdrt {

namespace {

// The transformer's input GroupNorm has a fixed eps in diffusers, unlike the resnets' norm_eps.
constexpr float kInputNormEps = 1e-6f;
// BasicTransformerBlock LayerNorms use diffusers' default norm_eps.
constexpr float kLayerNormEps = 1e-5f;
// GEGLU feed-forward width multiplier (FeedForward mult=4).
constexpr int64_t kFeedForwardMult = 4;

// proj_in / proj_out: a Linear [out, in] when use_linear_projection, otherwise a 1x1 conv
// [out, in, 1, 1]. The shape is checked against the configured kind, so a config that disagrees
// with its checkpoint fails at load (Linear::load would accept either layout); the conv weight
// is then viewed as the equivalent Linear.
Linear load_projection(const WeightSource& w, const std::string& name, int64_t in, int64_t out, bool linear) {
  return Linear::load_stored_as(w, name, linear ? Shape{out, in} : Shape{out, in, 1, 1}, in, out);
}

}  // namespace

BasicTransformerBlock BasicTransformerBlock::load(const WeightSource& w, int64_t dim, const Transformer2DConfig& cfg) {
  BasicTransformerBlock b;
  b.only_cross_attention_ = cfg.only_cross_attention;
  AttentionConfig self_attn{dim, cfg.only_cross_attention ? cfg.cross_attention_dim : 0, cfg.heads, cfg.head_dim,
                            /*qkv_bias=*/false};
  AttentionConfig cross_attn{dim, cfg.cross_attention_dim, cfg.heads, cfg.head_dim, /*qkv_bias=*/false};
  b.norm1_ = LayerNorm::load(w, "norm1", dim, kLayerNormEps);
  b.attn1_ = Attention::load(w.sub("attn1"), self_attn);
  b.norm2_ = LayerNorm::load(w, "norm2", dim, kLayerNormEps);
  b.attn2_ = Attention::load(w.sub("attn2"), cross_attn);
  b.norm3_ = LayerNorm::load(w, "norm3", dim, kLayerNormEps);
  int64_t ff_inner = kFeedForwardMult * dim;
  b.feed_forward_slice_bytes_ = cfg.feed_forward_slice_bytes;
  b.ff_proj_in_ = Linear::load(w, "ff.net.0.proj", dim, 2 * ff_inner);
  b.ff_proj_out_ = Linear::load(w, "ff.net.2", ff_inner, dim);
  return b;
}

void BasicTransformerBlock::apply_inplace(Tensor& x, const Tensor& context) const {
  kernels::add_inplace(x, attn1_(norm1_(x), only_cross_attention_ ? context : Tensor()));
  kernels::add_inplace(x, attn2_(norm2_(x), context));
  feed_forward_inplace(x);
}

// x += ff(norm3(x)) a slice of rows at a time. GEGLU's inner activations are 8x the block's width
// (two halves of 4x): 84 MB at 64x64 latents and batch 2, the UNet's largest tensor. Rows are
// independent, so equal slices of at most feed_forward_slice_bytes give the same result in a fraction
// of the memory (diffusers' enable_forward_chunking), and each slice is still a large GEMM.
void BasicTransformerBlock::feed_forward_inplace(Tensor& x) const {
  const int64_t dim = x.dim(x.rank() - 1), rows = x.numel() / dim;
  const int64_t row_bytes = ff_proj_in_.out_features() * static_cast<int64_t>(sizeof(float));
  const int64_t budget = std::max(row_bytes, feed_forward_slice_bytes_);
  const int64_t slices = (rows * row_bytes + budget - 1) / budget;
  const int64_t slice_rows = (rows + slices - 1) / slices;
  Tensor flat = x.reshape({rows, dim});
  for (int64_t r = 0; r < rows; r += slice_rows) {
    Tensor part = flat.slice0(r, std::min(rows, r + slice_rows));
    ff_proj_out_.accumulate(kernels::geglu(ff_proj_in_(norm3_(part))), part);
  }
}

Transformer2DModel Transformer2DModel::load(const WeightSource& w, const Transformer2DConfig& cfg) {
  SDRT_CHECK(cfg.in_channels > 0 && cfg.heads > 0 && cfg.head_dim > 0 && cfg.num_layers >= 0, w.path(),
             ": Transformer2DModel: invalid configuration (channels ", cfg.in_channels, ", heads ", cfg.heads,
             ", head_dim ", cfg.head_dim, ", layers ", cfg.num_layers, ")");
  SDRT_CHECK(cfg.cross_attention_dim > 0, w.path(),
             ": Transformer2DModel without cross_attention_dim is not supported");
  Transformer2DModel t;
  t.cfg_ = cfg;
  int64_t inner = cfg.inner_dim();
  t.norm_ = GroupNorm::load(w, "norm", cfg.in_channels, cfg.norm_groups, kInputNormEps);
  t.proj_in_ = load_projection(w, "proj_in", cfg.in_channels, inner, cfg.use_linear_projection);
  t.blocks_.reserve(static_cast<size_t>(cfg.num_layers));
  for (int i = 0; i < cfg.num_layers; ++i)
    t.blocks_.push_back(BasicTransformerBlock::load(w.sub(str("transformer_blocks.", i)), inner, cfg));
  t.proj_out_ = load_projection(w, "proj_out", inner, cfg.in_channels, cfg.use_linear_projection);
  return t;
}

Tensor Transformer2DModel::operator()(const Tensor& x, const Tensor& context) const {
  SDRT_CHECK(x.rank() == 4 && x.dim(1) == cfg_.in_channels, "Transformer2DModel: input ", shape_str(x.shape()),
             " is not [B, ", cfg_.in_channels, ", H, W]");
  SDRT_CHECK(context.rank() == 3 && context.dim(0) == x.dim(0) && context.dim(2) == cfg_.cross_attention_dim,
             "Transformer2DModel: encoder_hidden_states ", shape_str(context.shape()), " is not [", x.dim(0), ", L, ",
             cfg_.cross_attention_dim, "]");
  int64_t h = x.dim(2), w = x.dim(3);
  // diffusers projects before (conv) or after (linear) moving to [B, H*W, C]; per-pixel
  // projections commute with that permutation, so both kinds run on tokens here.
  Tensor tokens = proj_in_(kernels::nchw_to_nlc(norm_(x)));
  for (const auto& block : blocks_) block.apply_inplace(tokens, context);
  Tensor out = kernels::nlc_to_nchw(proj_out_(tokens), h, w);
  kernels::add_inplace(out, x);
  return out;
}

}  // namespace sdrt
