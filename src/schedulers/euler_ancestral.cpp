#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// EulerAncestralDiscreteScheduler: an Euler step down to sigma_down followed by fresh noise of
// scale sigma_up, with sigma_down^2 + sigma_up^2 = sigma_next^2 (k-diffusion's sample_euler_ancestral).
#include <cmath>

#include "schedulers/sigma_scheduler.h"

namespace sdrt::sched {
namespace {

class EulerAncestralScheduler final : public SigmaSchedulerBase {
 public:
  explicit EulerAncestralScheduler(const Config& file) : EulerAncestralScheduler(ConfigReader(file)) {}

  bool needs_noise(size_t) const override { return true; }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    const float sigma = sigmas_[step_index];
    const Tensor& pred_original = predict_original_sample(model_output, sample, sigma);

    const float sigma_from = sigma;
    const float sigma_to = sigmas_[step_index + 1];
    const float from_sq = sigma_from * sigma_from;
    const float to_sq = sigma_to * sigma_to;
    const float sigma_up = std::sqrt(to_sq * (from_sq - to_sq) / from_sq);
    const float sigma_down = std::sqrt(to_sq - sigma_up * sigma_up);
    const float dt = sigma_down - sigma;
    return map3(sample, pred_original, *noise, [&](float x, float x0, float z) {
      const float derivative = (x - x0) / sigma;
      const float deterministic = x + derivative * dt;
      return deterministic + z * sigma_up;
    });
  }

 private:
  explicit EulerAncestralScheduler(ConfigReader config)
      : SigmaSchedulerBase("euler_a", config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear"}) {
    if (prediction_type_ == PredictionType::Sample) {
      config.bad_value("prediction_type", "EulerAncestralDiscreteScheduler does not implement sample prediction");
    }
    finish_config(config, "EulerAncestralDiscreteScheduler");
  }
};

}  // namespace

std::unique_ptr<Scheduler> make_euler_ancestral(const Config& config) {
  return std::make_unique<EulerAncestralScheduler>(config);
}

}  // namespace sdrt::sched
