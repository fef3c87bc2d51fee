#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// LMSDiscreteScheduler: linear multistep (Adams-Bashforth in sigma) of order up to 4 on the
// probability-flow ODE dx/dsigma = (x - x0) / sigma, as in k-diffusion's sample_lms.
#include <array>
#include <cmath>
#include <deque>

#include "schedulers/sigma_scheduler.h"

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

class LmsScheduler final : public SigmaSchedulerBase {
 public:
  explicit LmsScheduler(const Config& file) : LmsScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    std::vector<double> timesteps = spaced_timesteps(num_inference_steps);
    std::vector<double> sigmas = np_interp(timesteps, training_sigmas());
    if (use_karras_sigmas_) {
      sigmas = karras_sigmas(sigmas.back(), sigmas.front(), num_inference_steps);
      timesteps = timesteps_for_sigmas(sigmas);  // here diffusers keeps them in float64
    }
    start_trajectory(timesteps, sigmas);
    derivatives_.clear();
    steps_taken_ = 0;
  }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    check_in_order(step_index, steps_taken_);
    const float sigma = sigmas_[step_index];
    const Tensor& pred_original = predict_original_sample(model_output, sample, sigma);
    derivatives_.push_back(map2(sample, pred_original, [&](float x, float x0) { return (x - x0) / sigma; }));
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

 private:
  explicit LmsScheduler(ConfigReader config)
      : SigmaSchedulerBase(
            "lms", config,
            {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear", .knows_zero_snr = false}) {
    use_karras_sigmas_ = config.get<bool>("use_karras_sigmas", false);
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

  bool use_karras_sigmas_ = false;

  std::deque<Tensor> derivatives_;  // oldest first, at most kMaxOrder
  size_t steps_taken_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_lms(const Config& config) { return std::make_unique<LmsScheduler>(config); }

}  // namespace sdrt::sched
