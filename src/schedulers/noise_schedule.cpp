#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

#include <algorithm>
#include <cmath>
#include <numbers>

#include "schedulers/noise_schedule.h"

namespace sdrt::sched {

// ---- config ----

namespace {

// diffusers' extract_init_dict drops the keys a saved config lists in `_use_default_values`,
// so the loading class falls back to its own defaults for them.
Config without_defaulted_keys(const Config& config) {
  const nlohmann::json& j = config.json();
  auto it = j.find("_use_default_values");
  if (it == j.end() || !it->is_array()) return config;
  nlohmann::json pruned = j;
  for (const auto& key : *it) {
    if (key.is_string()) pruned.erase(key.get<std::string>());
  }
  return Config::from_json(std::move(pruned), config.source());
}

}  // namespace

ConfigReader::ConfigReader(const Config& config) : config_(without_defaulted_keys(config)) {}

void ConfigReader::override_key(const std::string& key, nlohmann::json value) {
  nlohmann::json j = config_.json();
  j[key] = std::move(value);
  config_ = Config::from_json(std::move(j), config_.source());
}

std::optional<double> ConfigReader::hidden_double(const std::string& key) const {
  if (!config_.has(key)) return std::nullopt;
  return config_.get<double>(key);
}

// ---- training noise schedule ----

namespace {

// Nichol & Dhariwal's cosine schedule, in Python floats, then stored as float32.
std::vector<float> squaredcos_cap_v2_betas(int num_train_timesteps) {
  auto alpha_bar = [](double t) {
    double c = std::cos((t + 0.008) / 1.008 * std::numbers::pi / 2);
    return c * c;
  };
  std::vector<float> betas(num_train_timesteps);
  for (int i = 0; i < num_train_timesteps; ++i) {
    double t1 = static_cast<double>(i) / num_train_timesteps;
    double t2 = static_cast<double>(i + 1) / num_train_timesteps;
    betas[i] = static_cast<float>(std::min(1 - alpha_bar(t2) / alpha_bar(t1), 0.999));
  }
  return betas;
}

std::vector<float> cumprod_of_alphas(const std::vector<float>& betas) {
  std::vector<float> alphas_cumprod(betas.size());
  double product = 1.0;  // torch's CPU cumprod accumulates float in double
  for (size_t i = 0; i < betas.size(); ++i) {
    product *= static_cast<double>(1.0f - betas[i]);
    alphas_cumprod[i] = static_cast<float>(product);
  }
  return alphas_cumprod;
}

// Lin et al. (2023), "Common Diffusion Noise Schedules and Sample Steps are Flawed", Alg. 1:
// shift and scale sqrt(alphas_cumprod) so the last timestep has zero SNR. float32 like torch.
std::vector<float> rescale_zero_terminal_snr(const std::vector<float>& betas) {
  std::vector<float> sqrt_bar = cumprod_of_alphas(betas);
  for (float& v : sqrt_bar) v = std::sqrt(v);
  const float first = sqrt_bar.front();
  const float last = sqrt_bar.back();
  const float scale = first / (first - last);
  for (float& v : sqrt_bar) {
    v = v - last;
    v = v * scale;
  }
  std::vector<float> rescaled(betas.size());
  for (size_t i = 0; i < betas.size(); ++i) {
    float bar = sqrt_bar[i] * sqrt_bar[i];
    float alpha = i == 0 ? bar : bar / (sqrt_bar[i - 1] * sqrt_bar[i - 1]);
    rescaled[i] = 1.0f - alpha;
  }
  return rescaled;
}

std::vector<float> make_betas(ConfigReader& config, const ScheduleDefaults& defaults, int num_train_timesteps) {
  const double beta_start = config.get<double>("beta_start", defaults.beta_start);
  const double beta_end = config.get<double>("beta_end", defaults.beta_end);
  const std::string schedule = config.get<std::string>("beta_schedule", defaults.beta_schedule);
  // diffusers ignores beta_schedule when trained_betas is given; the name is checked anyway so
  // that a typo never goes unnoticed.
  if (schedule != "linear" && schedule != "scaled_linear" && schedule != "squaredcos_cap_v2") {
    config.bad_value("beta_schedule", "unknown beta schedule; expected linear, scaled_linear or squaredcos_cap_v2");
  }
  if (auto trained = config.get_optional<std::vector<double>>("trained_betas")) {
    if (static_cast<int>(trained->size()) != num_train_timesteps) {
      config.bad_value("trained_betas",
                       str("has ", trained->size(), " entries but num_train_timesteps is ", num_train_timesteps));
    }
    return std::vector<float>(trained->begin(), trained->end());
  }
  if (schedule == "linear") {
    return torch_linspace_f32(static_cast<float>(beta_start), static_cast<float>(beta_end), num_train_timesteps);
  }
  if (schedule == "scaled_linear") {
    std::vector<float> betas = torch_linspace_f32(static_cast<float>(std::sqrt(beta_start)),
                                                  static_cast<float>(std::sqrt(beta_end)), num_train_timesteps);
    for (float& b : betas) b = b * b;
    return betas;
  }
  return squaredcos_cap_v2_betas(num_train_timesteps);
}

}  // namespace

NoiseSchedule read_noise_schedule(ConfigReader& config, const ScheduleDefaults& defaults) {
  NoiseSchedule schedule;
  schedule.num_train_timesteps = config.get<int>("num_train_timesteps", 1000);
  if (schedule.num_train_timesteps < 2) config.bad_value("num_train_timesteps", "must be at least 2");
  std::vector<float> betas = make_betas(config, defaults, schedule.num_train_timesteps);
  if (defaults.knows_zero_snr) {
    schedule.rescaled_zero_snr = config.get<bool>("rescale_betas_zero_snr", false);
    if (schedule.rescaled_zero_snr) betas = rescale_zero_terminal_snr(betas);
  }
  schedule.alphas_cumprod = cumprod_of_alphas(betas);
  return schedule;
}

PredictionType read_prediction_type(ConfigReader& config) {
  const std::string name = config.get<std::string>("prediction_type", "epsilon");
  if (name == "epsilon") return PredictionType::Epsilon;
  if (name == "v_prediction") return PredictionType::VPrediction;
  if (name == "sample") return PredictionType::Sample;
  config.bad_value("prediction_type", "unknown prediction type; expected epsilon, v_prediction or sample");
}

void reject_thresholding(ConfigReader& config) {
  if (config.get<bool>("thresholding", false)) {
    config.bad_value("thresholding", "dynamic thresholding is not supported (it is meant for pixel-space models)");
  }
  config.get<double>("dynamic_thresholding_ratio", 0.995);  // only used with thresholding
  config.get<double>("sample_max_value", 1.0);              // only used with thresholding
}

TimestepSpacing read_timestep_spacing(ConfigReader& config, TimestepSpacing fallback) {
  const char* fallback_name = fallback == TimestepSpacing::Linspace  ? "linspace"
                              : fallback == TimestepSpacing::Leading ? "leading"
                                                                     : "trailing";
  const std::string name = config.get<std::string>("timestep_spacing", fallback_name);
  if (name == "linspace") return TimestepSpacing::Linspace;
  if (name == "leading") return TimestepSpacing::Leading;
  if (name == "trailing") return TimestepSpacing::Trailing;
  config.bad_value("timestep_spacing", "unknown timestep spacing; expected linspace, leading or trailing");
}

std::vector<int64_t> discrete_timesteps(TimestepSpacing spacing, int num_inference_steps, int num_train_timesteps,
                                        int steps_offset) {
  const int train = num_train_timesteps;
  const int n = num_inference_steps;
  std::vector<int64_t> ts;
  switch (spacing) {
    case TimestepSpacing::Linspace: {
      std::vector<double> ascending = np_linspace(0, train - 1, n);
      for (auto it = ascending.rbegin(); it != ascending.rend(); ++it) {
        ts.push_back(static_cast<int64_t>(round_half_even(*it)));
      }
      break;
    }
    case TimestepSpacing::Leading:
      for (int i = n - 1; i >= 0; --i) ts.push_back(static_cast<int64_t>(i) * (train / n) + steps_offset);
      break;
    case TimestepSpacing::Trailing:
      for (double t : np_arange(train, 0, -(static_cast<double>(train) / n))) {
        ts.push_back(static_cast<int64_t>(round_half_even(t)) - 1);
      }
      break;
  }
  return ts;
}

void check_step_count(int num_inference_steps, int num_train_timesteps, const std::string& scheduler) {
  SDRT_CHECK(num_inference_steps >= 1, scheduler, ": num_inference_steps must be at least 1, got ",
             num_inference_steps);
  SDRT_CHECK(num_inference_steps <= num_train_timesteps, scheduler, ": num_inference_steps ", num_inference_steps,
             " exceeds num_train_timesteps ", num_train_timesteps);
}

// ---- numpy / torch primitives ----

double round_half_even(double x) { return std::nearbyint(x); }

std::vector<double> np_linspace(double start, double stop, int num, bool endpoint) {
  std::vector<double> y(std::max(num, 0));
  const int div = endpoint ? num - 1 : num;
  const double delta = stop - start;
  if (div > 0) {
    const double step = delta / div;
    for (int i = 0; i < num; ++i) y[i] = step == 0 ? i / static_cast<double>(div) * delta : i * step;
  } else {
    for (int i = 0; i < num; ++i) y[i] = i * delta;
  }
  for (double& v : y) v += start;
  if (endpoint && num > 1) y.back() = stop;
  return y;
}

std::vector<double> np_arange(double start, double stop, double step) {
  const double length = std::ceil((stop - start) / step);
  if (!(length > 0)) return {};
  std::vector<double> y(static_cast<size_t>(length));
  y[0] = start;
  if (y.size() > 1) {
    const double second = start + step;
    const double delta = second - start;
    y[1] = second;
    for (size_t i = 2; i < y.size(); ++i) y[i] = start + static_cast<double>(i) * delta;
  }
  return y;
}

std::vector<double> np_interp(const std::vector<double>& x, const std::vector<float>& fp) {
  const int64_t n = static_cast<int64_t>(fp.size());
  std::vector<double> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double xv = x[i];
    if (std::isnan(xv)) {
      out[i] = xv;
    } else if (xv <= 0) {
      out[i] = fp.front();
    } else if (xv >= static_cast<double>(n - 1)) {
      out[i] = fp.back();
    } else {
      const int64_t j = static_cast<int64_t>(std::floor(xv));
      if (static_cast<double>(j) == xv) {
        out[i] = fp[j];
      } else {
        const double slope = static_cast<double>(fp[j + 1]) - static_cast<double>(fp[j]);  // xp step is 1
        out[i] = slope * (xv - static_cast<double>(j)) + static_cast<double>(fp[j]);
      }
    }
  }
  return out;
}

// torch 1.13's CPU linspace fills the first half forwards from `start` and the second half
// backwards from `end`. Its vectorised loop (two 8-float vectors per iteration, scalar tail)
// computes each vector as base + k * step, `base` being the value at the vector's first index,
// and the AVX2 build contracts every a + b * c there into a fused multiply-add. Reproducing all
// of that gives torch's float32 betas bit for bit (checked against the golden sigmas).
std::vector<float> torch_linspace_f32(float start, float end, int steps) {
  if (steps <= 0) return {};
  if (steps == 1) return {start};
  constexpr int64_t kVectorWidth = 8;
  const int64_t n = steps;
  const float step = (end - start) / static_cast<float>(n - 1);
  const int64_t halfway = n / 2;
  auto value_at = [&](int64_t idx) {
    return idx < halfway ? std::fma(step, static_cast<float>(idx), start)
                         : std::fma(-step, static_cast<float>(n - idx - 1), end);
  };
  std::vector<float> out(n);
  auto fill_vector = [&](int64_t first) {
    const float base = value_at(first);
    out[first] = base;
    for (int64_t k = 1; k < kVectorWidth; ++k) out[first + k] = std::fma(static_cast<float>(k), step, base);
  };
  int64_t i = 0;
  for (; i + 2 * kVectorWidth <= n; i += 2 * kVectorWidth) {
    fill_vector(i);
    fill_vector(i + kVectorWidth);
  }
  for (; i < n; ++i) out[i] = value_at(i);
  return out;
}

std::vector<float> sigmas_from_alphas_cumprod(const std::vector<float>& alphas_cumprod) {
  std::vector<float> sigmas(alphas_cumprod.size());
  for (size_t i = 0; i < sigmas.size(); ++i) {
    const float a = alphas_cumprod[i];
    sigmas[i] = std::sqrt((1.0f - a) / a);
  }
  return sigmas;
}

std::vector<float> log_f32(const std::vector<float>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = std::log(values[i]);
  return out;
}

std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num_steps) {
  constexpr double kRho = 7.0;
  const double min_inv_rho = std::pow(sigma_min, 1 / kRho);
  const double max_inv_rho = std::pow(sigma_max, 1 / kRho);
  std::vector<double> ramp = np_linspace(0, 1, num_steps);
  std::vector<double> sigmas(ramp.size());
  for (size_t i = 0; i < ramp.size(); ++i)
    sigmas[i] = std::pow(max_inv_rho + ramp[i] * (min_inv_rho - max_inv_rho), kRho);
  return sigmas;
}

// numpy 1.x casts the float64 log-sigma to float32 when it meets the float32 table (value-based
// casting), so the search and the weight are float32; only the final blend is float64.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas) {
  const int64_t n = static_cast<int64_t>(log_sigmas.size());
  const float log_sigma = static_cast<float>(std::log(std::max(sigma, 1e-10)));
  int64_t low = 0;  // last index whose log-sigma does not exceed ours (0 when none)
  for (int64_t i = 0; i < n; ++i) {
    if (log_sigma - log_sigmas[i] >= 0) low = i;
  }
  low = std::min(low, n - 2);
  const float low_value = log_sigmas[low];
  const float high_value = log_sigmas[low + 1];
  float w = (low_value - log_sigma) / (low_value - high_value);
  w = std::clamp(w, 0.0f, 1.0f);
  return static_cast<double>(1.0f - w) * static_cast<double>(low) +
         static_cast<double>(w) * static_cast<double>(low + 1);
}

std::vector<float> to_f32_with_last(const std::vector<double>& sigmas, float last) {
  std::vector<float> out(sigmas.begin(), sigmas.end());
  out.push_back(last);
  return out;
}

}  // namespace sdrt::sched
