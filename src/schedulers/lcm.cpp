#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// LCMScheduler (Luo et al. 2023, latent consistency models): each step maps x_t to the
// consistency function's x0 estimate ("denoised") and, except on the last step, re-noises it
// to the next timestep with fresh noise.
#include <algorithm>
#include <cmath>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

class LcmScheduler final : public SchedulerBase {
 public:
  explicit LcmScheduler(const Config& file) : LcmScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    const int n = num_inference_steps;
    // The distillation schedule: every k-th training timestep, k = train / original steps.
    const int k = schedule_.num_train_timesteps / original_inference_steps_;
    std::vector<int64_t> origin_descending;
    for (int i = original_inference_steps_; i >= 1; --i) origin_descending.push_back(static_cast<int64_t>(i) * k - 1);
    SDRT_CHECK(n <= original_inference_steps_, name_, ": num_inference_steps ", n,
               " cannot exceed original_inference_steps ", original_inference_steps_, " (", source_, ")");

    std::vector<int64_t> ts;
    for (double index : np_linspace(0, static_cast<double>(origin_descending.size()), n, /*endpoint=*/false)) {
      ts.push_back(origin_descending[static_cast<size_t>(std::floor(index))]);
    }
    int_timesteps_ = ts;
    timesteps_.assign(ts.begin(), ts.end());
    denoised_ = Tensor();
  }

  // The last step returns the denoised sample without re-noising.
  bool needs_noise(size_t step_index) const override { return step_index + 1 < int_timesteps_.size(); }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    const int64_t timestep = int_timesteps_[step_index];
    const bool last = step_index + 1 == int_timesteps_.size();
    const int64_t prev_timestep = last ? timestep : int_timesteps_[step_index + 1];

    const float alpha_prod_t = schedule_.alphas_cumprod[timestep];
    const float alpha_prod_t_prev = prev_timestep >= 0 ? schedule_.alphas_cumprod[prev_timestep] : final_alpha_cumprod_;
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;

    // Boundary-condition scalings c_skip, c_out (sigma_data = 0.5), float32 like torch.
    const float scaled_timestep = static_cast<float>(timestep) * timestep_scaling_;
    const float sigma_data_sq = 0.25f;
    const float c_skip = sigma_data_sq / (scaled_timestep * scaled_timestep + sigma_data_sq);
    const float c_out = scaled_timestep / std::sqrt(scaled_timestep * scaled_timestep + sigma_data_sq);

    const float sqrt_alpha = std::sqrt(alpha_prod_t);
    const float sqrt_beta = std::sqrt(beta_prod_t);
    Tensor pred_original;
    switch (prediction_type_) {
      case PredictionType::Epsilon:
        pred_original = map2(sample, model_output, [&](float x, float e) { return (x - sqrt_beta * e) / sqrt_alpha; });
        break;
      case PredictionType::Sample:
        pred_original = model_output;
        break;
      case PredictionType::VPrediction:
        pred_original = map2(sample, model_output, [&](float x, float v) { return sqrt_alpha * x - sqrt_beta * v; });
        break;
    }
    if (clip_sample_) {
      const float range = clip_sample_range_;
      pred_original = map1(pred_original, [&](float x0) { return std::clamp(x0, -range, range); });
    }
    denoised_ = map2(pred_original, sample, [&](float x0, float x) { return c_out * x0 + c_skip * x; });
    if (last) return denoised_.clone();

    const float sqrt_alpha_prev = std::sqrt(alpha_prod_t_prev);
    const float sqrt_beta_prev = std::sqrt(beta_prod_t_prev);
    return map2(denoised_, *noise, [&](float d, float z) { return sqrt_alpha_prev * d + sqrt_beta_prev * z; });
  }

  const Tensor* pred_original_sample() const override { return denoised_.defined() ? &denoised_ : nullptr; }

 private:
  explicit LcmScheduler(ConfigReader config) : SchedulerBase("lcm", config) {
    schedule_ =
        read_noise_schedule(config, {.beta_start = 0.00085, .beta_end = 0.012, .beta_schedule = "scaled_linear"});
    original_inference_steps_ = config.get<int>("original_inference_steps", 50);
    if (original_inference_steps_ < 1 || original_inference_steps_ > schedule_.num_train_timesteps) {
      config.bad_value("original_inference_steps", "must be between 1 and num_train_timesteps");
    }
    clip_sample_ = config.get<bool>("clip_sample", false);
    clip_sample_range_ = static_cast<float>(config.get<double>("clip_sample_range", 1.0));
    const bool set_alpha_to_one = config.get<bool>("set_alpha_to_one", true);
    final_alpha_cumprod_ = set_alpha_to_one ? 1.0f : schedule_.alphas_cumprod.front();
    config.get<int>("steps_offset", 0);  // diffusers' LCM does not use it
    prediction_type_ = read_prediction_type(config);
    reject_thresholding(config);
    read_timestep_spacing(config, TimestepSpacing::Leading);  // validated; LCM's schedule ignores it
    timestep_scaling_ = static_cast<float>(config.get<double>("timestep_scaling", 10.0));
    finish_config(config, "LCMScheduler");
  }

  NoiseSchedule schedule_;
  int original_inference_steps_ = 50;
  bool clip_sample_ = false;
  float clip_sample_range_ = 1.0f;
  float final_alpha_cumprod_ = 1.0f;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  float timestep_scaling_ = 10.0f;

  std::vector<int64_t> int_timesteps_;
  Tensor denoised_;
};

}  // namespace

std::unique_ptr<Scheduler> make_lcm(const Config& config) { return std::make_unique<LcmScheduler>(config); }

}  // namespace sdrt::sched
