#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// EulerDiscreteScheduler: Karras et al. (2022) Algorithm 2 without churn (s_churn = 0, the
// pipeline default), on sigmas interpolated from the training schedule.
#include <cmath>

#include "schedulers/sigma_scheduler.h"

namespace sdrt::sched {
namespace {

class EulerScheduler final : public SigmaSchedulerBase {
 public:
  explicit EulerScheduler(const Config& file) : EulerScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    std::vector<double> timesteps = spaced_timesteps(num_inference_steps);
    const std::vector<float> train_sigmas = training_sigmas();
    std::vector<double> sigmas =
        log_linear_ ? log_linear_sigmas(train_sigmas, num_inference_steps) : np_interp(timesteps, train_sigmas);
    if (use_karras_sigmas_) {
      sigmas =
          karras_sigmas(sigma_min_.value_or(sigmas.back()), sigma_max_.value_or(sigmas.front()), num_inference_steps);
      // Unlike LMS, Euler keeps these fractional timesteps in float32.
      timesteps.clear();
      for (double t : timesteps_for_sigmas(sigmas)) timesteps.push_back(static_cast<float>(t));
    }
    if (continuous_timesteps_) timesteps = continuous_timesteps(sigmas);
    start_trajectory(timesteps, sigmas);
  }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    const float sigma = sigmas_[step_index];
    const float sigma_hat = sigma * (0.0f + 1.0f);  // gamma = 0 without churn
    const Tensor& pred_original = predict_original_sample(model_output, sample, sigma_hat);
    const float dt = sigmas_[step_index + 1] - sigma_hat;
    return map2(sample, pred_original, [&](float x, float x0) {
      const float derivative = (x - x0) / sigma_hat;
      return x + derivative * dt;
    });
  }

 private:
  explicit EulerScheduler(ConfigReader config)
      : SigmaSchedulerBase("euler", config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear"}) {
    const std::string interpolation = config.get<std::string>("interpolation_type", "linear");
    if (interpolation != "linear" && interpolation != "log_linear") {
      config.bad_value("interpolation_type", "expected linear or log_linear");
    }
    log_linear_ = interpolation == "log_linear";
    use_karras_sigmas_ = config.get<bool>("use_karras_sigmas", false);
    sigma_min_ = config.get_optional<double>("sigma_min");
    sigma_max_ = config.get_optional<double>("sigma_max");
    const std::string timestep_type = config.get<std::string>("timestep_type", "discrete");
    if (timestep_type != "discrete" && timestep_type != "continuous") {
      config.bad_value("timestep_type", "expected discrete or continuous");
    }
    continuous_timesteps_ = timestep_type == "continuous" && prediction_type_ == PredictionType::VPrediction;
    finish_config(config, "EulerDiscreteScheduler");
  }

  // N+1 sigmas log-spaced from the largest to the smallest training sigma (diffusers 0.27.2
  // keeps all N+1, so the last step ends at sigma_min rather than 0).
  static std::vector<double> log_linear_sigmas(const std::vector<float>& train_sigmas, int num_inference_steps) {
    std::vector<double> sigmas;
    for (float log_sigma :
         torch_linspace_f32(std::log(train_sigmas.back()), std::log(train_sigmas.front()), num_inference_steps + 1)) {
      sigmas.push_back(std::exp(log_sigma));
    }
    return sigmas;
  }

  // Continuous-time v-prediction models take c_noise = log(sigma) / 4 of the float32 sigma as
  // the timestep.
  static std::vector<double> continuous_timesteps(const std::vector<double>& sigmas) {
    std::vector<double> timesteps;
    for (double sigma : sigmas) timesteps.push_back(0.25f * std::log(static_cast<float>(sigma)));
    return timesteps;
  }

  bool log_linear_ = false;
  bool use_karras_sigmas_ = false;
  std::optional<double> sigma_min_;
  std::optional<double> sigma_max_;
  bool continuous_timesteps_ = false;
};

}  // namespace

std::unique_ptr<Scheduler> make_euler(const Config& config) { return std::make_unique<EulerScheduler>(config); }

}  // namespace sdrt::sched
