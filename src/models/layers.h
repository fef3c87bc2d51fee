// The leaf modules of the diffusers/transformers trees (nn.Linear, nn.Conv2d, nn.GroupNorm,
// nn.LayerNorm): weights bound by name and shape, forward through the kernel interface.
#pragma once

#include <string>

#include "kernels/kernels.h"
#include "models/weights.h"

namespace sdrt {

struct Linear {
  Tensor weight, bias;  // weight [out, in]; bias may be undefined
  static Linear load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, bool has_bias = true);
  // Accepts the alternative names of historical checkpoints (e.g. "query" for "to_q"), and a 1x1 conv
  // weight [out, in, 1, 1] in place of [out, in].
  static Linear load_any(const WeightSource& w, const std::vector<std::string>& names, int64_t in, int64_t out,
                         bool has_bias = true);
  Tensor operator()(const Tensor& x) const { return kernels::linear(x, weight, bias); }
  int64_t in_features() const { return weight.dim(1); }
  int64_t out_features() const { return weight.dim(0); }
};

struct Conv2d {
  Tensor weight, bias;  // weight [out, in, k, k]
  kernels::Conv2dParams params;
  static Conv2d load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel,
                     kernels::Conv2dParams params, bool has_bias = true);
  // The usual "same" convolution: stride 1, padding kernel/2.
  static Conv2d load_same(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel);
  Tensor operator()(const Tensor& x) const { return kernels::conv2d(x, weight, bias, params); }
  int64_t out_channels() const { return weight.dim(0); }
};

struct GroupNorm {
  Tensor gamma, beta;
  int groups = 32;
  float eps = 1e-5f;
  static GroupNorm load(const WeightSource& w, const std::string& name, int64_t channels, int groups, float eps);
  Tensor operator()(const Tensor& x, bool fuse_silu = false) const {
    return kernels::group_norm(x, groups, gamma, beta, eps, fuse_silu);
  }
};

struct LayerNorm {
  Tensor gamma, beta;
  float eps = 1e-5f;
  static LayerNorm load(const WeightSource& w, const std::string& name, int64_t dim, float eps);
  Tensor operator()(const Tensor& x) const { return kernels::layer_norm(x, gamma, beta, eps); }
};

}  // namespace sdrt
