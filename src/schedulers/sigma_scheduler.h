// The state and methods Euler, Euler ancestral and LMS share. They work in the sigma
// parametrisation x = x0 + sigma * eps: the latents start at the largest sigma, the UNet sees
// x / sqrt(sigma^2 + 1), and every step first predicts x0 at the current sigma.
#pragma once

#include <string>
#include <vector>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {

class SigmaSchedulerBase : public SchedulerBase {
 public:
  // Sigmas interpolated from the training schedule at the spaced timesteps. Euler ancestral
  // uses this as it is; Euler and LMS override it for their other sigma spacings.
  void set_timesteps(int num_inference_steps) override;
  float init_noise_sigma() const override;
  Tensor scale_model_input(const Tensor& sample, size_t step_index) const override;
  std::vector<float> sigmas() const override { return sigmas_; }
  const Tensor* pred_original_sample() const override { return pred_original_.defined() ? &pred_original_ : nullptr; }

 protected:
  // Reads the keys all three classes share: the noise schedule, prediction_type,
  // timestep_spacing (default linspace) and steps_offset.
  SigmaSchedulerBase(std::string name, ConfigReader& config, const ScheduleDefaults& defaults);

  // Checks the step count and returns the spaced timesteps, descending: float32 values, as
  // diffusers computes them, held in the double the Scheduler API uses.
  std::vector<double> spaced_timesteps(int num_inference_steps) const;
  std::vector<float> training_sigmas() const { return sigmas_from_alphas_cumprod(schedule_.alphas_cumprod); }
  // The fractional training timestep of each sigma, float64 (diffusers' _sigma_to_t).
  std::vector<double> timesteps_for_sigmas(const std::vector<double>& sigmas) const;
  // Starts a new trajectory: the sigmas, rounded to float32 and followed by a final 0, and the
  // timesteps the UNet is called with. Forgets the previous trajectory's x0 prediction.
  void start_trajectory(const std::vector<double>& timesteps, const std::vector<double>& sigmas);
  // The x0 prediction at noise level `sigma`, kept for pred_original_sample().
  const Tensor& predict_original_sample(const Tensor& model_output, const Tensor& sample, float sigma);

  NoiseSchedule schedule_;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  TimestepSpacing spacing_ = TimestepSpacing::Linspace;
  int steps_offset_ = 0;
  std::vector<float> sigmas_;

 private:
  Tensor pred_original_;
};

}  // namespace sdrt::sched
