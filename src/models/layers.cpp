#include "models/layers.h"

namespace sdrt {

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
  Linear l;
  l.weight = w.get_any(weight_names, {out, in});
  if (has_bias) l.bias = w.get_any(bias_names, {out});
  return l;
}

Conv2d Conv2d::load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel,
                    kernels::Conv2dParams params, bool has_bias) {
  Conv2d c;
  c.weight = w.get(name + ".weight", {out, in, kernel, kernel});
  if (has_bias) c.bias = w.get(name + ".bias", {out});
  c.params = params;
  return c;
}

Conv2d Conv2d::load_same(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel) {
  return load(w, name, in, out, kernel, kernels::Conv2dParams::symmetric(1, kernel / 2));
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
