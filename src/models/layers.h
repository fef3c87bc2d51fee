// The leaf modules of the diffusers/transformers trees (nn.Linear, nn.Conv2d, nn.GroupNorm,
// nn.LayerNorm): weights bound by name and shape, forward through the kernel interface.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/packed_conv2d.h"
#include "kernels/packed_linear.h"
#include "models/weights.h"

namespace sdrt {

// Sees the input of every convolution and linear layer called on this thread while an
// ObserveActivations scope is alive: how int8 calibration (quantization/) collects activation
// ranges from real runs of the float model. `layer` is the full dotted name.
class ActivationObserver {
 public:
  virtual ~ActivationObserver() = default;
  virtual void observe(const std::string& layer, const Tensor& input) = 0;
};

namespace detail {
extern thread_local constinit ActivationObserver* active_activation_observer;
inline void observe_input(const std::string& layer, const Tensor& x) {
  if (active_activation_observer) active_activation_observer->observe(layer, x);
}
}  // namespace detail

// Installs `observer` for the calling thread for the scope's lifetime (scopes nest).
class ObserveActivations {
 public:
  explicit ObserveActivations(ActivationObserver& observer) : previous_(detail::active_activation_observer) {
    detail::active_activation_observer = &observer;
  }
  ~ObserveActivations() { detail::active_activation_observer = previous_; }
  ObserveActivations(const ObserveActivations&) = delete;
  ObserveActivations& operator=(const ObserveActivations&) = delete;

 private:
  ActivationObserver* previous_;
};

// nn.Linear. A loaded Linear holds its weights packed for the fast kernel (kernels::PackedLinear);
// copies share them. operator() and accumulate() are const and may run concurrently.
struct Linear {
  // Unpacked parameters, for a Linear put together member by member (weight [out, in], bias [out]
  // or undefined): such a Linear runs the unpacked kernels::linear. load(), load_any() and the
  // (weight, bias) constructor pack the weights instead and leave these undefined.
  Tensor weight, bias;

  Linear() = default;
  // Packs `weight` [out, in] and `bias`; the Linear keeps no reference to the unpacked weight.
  Linear(Tensor weight, Tensor bias, kernels::Precision precision = kernels::Precision::f32);
  // load(), load_any() and Conv2d::load() pack at w.compute_precision().
  static Linear load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, bool has_bias = true);
  // Accepts the alternative names of historical checkpoints (e.g. "query" for "to_q"), and a 1x1 conv
  // weight [out, in, 1, 1] in place of [out, in].
  static Linear load_any(const WeightSource& w, const std::vector<std::string>& names, int64_t in, int64_t out,
                         bool has_bias = true);
  // A Linear whose checkpoint weight has shape `stored` (e.g. a 1x1 conv's [out, in, 1, 1]), viewed as [out, in].
  static Linear load_stored_as(const WeightSource& w, const std::string& name, const Shape& stored, int64_t in,
                               int64_t out);
  Tensor operator()(const Tensor& x) const {
    detail::observe_input(name_, x);
    return packed_ ? (*packed_)(x) : kernels::linear(x, weight, bias);
  }
  // acc += (*this)(x), with acc [..., out]: the residual add fused into the product (e.g. the
  // feed-forward's output projection added to the hidden states).
  void accumulate(const Tensor& x, Tensor& acc) const;
  int64_t in_features() const { return packed_ ? packed_->in_features() : weight.dim(1); }
  int64_t out_features() const { return packed_ ? packed_->out_features() : weight.dim(0); }
  bool is_packed() const { return packed_ != nullptr; }
  bool is_int8() const { return packed_ && packed_->precision() == kernels::Precision::int8; }
  const std::string& name() const { return name_; }  // full dotted name, for loaded layers

 private:
  // `stored`: the checkpoint's exact weight shape, or empty to accept [out, in] or [out, in, 1, 1].
  static Linear bind(const WeightSource& w, const std::string& name, const std::string& weight_name,
                     const Shape& stored, int64_t in, int64_t out, bool has_bias);
  std::shared_ptr<const kernels::PackedLinear> packed_;
  std::string name_;
};

// nn.Conv2d. Holds its weights packed for the fast kernel (kernels::PackedConv2d); copies share
// them. operator() and accumulate() are const and may run concurrently.
class Conv2d {
 public:
  Conv2d() = default;
  // Packs `weight` [out, in, kh, kw] and `bias` (may be undefined); keeps no reference to the unpacked weight.
  Conv2d(Tensor weight, Tensor bias, kernels::Conv2dParams params,
         kernels::Precision precision = kernels::Precision::f32);
  static Conv2d load(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel,
                     kernels::Conv2dParams params, bool has_bias = true);
  // The usual "same" convolution: stride 1, padding kernel/2.
  static Conv2d load_same(const WeightSource& w, const std::string& name, int64_t in, int64_t out, int kernel);
  Tensor operator()(const Tensor& x) const {
    detail::observe_input(name_, x);
    return packed_conv()(x);
  }
  // acc += (*this)(x), with acc of the output's shape: the residual add fused into the convolution
  // (e.g. ResnetBlock2D's conv_shortcut added to the block's output).
  void accumulate(const Tensor& x, Tensor& acc) const {
    detail::observe_input(name_, x);
    packed_conv().accumulate(x, acc);
  }
  // The same on channels-last activations [N, H, W, C] (see kernels::PackedConv2d::channels_last).
  Tensor channels_last(const Tensor& x) const {
    detail::observe_input(name_, x);
    return packed_conv().channels_last(x);
  }
  void accumulate_channels_last(const Tensor& x, Tensor& acc) const {
    detail::observe_input(name_, x);
    packed_conv().accumulate_channels_last(x, acc);
  }
  int64_t in_channels() const { return packed_conv().in_channels(); }
  int64_t out_channels() const { return packed_conv().out_channels(); }
  const kernels::Conv2dParams& params() const { return packed_conv().params(); }
  bool is_int8() const { return packed_ && packed_->precision() == kernels::Precision::int8; }
  const std::string& name() const { return name_; }  // full dotted name, for loaded layers

 private:
  const kernels::PackedConv2d& packed_conv() const;
  std::shared_ptr<const kernels::PackedConv2d> packed_;
  std::string name_;
};

struct GroupNorm {
  Tensor gamma, beta;
  int groups = 32;
  float eps = 1e-5f;
  static GroupNorm load(const WeightSource& w, const std::string& name, int64_t channels, int groups, float eps);
  Tensor operator()(const Tensor& x, bool fuse_silu = false) const {
    return kernels::group_norm(x, groups, gamma, beta, eps, fuse_silu);
  }
  // x [N, H, W, C].
  Tensor channels_last(const Tensor& x, bool fuse_silu = false) const {
    return kernels::group_norm_channels_last(x, groups, gamma, beta, eps, fuse_silu);
  }
};

struct LayerNorm {
  Tensor gamma, beta;
  float eps = 1e-5f;
  static LayerNorm load(const WeightSource& w, const std::string& name, int64_t dim, float eps);
  Tensor operator()(const Tensor& x) const { return kernels::layer_norm(x, gamma, beta, eps); }
};

}  // namespace sdrt
