#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

#include <algorithm>
#include <cmath>
#include <utility>

#include "schedulers/sigma_scheduler.h"

namespace sdrt::sched {

SigmaSchedulerBase::SigmaSchedulerBase(std::string name, ConfigReader& config, const ScheduleDefaults& defaults)
    : SchedulerBase(std::move(name), config) {
  schedule_ = read_noise_schedule(config, defaults);
  // Zero terminal SNR would make the last sigma infinite; diffusers clamps it to 2^-24.
  if (schedule_.rescaled_zero_snr) schedule_.alphas_cumprod.back() = 0x1p-24f;
  prediction_type_ = read_prediction_type(config);
  spacing_ = read_timestep_spacing(config, TimestepSpacing::Linspace);
  steps_offset_ = config.get<int>("steps_offset", 0);
}

void SigmaSchedulerBase::set_timesteps(int num_inference_steps) {
  const std::vector<double> timesteps = spaced_timesteps(num_inference_steps);
  start_trajectory(timesteps, np_interp(timesteps, training_sigmas()));
}

// max(sigmas), or sqrt(max^2 + 1) for leading spacing, as diffusers has it.
float SigmaSchedulerBase::init_noise_sigma() const {
  SDRT_CHECK(!sigmas_.empty(), name_, ": init_noise_sigma() needs set_timesteps() first");
  const float max_sigma = *std::max_element(sigmas_.begin(), sigmas_.end());
  if (spacing_ == TimestepSpacing::Leading) return std::sqrt(max_sigma * max_sigma + 1.0f);
  return max_sigma;
}

Tensor SigmaSchedulerBase::scale_model_input(const Tensor& sample, size_t step_index) const {
  check_index(step_index);
  const float sigma = sigmas_[step_index];
  const float scale = std::sqrt(sigma * sigma + 1.0f);
  return map1(sample, [&](float x) { return x / scale; });
}

// Unlike DDIM and PNDM, linspace spacing keeps the fractional timesteps here.
std::vector<double> SigmaSchedulerBase::spaced_timesteps(int num_inference_steps) const {
  const int train = schedule_.num_train_timesteps;
  check_step_count(num_inference_steps, train, name_);
  const int n = num_inference_steps;
  std::vector<double> ts;
  switch (spacing_) {
    case TimestepSpacing::Linspace: {
      std::vector<double> ascending = np_linspace(0, train - 1, n);
      for (auto it = ascending.rbegin(); it != ascending.rend(); ++it) ts.push_back(static_cast<float>(*it));
      break;
    }
    case TimestepSpacing::Leading:
      for (int i = n - 1; i >= 0; --i) {
        ts.push_back(static_cast<float>(i * (train / n)) + static_cast<float>(steps_offset_));
      }
      break;
    case TimestepSpacing::Trailing:
      for (double t : np_arange(train, 0, -(static_cast<double>(train) / n))) {
        ts.push_back(static_cast<float>(round_half_even(t)) - 1.0f);
      }
      break;
  }
  return ts;
}

std::vector<double> SigmaSchedulerBase::timesteps_for_sigmas(const std::vector<double>& sigmas) const {
  const std::vector<float> log_sigmas = log_f32(training_sigmas());
  std::vector<double> timesteps;
  for (double sigma : sigmas) timesteps.push_back(sigma_to_t(sigma, log_sigmas));
  return timesteps;
}

void SigmaSchedulerBase::start_trajectory(const std::vector<double>& timesteps, const std::vector<double>& sigmas) {
  timesteps_ = timesteps;
  sigmas_ = to_f32_with_last(sigmas, 0.0f);
  pred_original_ = Tensor();
}

const Tensor& SigmaSchedulerBase::predict_original_sample(const Tensor& model_output, const Tensor& sample,
                                                          float sigma) {
  switch (prediction_type_) {
    case PredictionType::Epsilon:
      pred_original_ = map2(sample, model_output, [&](float x, float e) { return x - sigma * e; });
      break;
    case PredictionType::VPrediction: {
      const float sigma_sq_plus_one = sigma * sigma + 1.0f;
      const float output_coeff = -sigma / std::sqrt(sigma_sq_plus_one);
      pred_original_ =
          map2(sample, model_output, [&](float x, float v) { return v * output_coeff + x / sigma_sq_plus_one; });
      break;
    }
    case PredictionType::Sample:
      pred_original_ = model_output.clone();
      break;
  }
  return pred_original_;
}

}  // namespace sdrt::sched
