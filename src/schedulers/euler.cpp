#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// EulerDiscreteScheduler: Karras et al. (2022) Algorithm 2 without churn (s_churn = 0, the
// pipeline default), on sigmas interpolated from the training schedule.
#include <cmath>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

class EulerScheduler final : public SchedulerBase {
 public:
  explicit EulerScheduler(const Config& file) : EulerScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    std::vector<float> ts =
        sigma_family_timesteps(spacing_, num_inference_steps, schedule_.num_train_timesteps, steps_offset_);
    const std::vector<float> train_sigmas = sigmas_from_alphas_cumprod(schedule_.alphas_cumprod);
    const std::vector<float> log_sigmas = log_f32(train_sigmas);

    std::vector<double> sigmas;
    if (log_linear_) {
      // N+1 sigmas log-spaced from the largest to the smallest training sigma (diffusers
      // 0.27.2 keeps all N+1, so the last step ends at sigma_min rather than 0).
      for (float log_sigma :
           torch_linspace_f32(std::log(train_sigmas.back()), std::log(train_sigmas.front()), num_inference_steps + 1)) {
        sigmas.push_back(std::exp(log_sigma));
      }
    } else {
      sigmas = np_interp(std::vector<double>(ts.begin(), ts.end()), train_sigmas);
    }
    if (use_karras_sigmas_) {
      sigmas =
          karras_sigmas(sigma_min_.value_or(sigmas.back()), sigma_max_.value_or(sigmas.front()), num_inference_steps);
      ts.clear();
      for (double sigma : sigmas) ts.push_back(static_cast<float>(sigma_to_t(sigma, log_sigmas)));
    }
    sigmas_ = to_f32_with_last(sigmas, 0.0f);
    if (continuous_timesteps_) {
      // Continuous-time v-prediction models take c_noise = log(sigma) / 4 as the timestep.
      ts.clear();
      for (size_t i = 0; i + 1 < sigmas_.size(); ++i) ts.push_back(0.25f * std::log(sigmas_[i]));
    }
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

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    const float sigma = sigmas_[step_index];
    const float sigma_hat = sigma * (0.0f + 1.0f);  // gamma = 0 without churn
    switch (prediction_type_) {
      case PredictionType::Epsilon:
        pred_original_ = map2(sample, model_output, [&](float x, float e) { return x - sigma_hat * e; });
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
    const float dt = sigmas_[step_index + 1] - sigma_hat;
    return map2(sample, pred_original_, [&](float x, float x0) {
      const float derivative = (x - x0) / sigma_hat;
      return x + derivative * dt;
    });
  }

  std::vector<float> sigmas() const override { return sigmas_; }
  const Tensor* pred_original_sample() const override { return pred_original_.defined() ? &pred_original_ : nullptr; }

 private:
  explicit EulerScheduler(ConfigReader config) : SchedulerBase("euler", config) {
    schedule_ = read_noise_schedule(config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear"});
    // Zero terminal SNR would make the last sigma infinite; diffusers clamps it to 2^-24.
    if (schedule_.rescaled_zero_snr) schedule_.alphas_cumprod.back() = 0x1p-24f;
    prediction_type_ = read_prediction_type(config);
    const std::string interpolation = config.get<std::string>("interpolation_type", "linear");
    if (interpolation != "linear" && interpolation != "log_linear") {
      config.bad_value("interpolation_type", "expected linear or log_linear");
    }
    log_linear_ = interpolation == "log_linear";
    use_karras_sigmas_ = config.get<bool>("use_karras_sigmas", false);
    sigma_min_ = config.get_optional<double>("sigma_min");
    sigma_max_ = config.get_optional<double>("sigma_max");
    spacing_ = read_timestep_spacing(config, TimestepSpacing::Linspace);
    const std::string timestep_type = config.get<std::string>("timestep_type", "discrete");
    if (timestep_type != "discrete" && timestep_type != "continuous") {
      config.bad_value("timestep_type", "expected discrete or continuous");
    }
    continuous_timesteps_ = timestep_type == "continuous" && prediction_type_ == PredictionType::VPrediction;
    steps_offset_ = config.get<int>("steps_offset", 0);
    finish_config(config, "EulerDiscreteScheduler");
  }

  NoiseSchedule schedule_;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  bool log_linear_ = false;
  bool use_karras_sigmas_ = false;
  std::optional<double> sigma_min_;
  std::optional<double> sigma_max_;
  TimestepSpacing spacing_ = TimestepSpacing::Linspace;
  bool continuous_timesteps_ = false;
  int steps_offset_ = 0;

  std::vector<float> sigmas_;
  Tensor pred_original_;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const Config& config) { return std::make_unique<EulerScheduler>(config); }

}  // namespace sdrt::sched
