#include "schedulers/float_exact.h"
// (float_exact.h first: it switches off FMA contraction for this file.)

// PNDMScheduler (Liu et al. 2022, pseudo numerical methods): Runge-Kutta warm-up steps (PRK)
// followed by 4th-order linear multistep steps (PLMS). SD 1.5 ships with skip_prk_steps, which
// replaces the warm-up by a 2nd-order start that evaluates the model twice at one timestep.
#include <cmath>

#include "schedulers/scheduler_base.h"

namespace sdrt::sched {
namespace {

class PndmScheduler final : public SchedulerBase {
 public:
  explicit PndmScheduler(const Config& file) : PndmScheduler(ConfigReader(file)) {}

  void set_timesteps(int num_inference_steps) override {
    check_step_count(num_inference_steps, schedule_.num_train_timesteps, name_);
    const std::vector<int64_t> descending =
        discrete_timesteps(spacing_, num_inference_steps, schedule_.num_train_timesteps, steps_offset_);
    const std::vector<int64_t> ascending(descending.rbegin(), descending.rend());
    size_t num_prk = 0;
    std::vector<int64_t> all = skip_prk_steps_ ? plms_only_timesteps(ascending)
                                               : prk_then_plms_timesteps(ascending, num_inference_steps, num_prk);
    num_inference_steps_ = num_inference_steps;
    num_prk_timesteps_ = num_prk;
    int_timesteps_ = all;
    timesteps_.assign(all.begin(), all.end());
    counter_ = 0;
    ets_.clear();
    cur_model_output_ = Tensor();
    cur_sample_ = Tensor();
  }

  Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) override {
    check_step_args(model_output, step_index, sample, noise);
    check_in_order(step_index, counter_);
    const int64_t timestep = int_timesteps_[step_index];
    if (!skip_prk_steps_ && counter_ < num_prk_timesteps_) return step_prk(model_output, timestep, sample);
    return step_plms(model_output, timestep, sample);
  }

 private:
  explicit PndmScheduler(ConfigReader config) : SchedulerBase("pndm", config) {
    schedule_ = read_noise_schedule(
        config, {.beta_start = 0.0001, .beta_end = 0.02, .beta_schedule = "linear", .knows_zero_snr = false});
    skip_prk_steps_ = config.get<bool>("skip_prk_steps", false);
    const bool set_alpha_to_one = config.get<bool>("set_alpha_to_one", false);
    final_alpha_cumprod_ = set_alpha_to_one ? 1.0f : schedule_.alphas_cumprod.front();
    prediction_type_ = read_prediction_type(config);
    if (prediction_type_ == PredictionType::Sample) {
      config.bad_value("prediction_type", "PNDMScheduler supports only epsilon and v_prediction");
    }
    spacing_ = read_timestep_spacing(config, TimestepSpacing::Leading);
    steps_offset_ = config.get<int>("steps_offset", 0);
    finish_config(config, "PNDMScheduler");
  }

  // skip_prk_steps: the second-to-last training timestep is repeated (the 2nd-order start
  // evaluates the model twice there), then everything is reversed.
  static std::vector<int64_t> plms_only_timesteps(const std::vector<int64_t>& ts) {
    std::vector<int64_t> out(ts.begin(), ts.end() - 1);
    if (ts.size() >= 2) out.push_back(ts[ts.size() - 2]);
    out.push_back(ts.back());
    return {out.rbegin(), out.rend()};
  }

  // Runge-Kutta warm-up: three RK4 steps (4 model calls each) over the top 4 timesteps at half
  // spacing, then PLMS over the remaining ones.
  std::vector<int64_t> prk_then_plms_timesteps(const std::vector<int64_t>& ts, int n, size_t& num_prk) const {
    constexpr size_t kOrder = 4;
    SDRT_CHECK(ts.size() >= kOrder, name_, ": skip_prk_steps=false (from ", source_,
               ") needs at least 4 inference steps, got ", ts.size());
    const int64_t half = schedule_.num_train_timesteps / n / 2;
    std::vector<int64_t> pairs;  // the top 4 timesteps, each followed by itself + half
    for (size_t i = ts.size() - kOrder; i < ts.size(); ++i) {
      pairs.push_back(ts[i]);
      pairs.push_back(ts[i] + half);
    }
    pairs.pop_back();
    std::vector<int64_t> doubled;
    for (int64_t t : pairs) doubled.insert(doubled.end(), {t, t});
    std::vector<int64_t> prk(doubled.begin() + 1, doubled.end() - 1);
    std::vector<int64_t> out(prk.rbegin(), prk.rend());
    num_prk = out.size();
    for (size_t i = ts.size() - 3; i-- > 0;) out.push_back(ts[i]);
    return out;
  }

  Tensor step_prk(const Tensor& model_output, int64_t timestep, const Tensor& sample) {
    const int64_t step_ratio = schedule_.num_train_timesteps / num_inference_steps_;
    const int64_t diff_to_prev = counter_ % 2 ? 0 : step_ratio / 2;
    const int64_t prev_timestep = timestep - diff_to_prev;
    timestep = int_timesteps_[counter_ / 4 * 4];

    // Accumulates the RK4 combination 1/6, 1/3, 1/3, 1/6 of the four evaluations.
    const float sixth = static_cast<float>(1.0 / 6);
    const float third = static_cast<float>(1.0 / 3);
    Tensor effective_output = model_output;
    switch (counter_ % 4) {
      case 0:
        cur_model_output_ = map1(model_output, [&](float m) { return sixth * m; });
        ets_.push_back(model_output.clone());
        cur_sample_ = sample.clone();
        break;
      case 1:
      case 2:
        cur_model_output_ = map2(cur_model_output_, model_output, [&](float c, float m) { return c + third * m; });
        break;
      case 3:
        effective_output = map2(cur_model_output_, model_output, [&](float c, float m) { return c + sixth * m; });
        cur_model_output_ = Tensor();
        break;
    }
    const Tensor& from = cur_sample_.defined() ? cur_sample_ : sample;
    Tensor prev = previous_sample(from, timestep, prev_timestep, effective_output);
    ++counter_;
    return prev;
  }

  Tensor step_plms(const Tensor& model_output, int64_t timestep, const Tensor& sample) {
    const int64_t step_ratio = schedule_.num_train_timesteps / num_inference_steps_;
    int64_t prev_timestep = timestep - step_ratio;
    if (counter_ != 1) {
      if (ets_.size() > 3) ets_.erase(ets_.begin(), ets_.end() - 3);
      ets_.push_back(model_output.clone());  // kept across steps: the caller may reuse its buffer
    } else {
      // Second call at the same timestep: redo the first step from its start sample.
      prev_timestep = timestep;
      timestep = timestep + step_ratio;
    }

    Tensor combined;
    const Tensor* from = &sample;
    Tensor start_sample;
    const size_t n = ets_.size();
    if (n == 1 && counter_ == 0) {
      combined = model_output;
      cur_sample_ = sample.clone();
    } else if (n == 1 && counter_ == 1) {
      combined = map2(model_output, ets_[0], [](float m, float e) { return (m + e) / 2.0f; });
      start_sample = cur_sample_;
      from = &start_sample;
      cur_sample_ = Tensor();
    } else if (n == 2) {
      combined = map2(ets_[1], ets_[0], [](float e1, float e2) { return (3.0f * e1 - e2) / 2.0f; });
    } else if (n == 3) {
      combined = map3(ets_[2], ets_[1], ets_[0],
                      [](float e1, float e2, float e3) { return (23.0f * e1 - 16.0f * e2 + 5.0f * e3) / 12.0f; });
    } else {
      const float scale = static_cast<float>(1.0 / 24);
      combined = map4(ets_[3], ets_[2], ets_[1], ets_[0], [&](float e1, float e2, float e3, float e4) {
        return scale * (55.0f * e1 - 59.0f * e2 + 37.0f * e3 - 9.0f * e4);
      });
    }
    Tensor prev = previous_sample(*from, timestep, prev_timestep, combined);
    ++counter_;
    return prev;
  }

  float alpha_cumprod_at(int64_t timestep) const {
    SDRT_CHECK(timestep < schedule_.num_train_timesteps, name_, ": timestep ", timestep, " out of range");
    return timestep >= 0 ? schedule_.alphas_cumprod[timestep] : final_alpha_cumprod_;
  }

  // Formula (9) of the PNDM paper: x_{t-δ} from x_t and the (combined) noise estimate.
  Tensor previous_sample(const Tensor& sample, int64_t timestep, int64_t prev_timestep, const Tensor& model_output) {
    const float alpha_prod_t = alpha_cumprod_at(timestep);
    const float alpha_prod_t_prev = alpha_cumprod_at(prev_timestep);
    const float beta_prod_t = 1.0f - alpha_prod_t;
    const float beta_prod_t_prev = 1.0f - alpha_prod_t_prev;

    Tensor epsilon = model_output;
    if (prediction_type_ == PredictionType::VPrediction) {
      const float sqrt_alpha = std::sqrt(alpha_prod_t);
      const float sqrt_beta = std::sqrt(beta_prod_t);
      epsilon = map2(model_output, sample, [&](float v, float x) { return sqrt_alpha * v + sqrt_beta * x; });
    }
    const float sample_coeff = std::sqrt(alpha_prod_t_prev / alpha_prod_t);
    const float denom =
        alpha_prod_t * std::sqrt(beta_prod_t_prev) + std::sqrt(alpha_prod_t * beta_prod_t * alpha_prod_t_prev);
    const float alpha_diff = alpha_prod_t_prev - alpha_prod_t;
    return map2(sample, epsilon, [&](float x, float e) { return sample_coeff * x - alpha_diff * e / denom; });
  }

  NoiseSchedule schedule_;
  bool skip_prk_steps_ = false;
  float final_alpha_cumprod_ = 1.0f;
  PredictionType prediction_type_ = PredictionType::Epsilon;
  TimestepSpacing spacing_ = TimestepSpacing::Leading;
  int steps_offset_ = 0;

  int num_inference_steps_ = 0;
  std::vector<int64_t> int_timesteps_;
  size_t num_prk_timesteps_ = 0;
  // Multistep state, as diffusers keeps it.
  size_t counter_ = 0;
  std::vector<Tensor> ets_;  // past model outputs (at most 4 used)
  Tensor cur_model_output_;  // RK4 accumulator
  Tensor cur_sample_;        // sample at the start of the current RK4 / 2nd-order step
};

}  // namespace

std::unique_ptr<Scheduler> make_pndm(const Config& config) { return std::make_unique<PndmScheduler>(config); }

}  // namespace sdrt::sched
