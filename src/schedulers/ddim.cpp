#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// DDIMScheduler (Song et al. 2021), deterministic (eta = 0, the pipeline default).
#include <algorithm>
#include <cmath>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

class DdimScheduler final : public SchedulerBase {
 public:
  explicit DdimScheduler(const Config& file) : DdimScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    num_inference_steps_ = num_inference_steps;
    int_timesteps_ = discrete_timesteps(spacing_, num_inference_steps, schedule_.num_train_timesteps, steps_offset_);
    timesteps_.assign(int_timesteps_.begin(), int_timesteps_.end());
    pred_original_ = Tensor();
  }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    const int64_t timestep = int_timesteps_[step_index];
    // diffusers steps back by train/N whatever the spacing, so with linspace or trailing
    // spacing the "previous" timestep is not the next one in the list.
    const int64_t prev_timestep = timestep - schedule_.num_train_timesteps / num_inference_steps_;
    SDRT_CHECK(timestep >= 0 && timestep < schedule_.num_train_timesteps, name_, ": timestep ", timestep,
               " out of range");

    const float alpha_prod_t = schedule_.alphas_cumprod[timestep];
    const float alpha_prod_t_prev = prev_timestep >= 0 ? schedule_.alphas_cumprod[prev_timestep] : final_alpha_cumprod_;
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float sqrt_alpha = std::sqrt(alpha_prod_t);
    const float sqrt_beta = std::sqrt(beta_prod_t);

    Tensor pred_original;
    Tensor pred_epsilon;
    switch (prediction_type_) {
      case PredictionType::Epsilon:
        pred_original = map2(sample, model_output, [&](float x, float e) { return (x - sqrt_beta * e) / sqrt_alpha; });
        pred_epsilon = model_output;
        break;
      case PredictionType::Sample:
        pred_original = model_output.clone();
        pred_epsilon = map2(sample, model_output, [&](float x, float x0) { return (x - sqrt_alpha * x0) / sqrt_beta; });
        break;
      case PredictionType::VPrediction:
        pred_original = map2(sample, model_output, [&](float x, float v) { return sqrt_alpha * x - sqrt_beta * v; });
        pred_epsilon = map2(sample, model_output, [&](float x, float v) { return sqrt_alpha * v + sqrt_beta * x; });
        break;
    }
    if (clip_sample_) {
      const float range = clip_sample_range_;
      pred_original = map1(pred_original, [&](float x0) { return std::clamp(x0, -range, range); });
    }

    // eta = 0: no variance term, so the direction coefficient is sqrt(1 - alpha_prev - 0).
    const float direction_coeff = std::sqrt(1.0f - alpha_prod_t_prev - 0.0f);
    const float sqrt_alpha_prev = std::sqrt(alpha_prod_t_prev);
    Tensor prev = map2(pred_original, pred_epsilon, [&](float x0, float e) {
      const float direction = direction_coeff * e;
      return sqrt_alpha_prev * x0 + direction;
    });
    pred_original_ = pred_original;
    return prev;
  }

  const Tensor* pred_original_sample() const override { return pred_original_.defined() ? &pred_original_ : nullptr; }

 private:
  explicit DdimScheduler(ConfigReader config) : SchedulerBase("ddim", config) {
    schedule_ = read_noise_schedule(config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear"});
    clip_sample_ = config.get<bool>("clip_sample", true);
    clip_sample_range_ = static_cast<float>(config.get<double>("clip_sample_range", 1.0));
    const bool set_alpha_to_one = config.get<bool>("set_alpha_to_one", true);
    final_alpha_cumprod_ = set_alpha_to_one ? 1.0f : schedule_.alphas_cumprod.front();
    steps_offset_ = config.get<int>("steps_offset", 0);
    prediction_type_ = read_prediction_type(config);
    reject_thresholding(config);
    spacing_ = read_timestep_spacing(config, TimestepSpacing::Leading);
    finish_config(config, "DDIMScheduler");
  }

  NoiseSchedule schedule_;
  bool clip_sample_ = true;
  float clip_sample_range_ = 1.0f;
  float final_alpha_cumprod_ = 1.0f;
  int steps_offset_ = 0;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  TimestepSpacing spacing_ = TimestepSpacing::Leading;

  int num_inference_steps_ = 0;
  std::vector<int64_t> int_timesteps_;
  Tensor pred_original_;
};

}  // namespace

std::unique_ptr<Scheduler> make_ddim(const Config& config) { return std::make_unique<DdimScheduler>(config); }

}  // namespace sdrt::sched
