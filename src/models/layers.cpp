#include "models/layers.h"

#include "core/error.h"

namespace sdrt {

Linear::Linear(Tensor weight, Tensor bias, kernels::Precision precision)
    : packed_(std::make_shared<const kernels::PackedLinear>(std::move(weight), std::move(bias), precision)) {}

Linear Linear::load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, bool has_bias) {
  return load_any(w, {name}, in, out, has_bias);
}

Linear Linear::load_any(const WeightSource& w, const std::vector<std::string>& names, int64_t in, int64_t out,
                        bool has_bias) {
  std::vector<std::string> weight_names, bias_names;
  for (const auto& n : names) {
    weight_names.push_back(n + ".weight");
    bias_names.push_back(n + ".bias");
  }
  Tensor weight = w.get_any(weight_names, {out, in});
  Tensor bias = has_bias ? w.get_any(bias_names, {out}) : Tensor();
  return Linear(std::move(weight), std::move(bias), w.compute_precision());
}

void Linear::accumulate(const Tensor& x, Tensor& acc) const {
  if (packed_) {
    packed_->accumulate(x, acc);
  } else {
    kernels::add_inplace(acc, kernels::linear(x, weight, bias));
  }
}

Conv2d::Conv2d(Tensor weight, Tensor bias, kernels::Conv2dParams params, kernels::Precision precision)
    : packed_(std::make_shared<const kernels::PackedConv2d>(std::move(weight), std::move(bias), params, precision)) {}

Conv2d Conv2d::load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel,
                    kernels::Conv2dParams params, bool has_bias) {
  Tensor weight = w.get(name + ".weight", {out, in, kernel, kernel});
  Tensor bias = has_bias ? w.get(name + ".bias", {out}) : Tensor();
  return Conv2d(std::move(weight), std::move(bias), params, w.compute_precision());
}

Conv2d Conv2d::load_same(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel) {
  return load(w, name, in, out, kernel, kernels::Conv2dParams::symmetric(1, kernel / 2));
}

const kernels::PackedConv2d& Conv2d::packed_conv() const {
  SDRT_CHECK(packed_, "Conv2d: called before its weights were loaded");
  return *packed_;
}

GroupNorm GroupNorm::load(const WeightSource& w, const std::string& name, int64_t channels, int groups, float eps) {
  GroupNorm g;
  g.gamma = w.get(name + ".weight", {channels});
  g.beta = w.get(name + ".bias", {channels});
  g.groups = groups;
  g.eps = eps;
  return g;
}

LayerNorm LayerNorm::load(const WeightSource& w, const std::string& name, int64_t dim, float eps) {
  LayerNorm l;
  l.gamma = w.get(name + ".weight", {dim});
  l.beta = w.get(name + ".bias", {dim});
  l.eps = eps;
  return l;
}

}  // namespace sdrt
