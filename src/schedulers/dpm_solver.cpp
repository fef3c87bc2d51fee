#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// DPMSolverMultistepScheduler (Lu et al. 2022, DPM-Solver and DPM-Solver++), multistep, in the
// sigma parametrisation of diffusers 0.27. SD's usual "DPM++ 2M" is algorithm_type dpmsolver++,
// solver_order 2; the other algorithm types, orders 1-3 and both solver types are supported too.
#include <cmath>
#include <limits>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

enum class Algorithm { DpmSolverPP, DpmSolver, SdeDpmSolverPP, SdeDpmSolver };

bool is_sde(Algorithm a) { return a == Algorithm::SdeDpmSolverPP || a == Algorithm::SdeDpmSolver; }
// The "++" variants work on data (x0) predictions, the others on noise predictions.
bool predicts_data(Algorithm a) { return a == Algorithm::DpmSolverPP || a == Algorithm::SdeDpmSolverPP; }

// alpha_t, sigma_t and lambda_t = log(alpha_t / sigma_t) of one entry of the sigma list
// (sigma = sqrt((1 - alpha_bar) / alpha_bar)), float32 as torch computes them.
struct NoiseLevel {
  float alpha;
  float sigma;
  float lambda;
};
NoiseLevel noise_level(float sigma) {
  NoiseLevel level;
  level.alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  level.sigma = sigma * level.alpha;
  level.lambda = std::log(level.alpha) - std::log(level.sigma);
  return level;
}

// One update written as x_t = cx * x + c0 * D0 + c1 * D1 + c2 * D2 + cn * noise, summed left to
// right. diffusers writes some terms as subtractions; a - b*c equals a + (-b)*c exactly in IEEE
// arithmetic, so negated coefficients reproduce its rounding.
struct UpdateCoefficients {
  float cx = 0, c0 = 0, c1 = 0, c2 = 0, cn = 0;
};

class DpmSolverScheduler final : public SchedulerBase {
 public:
  DpmSolverScheduler(const Config& file, bool force_karras, const std::string& name)
      : DpmSolverScheduler(ConfigReader(file), force_karras, name) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    const int n = num_inference_steps;
    const int train = schedule_.num_train_timesteps;
    const int last_timestep = train - clipped_lambda_count();

    std::vector<double> ts;  // before rounding to int64
    switch (spacing_) {
      case TimestepSpacing::Linspace: {
        std::vector<double> ascending = np_linspace(0, last_timestep - 1, n + 1);
        for (int i = n; i >= 1; --i) ts.push_back(round_half_even(ascending[i]));
        break;
      }
      case TimestepSpacing::Leading: {
        const int step_ratio = last_timestep / (n + 1);
        for (int i = n; i >= 1; --i) ts.push_back(static_cast<double>(i) * step_ratio + steps_offset_);
        break;
      }
      case TimestepSpacing::Trailing:
        for (double t : np_arange(last_timestep, 0, -(static_cast<double>(train) / n))) {
          ts.push_back(round_half_even(t) - 1);
        }
        break;
    }

    const std::vector<float> train_sigmas = sigmas_from_alphas_cumprod(schedule_.alphas_cumprod);
    const std::vector<float> log_sigmas = log_f32(train_sigmas);
    std::vector<double> sigmas;
    if (use_karras_sigmas_) {
      sigmas = karras_sigmas(sigma_min_.value_or(train_sigmas.front()), sigma_max_.value_or(train_sigmas.back()), n);
      ts.clear();
      for (double s : sigmas) ts.push_back(round_half_even(sigma_to_t(s, log_sigmas)));
    } else if (use_lu_lambdas_) {
      // Steps uniform in log-SNR, the spacing DPM-Solver (Lu et al. 2022) proposes.
      const double lambda_min = log_sigmas.front();
      const double lambda_max = log_sigmas.back();
      for (double r : np_linspace(0, 1, n)) sigmas.push_back(std::exp(lambda_max + r * (lambda_min - lambda_max)));
      ts.clear();
      for (double s : sigmas) ts.push_back(round_half_even(sigma_to_t(s, log_sigmas)));
    } else {
      sigmas = np_interp(ts, train_sigmas);
    }
    const float sigma_last =
        final_sigma_min_ ? std::sqrt((1.0f - schedule_.alphas_cumprod.front()) / schedule_.alphas_cumprod.front())
                         : 0.0f;
    sigmas_ = to_f32_with_last(sigmas, sigma_last);
    timesteps_.clear();
    for (double t : ts) timesteps_.push_back(static_cast<double>(static_cast<int64_t>(t)));

    model_outputs_.assign(solver_order_, Tensor());
    lower_order_nums_ = 0;
    steps_taken_ = 0;
  }

  bool needs_noise(size_t) const override { return is_sde(algorithm_); }
  std::vector<float> sigmas() const override { return sigmas_; }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    check_in_order(step_index, steps_taken_);
    const size_t count = timesteps_.size();
    const bool few_steps = lower_order_final_ && count < 15;
    const bool lower_order_final = step_index == count - 1 && (euler_at_final_ || few_steps || !final_sigma_min_);
    const bool lower_order_second = step_index + 2 == count && few_steps;

    Tensor converted = convert_model_output(model_output, sample, sigmas_[step_index]);
    model_outputs_.erase(model_outputs_.begin());
    model_outputs_.push_back(converted);

    Tensor prev;
    if (solver_order_ == 1 || lower_order_nums_ < 1 || lower_order_final) {
      prev = first_order_update(sample, noise, step_index);
    } else if (solver_order_ == 2 || lower_order_nums_ < 2 || lower_order_second) {
      prev = second_order_update(sample, noise, step_index);
    } else {
      prev = third_order_update(sample, step_index);
    }
    if (lower_order_nums_ < solver_order_) ++lower_order_nums_;
    ++steps_taken_;
    return prev;
  }

 private:
  DpmSolverScheduler(ConfigReader config, bool force_karras, const std::string& name) : SchedulerBase(name, config) {
    if (force_karras) config.override_key("use_karras_sigmas", true);
    schedule_ = read_noise_schedule(config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear"});
    if (schedule_.rescaled_zero_snr) schedule_.alphas_cumprod.back() = 0x1p-24f;  // as diffusers does
    solver_order_ = config.get<int>("solver_order", 2);
    if (solver_order_ < 1) config.bad_value("solver_order", "must be 1, 2 or 3");
    prediction_type_ = read_prediction_type(config);
    reject_thresholding(config);
    read_algorithm(config);
    lower_order_final_ = config.get<bool>("lower_order_final", true);
    euler_at_final_ = config.get<bool>("euler_at_final", false);
    use_karras_sigmas_ = config.get<bool>("use_karras_sigmas", false);
    use_lu_lambdas_ = config.get<bool>("use_lu_lambdas", false);
    read_final_sigmas_type(config);
    lambda_min_clipped_ = config.get<double>("lambda_min_clipped", -std::numeric_limits<double>::infinity());
    read_variance_type(config);
    spacing_ = read_timestep_spacing(config, TimestepSpacing::Linspace);
    steps_offset_ = config.get<int>("steps_offset", 0);
    // Not init arguments of this class, but diffusers' _convert_to_karras looks them up in the
    // config, where a file written for another scheduler may have put them.
    sigma_min_ = config.hidden_double("sigma_min");
    sigma_max_ = config.hidden_double("sigma_max");
    finish_config(config, "DPMSolverMultistepScheduler");
  }

  void read_algorithm(ConfigReader& config) {
    std::string algorithm = config.get<std::string>("algorithm_type", "dpmsolver++");
    if (algorithm == "deis") {  // diffusers maps it to dpmsolver++
      algorithm = "dpmsolver++";
      config.record("algorithm_type", algorithm);
    }
    if (algorithm == "dpmsolver++") {
      algorithm_ = Algorithm::DpmSolverPP;
    } else if (algorithm == "dpmsolver") {
      algorithm_ = Algorithm::DpmSolver;
    } else if (algorithm == "sde-dpmsolver++") {
      algorithm_ = Algorithm::SdeDpmSolverPP;
    } else if (algorithm == "sde-dpmsolver") {
      algorithm_ = Algorithm::SdeDpmSolver;
    } else {
      config.bad_value("algorithm_type", "expected dpmsolver++, dpmsolver, sde-dpmsolver++ or sde-dpmsolver");
    }
    if (is_sde(algorithm_) && solver_order_ >= 3) {
      config.bad_value("algorithm_type", "diffusers has no third-order update for the SDE variants");
    }
    std::string solver = config.get<std::string>("solver_type", "midpoint");
    if (solver == "logrho" || solver == "bh1" || solver == "bh2") {  // other solvers' names, mapped by diffusers
      solver = "midpoint";
      config.record("solver_type", solver);
    }
    if (solver != "midpoint" && solver != "heun") config.bad_value("solver_type", "expected midpoint or heun");
    heun_ = solver == "heun";
  }

  void read_final_sigmas_type(ConfigReader& config) {
    const std::string type = config.get<std::string>("final_sigmas_type", "zero");
    if (type != "zero" && type != "sigma_min") config.bad_value("final_sigmas_type", "expected zero or sigma_min");
    final_sigma_min_ = type == "sigma_min";
    if (!predicts_data(algorithm_) && !final_sigma_min_) {
      config.bad_value("final_sigmas_type",
                       "zero is not supported with the noise-predicting algorithm types; "
                       "use sigma_min");
    }
  }

  void read_variance_type(ConfigReader& config) {
    // learned / learned_range models (DeepFloyd IF) output variance channels too; SD does not.
    const auto variance_type = config.get_optional<std::string>("variance_type");
    if (variance_type == "learned" || variance_type == "learned_range") {
      config.bad_value("variance_type", "models with learned variance are not supported");
    }
  }

  // How many training timesteps lambda_min_clipped cuts off at the noisy end.
  int clipped_lambda_count() const {
    int count = 0;
    for (size_t i = schedule_.alphas_cumprod.size(); i-- > 0;) {
      const float a = schedule_.alphas_cumprod[i];
      const float lambda = std::log(std::sqrt(a)) - std::log(std::sqrt(1.0f - a));
      if (static_cast<double>(lambda) < lambda_min_clipped_) ++count;
    }
    return count;
  }

  Tensor convert_model_output(const Tensor& model_output, const Tensor& sample, float sigma) const {
    const NoiseLevel s = noise_level(sigma);
    if (predicts_data(algorithm_)) {
      switch (prediction_type_) {
        case PredictionType::Epsilon:
          return map2(sample, model_output, [&](float x, float e) { return (x - s.sigma * e) / s.alpha; });
        case PredictionType::Sample:
          return model_output.clone();  // kept across steps: the caller may reuse its buffer
        case PredictionType::VPrediction:
          return map2(sample, model_output, [&](float x, float v) { return s.alpha * x - s.sigma * v; });
      }
    }
    switch (prediction_type_) {
      case PredictionType::Epsilon:
        return model_output.clone();
      case PredictionType::Sample:
        return map2(sample, model_output, [&](float x, float x0) { return (x - s.alpha * x0) / s.sigma; });
      case PredictionType::VPrediction:
        return map2(sample, model_output, [&](float x, float v) { return s.alpha * v + s.sigma * x; });
    }
    return model_output.clone();
  }

  // DPM-Solver-1 (DDIM in the data-prediction case) from sigmas[i] to sigmas[i+1].
  Tensor first_order_update(const Tensor& sample, const Tensor* noise, size_t i) const {
    const NoiseLevel t = noise_level(sigmas_[i + 1]);
    const NoiseLevel s = noise_level(sigmas_[i]);
    const float h = t.lambda - s.lambda;
    UpdateCoefficients c;
    switch (algorithm_) {
      case Algorithm::DpmSolverPP:
        c.cx = t.sigma / s.sigma;
        c.c0 = -(t.alpha * (std::exp(-h) - 1.0f));
        break;
      case Algorithm::DpmSolver:
        c.cx = t.alpha / s.alpha;
        c.c0 = -(t.sigma * (std::exp(h) - 1.0f));
        break;
      case Algorithm::SdeDpmSolverPP:
        c.cx = t.sigma / s.sigma * std::exp(-h);
        c.c0 = t.alpha * (1.0f - std::exp(-2.0f * h));
        c.cn = t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
        break;
      case Algorithm::SdeDpmSolver:
        c.cx = t.alpha / s.alpha;
        c.c0 = -(2.0f * (t.sigma * (std::exp(h) - 1.0f)));
        c.cn = t.sigma * std::sqrt(std::exp(2.0f * h) - 1.0f);
        break;
    }
    const Tensor& m0 = model_outputs_.back();
    if (is_sde(algorithm_)) {
      return map3(sample, m0, *noise, [&](float x, float d0, float z) { return c.cx * x + c.c0 * d0 + c.cn * z; });
    }
    return map2(sample, m0, [&](float x, float d0) { return c.cx * x + c.c0 * d0; });
  }

  // Multistep second order, using the model outputs at sigmas[i] and sigmas[i-1].
  Tensor second_order_update(const Tensor& sample, const Tensor* noise, size_t i) const {
    const NoiseLevel t = noise_level(sigmas_[i + 1]);
    const NoiseLevel s0 = noise_level(sigmas_[i]);
    const NoiseLevel s1 = noise_level(sigmas_[i - 1]);
    const float h = t.lambda - s0.lambda;
    const float h_0 = s0.lambda - s1.lambda;
    const float r0 = h_0 / h;
    const float inv_r0 = 1.0f / r0;
    UpdateCoefficients c;
    switch (algorithm_) {
      case Algorithm::DpmSolverPP: {
        const float phi = t.alpha * (std::exp(-h) - 1.0f);
        c.cx = t.sigma / s0.sigma;
        c.c0 = -phi;
        c.c1 = heun_ ? t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f) : -(0.5f * phi);
        break;
      }
      case Algorithm::DpmSolver: {
        const float phi = t.sigma * (std::exp(h) - 1.0f);
        c.cx = t.alpha / s0.alpha;
        c.c0 = -phi;
        c.c1 = heun_ ? -(t.sigma * ((std::exp(h) - 1.0f) / h - 1.0f)) : -(0.5f * phi);
        break;
      }
      case Algorithm::SdeDpmSolverPP: {
        const float phi = t.alpha * (1.0f - std::exp(-2.0f * h));
        c.cx = t.sigma / s0.sigma * std::exp(-h);
        c.c0 = phi;
        c.c1 = heun_ ? t.alpha * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f) : 0.5f * phi;
        c.cn = t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h));
        break;
      }
      case Algorithm::SdeDpmSolver: {
        const float phi = t.sigma * (std::exp(h) - 1.0f);
        c.cx = t.alpha / s0.alpha;
        c.c0 = -(2.0f * phi);
        c.c1 = heun_ ? -(2.0f * (t.sigma * ((std::exp(h) - 1.0f) / h - 1.0f))) : -phi;
        c.cn = t.sigma * std::sqrt(std::exp(2.0f * h) - 1.0f);
        break;
      }
    }
    const Tensor& m0 = model_outputs_[model_outputs_.size() - 1];
    const Tensor& m1 = model_outputs_[model_outputs_.size() - 2];
    auto combine = [&](float x, float d0, float prev) {
      const float d1 = inv_r0 * (d0 - prev);
      return c.cx * x + c.c0 * d0 + c.c1 * d1;
    };
    if (is_sde(algorithm_)) {
      return map4(sample, m0, m1, *noise,
                  [&](float x, float d0, float prev, float z) { return combine(x, d0, prev) + c.cn * z; });
    }
    return map3(sample, m0, m1, combine);
  }

  // Multistep third order, using the model outputs at sigmas[i], sigmas[i-1] and sigmas[i-2].
  Tensor third_order_update(const Tensor& sample, size_t i) const {
    const NoiseLevel t = noise_level(sigmas_[i + 1]);
    const NoiseLevel s0 = noise_level(sigmas_[i]);
    const NoiseLevel s1 = noise_level(sigmas_[i - 1]);
    const NoiseLevel s2 = noise_level(sigmas_[i - 2]);
    const float h = t.lambda - s0.lambda;
    const float h_0 = s0.lambda - s1.lambda;
    const float h_1 = s1.lambda - s2.lambda;
    const float r0 = h_0 / h;
    const float r1 = h_1 / h;
    const float inv_r0 = 1.0f / r0;
    const float inv_r1 = 1.0f / r1;
    const float d1_weight = r0 / (r0 + r1);
    const float inv_r0_plus_r1 = 1.0f / (r0 + r1);
    UpdateCoefficients c;
    if (algorithm_ == Algorithm::DpmSolverPP) {
      c.cx = t.sigma / s0.sigma;
      c.c0 = -(t.alpha * (std::exp(-h) - 1.0f));
      c.c1 = t.alpha * ((std::exp(-h) - 1.0f) / h + 1.0f);
      c.c2 = -(t.alpha * ((std::exp(-h) - 1.0f + h) / (h * h) - 0.5f));
    } else {
      c.cx = t.alpha / s0.alpha;
      c.c0 = -(t.sigma * (std::exp(h) - 1.0f));
      c.c1 = -(t.sigma * ((std::exp(h) - 1.0f) / h - 1.0f));
      c.c2 = -(t.sigma * ((std::exp(h) - 1.0f - h) / (h * h) - 0.5f));
    }
    const size_t n = model_outputs_.size();
    return map4(sample, model_outputs_[n - 1], model_outputs_[n - 2], model_outputs_[n - 3],
                [&](float x, float m0, float m1, float m2) {
                  const float d1_0 = inv_r0 * (m0 - m1);
                  const float d1_1 = inv_r1 * (m1 - m2);
                  const float d1 = d1_0 + d1_weight * (d1_0 - d1_1);
                  const float d2 = inv_r0_plus_r1 * (d1_0 - d1_1);
                  return c.cx * x + c.c0 * m0 + c.c1 * d1 + c.c2 * d2;
                });
  }

  NoiseSchedule schedule_;
  int solver_order_ = 2;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  Algorithm algorithm_ = Algorithm::DpmSolverPP;
  bool heun_ = false;
  bool lower_order_final_ = true;
  bool euler_at_final_ = false;
  bool use_karras_sigmas_ = false;
  bool use_lu_lambdas_ = false;
  bool final_sigma_min_ = false;
  double lambda_min_clipped_ = -std::numeric_limits<double>::infinity();
  TimestepSpacing spacing_ = TimestepSpacing::Linspace;
  int steps_offset_ = 0;
  std::optional<double> sigma_min_;
  std::optional<double> sigma_max_;

  std::vector<float> sigmas_;
  std::vector<Tensor> model_outputs_;  // converted outputs, oldest first
  int lower_order_nums_ = 0;
  size_t steps_taken_ = 0;
};

}  // namespace

std::unique_ptr<Scheduler> make_dpm_solver(const Config& config, bool force_karras, const std::string& name) {
  return std::make_unique<DpmSolverScheduler>(config, force_karras, name);
}

}  // namespace sdrt::sched
