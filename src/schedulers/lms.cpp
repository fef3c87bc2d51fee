#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// LMSDiscreteScheduler: linear multistep (Adams-Bashforth in sigma) of order up to 4 on the
// probability-flow ODE dx/dsigma = (x - x0) / sigma, as in k-diffusion's sample_lms.
#include <array>
#include <cmath>
#include <deque>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

constexpr int kMaxOrder = 4;

// Integral over [a, b] of a polynomial of degree < 8, exact up to rounding: 4-point
// Gauss-Legendre. diffusers integrates the same polynomial with scipy's adaptive quad, which for
// a polynomial returns its first 21-point Gauss-Kronrod estimate, also exact up to rounding.
template <typename F>
double integrate_polynomial(F f, double a, double b) {
  const double inner = std::sqrt(3.0 / 7.0 - 2.0 / 7.0 * std::sqrt(6.0 / 5.0));
  const double outer = std::sqrt(3.0 / 7.0 + 2.0 / 7.0 * std::sqrt(6.0 / 5.0));
  const double inner_weight = (18.0 + std::sqrt(30.0)) / 36.0;
  const double outer_weight = (18.0 - std::sqrt(30.0)) / 36.0;
  const std::array<double, 4> nodes = {-outer, -inner, inner, outer};
  const std::array<double, 4> weights = {outer_weight, inner_weight, inner_weight, outer_weight};
  const double mid = (a + b) / 2;
  const double half = (b - a) / 2;
  double sum = 0;
  for (size_t i = 0; i < nodes.size(); ++i) sum += weights[i] * f(mid + half * nodes[i]);
  return half * sum;
}

class LmsScheduler final : public SchedulerBase {
 public:
  explicit LmsScheduler(const Config& file) : LmsScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    const std::vector<float> ts =
        sigma_family_timesteps(spacing_, num_inference_steps, schedule_.num_train_timesteps, steps_offset_);
    const std::vector<float> train_sigmas = sigmas_from_alphas_cumprod(schedule_.alphas_cumprod);
    std::vector<double> sigmas = np_interp(std::vector<double>(ts.begin(), ts.end()), train_sigmas);
    timesteps_.assign(ts.begin(), ts.end());
    if (use_karras_sigmas_) {
      // Here diffusers keeps the fractional timesteps in float64.
      const std::vector<float> log_sigmas = log_f32(train_sigmas);
      sigmas = karras_sigmas(sigmas.back(), sigmas.front(), num_inference_steps);
      timesteps_.clear();
      for (double s : sigmas) timesteps_.push_back(sigma_to_t(s, log_sigmas));
    }
    sigmas_ = to_f32_with_last(sigmas, 0.0f);
    derivatives_.clear();
    steps_taken_ = 0;
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
    check_in_order(step_index, steps_taken_);
    const float sigma = sigmas_[step_index];
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
    derivatives_.push_back(map2(sample, pred_original_, [&](float x, float x0) { return (x - x0) / sigma; }));
    if (derivatives_.size() > kMaxOrder) derivatives_.pop_front();

    const int order = static_cast<int>(std::min<size_t>(step_index + 1, kMaxOrder));
    // Newest derivative first, as diffusers pairs coefficients with reversed(derivatives).
    Tensor update = Tensor(sample.shape());
    for (int k = 0; k < order; ++k) {
      const float coeff = static_cast<float>(lms_coefficient(order, step_index, k));
      const Tensor& derivative = derivatives_[derivatives_.size() - 1 - k];
      update = map2(update, derivative, [&](float sum, float d) { return sum + coeff * d; });
    }
    ++steps_taken_;
    return map2(sample, update, [](float x, float u) { return x + u; });
  }

  std::vector<float> sigmas() const override { return sigmas_; }
  const Tensor* pred_original_sample() const override { return pred_original_.defined() ? &pred_original_ : nullptr; }

 private:
  explicit LmsScheduler(ConfigReader config) : SchedulerBase("lms", config) {
    schedule_ = read_noise_schedule(
        config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear", .knows_zero_snr = false});
    use_karras_sigmas_ = config.get<bool>("use_karras_sigmas", false);
    prediction_type_ = read_prediction_type(config);
    spacing_ = read_timestep_spacing(config, TimestepSpacing::Linspace);
    steps_offset_ = config.get<int>("steps_offset", 0);
    finish_config(config, "LMSDiscreteScheduler");
  }

  // Integral from sigma_t to sigma_{t+1} of the Lagrange basis polynomial of node t - current
  // over the nodes sigma_t, ..., sigma_{t-order+1}.
  double lms_coefficient(int order, size_t t, int current) const {
    auto basis = [&](double tau) {
      double product = 1.0;
      for (int k = 0; k < order; ++k) {
        if (k == current) continue;
        const double node = sigmas_[t - k];
        product *= (tau - node) / (static_cast<double>(sigmas_[t - current]) - node);
      }
      return product;
    };
    return integrate_polynomial(basis, sigmas_[t], sigmas_[t + 1]);
  }

  NoiseSchedule schedule_;
  bool use_karras_sigmas_ = false;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  TimestepSpacing spacing_ = TimestepSpacing::Linspace;
  int steps_offset_ = 0;

  std::vector<float> sigmas_;
  std::deque<Tensor> derivatives_;  // oldest first, at most kMaxOrder
  size_t steps_taken_ = 0;
  Tensor pred_original_;
};

}  // namespace

std::unique_ptr<Scheduler> make_lms(const Config& config) { return std::make_unique<LmsScheduler>(config); }

}  // namespace sdrt::sched
