// diffusers UNet2DConditionModel (unets/unet_2d_condition.py, v0.27.2), float32, built
// entirely from the component's config.json. The module tree mirrors diffusers', so every
// checkpoint tensor binds by its state-dict name and is shape-checked at load.
//
// Weights are immutable after load and forward() is const, so one model can serve several
// generations at once.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "models/unet_blocks.h"
#include "models/unet_config.h"

namespace sdrt {

class UNet2DConditionModel {
 public:
  // dir: the unet/ folder with config.json and diffusion_pytorch_model.safetensors (or
  // model.safetensors). Every weight is loaded and checked; unused tensors are reported on stderr.
  // `precision`: what its convolutions, linear layers and attention products compute in (kernels::Precision).
  static UNet2DConditionModel load(const std::string& dir, kernels::Precision precision = kernels::Precision::f32);
  static UNet2DConditionModel load(const UNetConfig& cfg, const WeightSource& weights);

  const UNetConfig& config() const { return cfg_; }

  // sample [B, in_channels, H, W] (any H, W; sizes that do not halve evenly upsample to the skip connections' sizes, as in diffusers), timesteps: B
  // values or one for the whole batch, encoder_hidden_states [B, L, cross_attention_dim]
  // -> [B, out_channels, H, W].
  Tensor forward(const Tensor& sample, const std::vector<float>& timesteps, const Tensor& encoder_hidden_states) const;
  // The same, recording the outputs of the named submodules into `trace` when non-null:
  // time_proj, time_embedding, conv_in, down_blocks.i, mid_block, up_blocks.i, conv_norm_out
  // (before the activation) and conv_out.
  Tensor forward(const Tensor& sample, const std::vector<float>& timesteps, const Tensor& encoder_hidden_states,
                 std::map<std::string, Tensor>* trace) const;

 private:
  void check_inputs(const Tensor& sample, const std::vector<float>& timesteps, const Tensor& context) const;
  Tensor time_embedding(const std::vector<float>& timesteps, int64_t batch, std::map<std::string, Tensor>* trace) const;

  UNetConfig cfg_;
  Conv2d conv_in_;
  Linear time_linear_1_, time_linear_2_;
  std::vector<UNetDownBlock> down_blocks_;
  std::optional<UNetMidBlock2DCrossAttn> mid_block_;
  std::vector<UNetUpBlock> up_blocks_;
  GroupNorm conv_norm_out_;
  Conv2d conv_out_;
};

}  // namespace sdrt
