#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// EulerAncestralDiscreteScheduler: an Euler step down to sigma_down followed by fresh noise of
// scale sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2 (k-diffusion's sample_euler_ancestral).
#include <cmath>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

class EulerAncestralScheduler final : public SchedulerBase {
 public:
  explicit EulerAncestralScheduler(const Config& file) : EulerAncestralScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    const std::vector<float> ts =
        sigma_family_timesteps(spacing_, num_inference_steps, schedule_.num_train_timesteps, steps_offset_);
    const std::vector<float> train_sigmas = sigmas_from_alphas_cumprod(schedule_.alphas_cumprod);
    sigmas_ = to_f32_with_last(np_interp(std::vector<double>(ts.begin(), ts.end()), train_sigmas), 0.0f);
    timesteps_.assign(ts.begin(), ts.end());
    pred_original_ = Tensor();
  }

  float init_noise_sigma() const override {
    SDRT_CHECK(!sigmas_.empty(), name_, ": init_noise_sigma() needs set_timesteps() first");
    return sigma_family_init_noise_sigma(sigmas_, spacing_);
  }

  Tensor scale_model_input(const Tensor& sample, size_t step_index) const override {
    check_index(step_index);
    const float sigma = sigmas_[step_index];
    const float scale = std::sqrt(sigma * sigma + 1.0f);
    return map1(sample, [&](float x) { return x / scale; });
  }

  bool needs_noise(size_t) const override { return true; }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    const float sigma = sigmas_[step_index];
    if (prediction_type_ == PredictionType::Epsilon) {
      pred_original_ = map2(sample, model_output, [&](float x, float e) { return x - sigma * e; });
    } else {
      const float sigma_sq_plus_one = sigma * sigma + 1.0f;
      const float output_coeff = -sigma / std::sqrt(sigma_sq_plus_one);
      pred_original_ =
          map2(sample, model_output, [&](float x, float v) { return v * output_coeff + x / sigma_sq_plus_one; });
    }

    const float sigma_from = sigma;
    const float sigma_to = sigmas_[step_index + 1];
    const float from_sq = sigma_from * sigma_from;
    const float to_sq = sigma_to * sigma_to;
    const float sigma_up = std::sqrt(to_sq * (from_sq - to_sq) / from_sq);
    const float sigma_down = std::sqrt(to_sq - sigma_up * sigma_up);
    const float dt = sigma_down - sigma;
    return map3(sample, pred_original_, *noise, [&](float x, float x0, float z) {
      const float derivative = (x - x0) / sigma;
      const float deterministic = x + derivative * dt;
      return deterministic + z * sigma_up;
    });
  }

  std::vector<float> sigmas() const override { return sigmas_; }
  const Tensor* pred_original_sample() const override { return pred_original_.defined() ? &pred_original_ : nullptr; }

 private:
  explicit EulerAncestralScheduler(ConfigReader config) : SchedulerBase("euler_a", config) {
    schedule_ = read_noise_schedule(config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear"});
    if (schedule_.rescaled_zero_snr) schedule_.alphas_cumprod.back() = 0x1p-24f;  // as diffusers does
    prediction_type_ = read_prediction_type(config);
    if (prediction_type_ == PredictionType::Sample) {
      config.bad_value("prediction_type", "EulerAncestralDiscreteScheduler does not implement sample prediction");
    }
    spacing_ = read_timestep_spacing(config, TimestepSpacing::Linspace);
    steps_offset_ = config.get<int>("steps_offset", 0);
    finish_config(config, "EulerAncestralDiscreteScheduler");
  }

  NoiseSchedule schedule_;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  TimestepSpacing spacing_ = TimestepSpacing::Linspace;
  int steps_offset_ = 0;

  std::vector<float> sigmas_;
  Tensor pred_original_;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_ancestral(const Config& config) {
  return std::make_unique<EulerAncestralScheduler>(config);
}

}  // namespace sdrt::sched
