#include "models/attention.h"

#include <cmath>

namespace sdrt {

Attention Attention::load(const WeightSource& w, const AttentionConfig& cfg) {
  Attention a;
  a.cfg_ = cfg;
  a.precision_ = w.compute_precision();
  int64_t inner = cfg.heads * cfg.head_dim;
  int64_t ctx = cfg.context_dim > 0 ? cfg.context_dim : cfg.query_dim;
  a.to_q_ = Linear::load_any(w, {"to_q", "query"}, cfg.query_dim, inner, cfg.qkv_bias);
  a.to_k_ = Linear::load_any(w, {"to_k", "key"}, ctx, inner, cfg.qkv_bias);
  a.to_v_ = Linear::load_any(w, {"to_v", "value"}, ctx, inner, cfg.qkv_bias);
  a.to_out_ = Linear::load_any(w, {"to_out.0", "proj_attn"}, inner, cfg.query_dim, true);
  return a;
}

Tensor Attention::operator()(const Tensor& x, const Tensor& context) const {
  const Tensor& ctx = context.defined() ? context : x;
  Tensor q = to_q_(x), k = to_k_(ctx), v = to_v_(ctx);
  float scale = 1.0f / std::sqrt(static_cast<float>(cfg_.head_dim));
  return to_out_(kernels::attention(q, k, v, cfg_.heads, scale, /*causal=*/false, precision_));
}

}  // namespace sdrt
