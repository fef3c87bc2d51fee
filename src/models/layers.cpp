#include "models/layers.h"

#include <optional>

#include "core/error.h"

namespace sdrt {

namespace detail {
thread_local constinit ActivationObserver* active_activation_observer = nullptr;
}  // namespace detail

namespace {

// A layer's int8 form, if it has one: stored as I8 in an int8 model folder (static scales), or
// quantised now from float weights when the source's policy says so (dynamic scales).
struct Int8Binding {
  kernels::Int8Weights weights;
  float input_scale = 0;
};

// Float weights viewed as `expected`. An empty `stored` accepts the equivalent 1x1 conv layout of
// a linear weight (historical checkpoints); otherwise the stored shape must be exactly `stored`.
Tensor float_weight(const WeightSource& w, const std::string& weight_name, const Shape& stored, const Shape& expected) {
  return stored.empty() ? w.get_any({weight_name}, expected) : w.get(weight_name, stored).reshape(expected);
}

std::optional<Int8Binding> int8_binding(const WeightSource& w, const std::string& layer, const std::string& weight_name,
                                        const Shape& stored, const Shape& expected) {
  const Int8Policy* policy = w.int8_policy();
  if (w.holds_int8(weight_name)) {
    if (!policy || !policy->file_decides())
      fail(w.path(), ": tensor '", w.full_name(weight_name),
           "' holds int8 weights, but the model folder has no quantization_config.json saying how to run them "
           "(docs/quantization.md)");
    return Int8Binding{w.get_int8(layer, weight_name, expected),
                       policy->static_activations() ? w.get_input_scale(layer) : 0.0f};
  }
  if (!policy || !policy->quantizes(w.full_name(layer))) return std::nullopt;
  return Int8Binding{kernels::Int8Weights::quantize(float_weight(w, weight_name, stored, expected)), 0.0f};
}

}  // namespace

Linear::Linear(Tensor weight, Tensor bias, kernels::Precision precision)
    : packed_(std::make_shared<const kernels::PackedLinear>(std::move(weight), std::move(bias), precision)) {}

Linear Linear::load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, bool has_bias) {
  return load_any(w, {name}, in, out, has_bias);
}

Linear Linear::load_any(const WeightSource& w, const std::vector<std::string>& names, int64_t in, int64_t out,
                        bool has_bias) {
  // The first name present; its weight may be [out, in] or a 1x1 conv's [out, in, 1, 1].
  for (const auto& n : names) {
    if (!w.contains(n + ".weight")) continue;
    return bind(w, n, n + ".weight", /*stored=*/{}, in, out, has_bias);
  }
  std::vector<std::string> weight_names;
  for (const auto& n : names) weight_names.push_back(n + ".weight");
  Tensor weight = w.get_any(weight_names, {out, in});  // fails, naming every alternative (or makes a synthetic one)
  Tensor bias = has_bias ? w.get_any({names.front() + ".bias"}, {out}) : Tensor();
  Linear l(std::move(weight), std::move(bias), w.compute_precision());
  l.name_ = w.full_name(names.front());
  return l;
}

Linear Linear::load_stored_as(const WeightSource& w, const std::string& name, const Shape& stored, int64_t in,
                              int64_t out) {
  return bind(w, name, name + ".weight", stored, in, out, true);
}

Linear Linear::bind(const WeightSource& w, const std::string& name, const std::string& weight_name,
                    const Shape& stored, int64_t in, int64_t out, bool has_bias) {
  Tensor bias = has_bias ? w.get(name + ".bias", {out}) : Tensor();
  Linear l;
  if (auto q = int8_binding(w, name, weight_name, stored, {out, in})) {
    l.packed_ = std::make_shared<const kernels::PackedLinear>(std::move(q->weights), std::move(bias), q->input_scale);
  } else {
    l = Linear(float_weight(w, weight_name, stored, {out, in}), std::move(bias), w.compute_precision());
  }
  l.name_ = w.full_name(name);
  return l;
}

void Linear::accumulate(const Tensor& x, Tensor& acc) const {
  detail::observe_input(name_, x);
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
  const Shape shape{out, in, kernel, kernel};
  Tensor bias = has_bias ? w.get(name + ".bias", {out}) : Tensor();
  Conv2d c;
  if (auto q = int8_binding(w, name, name + ".weight", shape, shape)) {
    c.packed_ =
        std::make_shared<const kernels::PackedConv2d>(std::move(q->weights), std::move(bias), params, q->input_scale);
  } else {
    c = Conv2d(w.get(name + ".weight", shape), std::move(bias), params, w.compute_precision());
  }
  c.name_ = w.full_name(name);
  return c;
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
