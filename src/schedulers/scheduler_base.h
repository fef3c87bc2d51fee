// Bookkeeping shared by the scheduler implementations (not part of the public API).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "schedulers/elementwise.h"
#include "schedulers/noise_schedule.h"
#include "schedulers/scheduler.h"

namespace sdrt::sched {

class SchedulerBase : public Scheduler {
 public:
  const std::vector<double>& timesteps() const override { return timesteps_; }
  const nlohmann::json& effective_config() const override { return effective_config_; }
  std::string name() const override { return name_; }
  // DDIM, PNDM, DPM-Solver and LCM step the variance-preserving x_t itself: it starts as
  // unit-variance noise and the UNet sees it unscaled. SigmaSchedulerBase overrides both.
  float init_noise_sigma() const override { return 1.0f; }
  Tensor scale_model_input(const Tensor& sample, size_t step_index) const override {
    check_index(step_index);
    return sample;
  }

 protected:
  SchedulerBase(std::string name, const ConfigReader& config) : name_(std::move(name)), source_(config.source()) {}

  // Called at the end of a constructor, once every key has been read.
  void finish_config(const ConfigReader& config, const char* class_name) {
    effective_config_ = config.effective();
    effective_config_["_class_name"] = class_name;
  }

  // Validates the arguments of step(): timesteps set, index in range, shapes equal, noise given
  // where the step draws noise.
  void check_step_args(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) const {
    SDRT_CHECK(!timesteps_.empty(), name_, ": step() called before set_timesteps()");
    SDRT_CHECK(step_index < timesteps_.size(), name_, ": step index ", step_index, " out of range; ", timesteps_.size(),
               " timesteps are set");
    check_same_shape(model_output, sample, "model_output", "sample");
    if (needs_noise(step_index)) {
      SDRT_CHECK(noise != nullptr, name_, ": step ", step_index, " draws noise but none was passed");
      check_same_shape(*noise, sample, "noise", "sample");
    }
  }
  void check_index(size_t step_index) const {
    SDRT_CHECK(step_index < timesteps_.size(), name_, ": step index ", step_index, " out of range; ", timesteps_.size(),
               " timesteps are set");
  }
  // Multistep methods keep a history of model outputs, so steps must come in order.
  void check_in_order(size_t step_index, size_t steps_taken) const {
    SDRT_CHECK(step_index == steps_taken, name_, ": steps must be taken in order (expected step ", steps_taken,
               ", got ", step_index, "); call set_timesteps() to restart");
  }

  std::string name_;
  std::string source_;  // the config file, for error messages
  std::vector<double> timesteps_;
  nlohmann::json effective_config_;
};

// Factories, one per scheduler source file.
std::unique_ptr<Scheduler> make_pndm(const Config& config);
std::unique_ptr<Scheduler> make_ddim(const Config& config);
std::unique_ptr<Scheduler> make_euler(const Config& config);
std::unique_ptr<Scheduler> make_euler_ancestral(const Config& config);
std::unique_ptr<Scheduler> make_dpm_solver(const Config& config, bool force_karras, const std::string& name);
std::unique_ptr<Scheduler> make_lms(const Config& config);
std::unique_ptr<Scheduler> make_lcm(const Config& config);

}  // namespace sdrt::sched
