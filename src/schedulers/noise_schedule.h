// The parts every scheduler shares: reading the config the way diffusers' from_config does,
// the training noise schedule (betas -> alphas_cumprod), and the numpy/torch primitives the
// timestep and sigma lists are built from, reproduced with their exact rounding.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "io/config.h"
#include "schedulers/scheduler.h"

namespace sdrt::sched {

// A scheduler's view of scheduler_config.json. Keys listed in `_use_default_values` count as
// absent (diffusers drops them before calling __init__). Every key read is recorded, with the
// value in effect, in effective(); that is the scheduler's `config` as diffusers reports it.
class ConfigReader {
 public:
  explicit ConfigReader(const Config& config);

  template <typename T>
  T get(const std::string& key, const T& fallback) {
    T value = config_.get<T>(key, fallback);
    effective_[key] = value;
    return value;
  }
  // A key whose default is None.
  template <typename T>
  std::optional<T> get_optional(const std::string& key) {
    if (!config_.has(key)) {
      effective_[key] = nullptr;
      return std::nullopt;
    }
    T value = config_.get<T>(key);
    effective_[key] = value;
    return value;
  }
  // The value of a key the class does not take but the file carries (diffusers keeps such
  // "hidden" keys in `config`, and a few schedulers look them up with hasattr).
  std::optional<double> hidden_double(const std::string& key) const;
  // A keyword argument given to from_config: it replaces the file's value.
  void override_key(const std::string& key, nlohmann::json value);
  // Records a value the class sets itself (a key it remaps, for instance).
  void record(const std::string& key, nlohmann::json value) { effective_[key] = std::move(value); }

  [[noreturn]] void bad_value(const std::string& key, const std::string& why) const { config_.bad_value(key, why); }
  const std::string& source() const { return config_.source(); }
  const nlohmann::json& effective() const { return effective_; }

 private:
  Config config_;
  nlohmann::json effective_ = nlohmann::json::object();
};

// Class defaults that differ between schedulers.
struct ScheduleDefaults {
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";
  // Whether the class has the rescale_betas_zero_snr option (PNDM and LMS do not).
  bool knows_zero_snr = true;
};

struct NoiseSchedule {
  int num_train_timesteps = 0;
  bool rescaled_zero_snr = false;
  // cumprod(1 - betas), float32 like torch (the product is accumulated in double, as torch's
  // CPU cumprod does, and each prefix is rounded to float).
  std::vector<float> alphas_cumprod;
};

NoiseSchedule read_noise_schedule(ConfigReader& config, const ScheduleDefaults& defaults);

// prediction_type: epsilon (default), v_prediction or sample.
PredictionType read_prediction_type(ConfigReader& config);

// Reads diffusers' dynamic thresholding keys (DDIM, DPM-Solver, LCM) so that they show in the
// effective config, and rejects thresholding = true: it is meant for pixel-space models.
void reject_thresholding(ConfigReader& config);

enum class TimestepSpacing { Linspace, Leading, Trailing };
TimestepSpacing read_timestep_spacing(ConfigReader& config, TimestepSpacing fallback);

// The whole-number timesteps of DDIM and PNDM, descending (PNDM rearranges them). Where the
// sigma schedulers keep linspace's fractional timesteps, these round them half to even.
std::vector<int64_t> discrete_timesteps(TimestepSpacing spacing, int num_inference_steps, int num_train_timesteps,
                                        int steps_offset);

// Throws unless 1 <= num_inference_steps <= num_train_timesteps.
void check_step_count(int num_inference_steps, int num_train_timesteps, const std::string& scheduler);

// ---- numpy / torch primitives, with their rounding ----

// numpy.round / rint: half to even.
double round_half_even(double x);
// numpy.linspace in float64.
std::vector<double> np_linspace(double start, double stop, int num, bool endpoint = true);
// numpy.arange(start, stop, step) for float64: start + i * (second - start), where
// second = start + step, the way numpy fills the array.
std::vector<double> np_arange(double start, double stop, double step);
// numpy.interp(x, arange(len(fp)), fp) in float64.
std::vector<double> np_interp(const std::vector<double>& x, const std::vector<float>& fp);
// torch.linspace(start, end, steps, dtype=float32) on CPU.
std::vector<float> torch_linspace_f32(float start, float end, int steps);

// sqrt((1 - a) / a) per entry, in float32 as torch computes it, ascending in t.
std::vector<float> sigmas_from_alphas_cumprod(const std::vector<float>& alphas_cumprod);
std::vector<float> log_f32(const std::vector<float>& values);
// Karras et al. (2022) schedule with rho = 7, float64 as numpy computes it.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num_steps);
// The fractional training timestep of `sigma`: linear interpolation in log-sigma between the
// two neighbouring training sigmas (diffusers' _sigma_to_t).
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);
// Sigmas rounded to float32, followed by `last`.
std::vector<float> to_f32_with_last(const std::vector<double>& sigmas, float last);

}  // namespace sdrt::sched
