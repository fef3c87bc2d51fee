// Diffusion samplers, step-exact ports of diffusers v0.27.2 schedulers built with
// `XScheduler.from_config(<the model's scheduler_config.json>)`.
//
// Every scheduler reproduces the reference's arithmetic: the noise schedule is float32 (torch),
// sigma lists are computed in float64 (numpy) and rounded to float32, and step() runs in float32
// with the same operation order as the Python code, so results agree with diffusers to a few
// float32 ulps.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/config.h"

namespace sdrt {

enum class PredictionType { Epsilon, VPrediction, Sample };

class Scheduler {
 public:
  virtual ~Scheduler() = default;

  // Throws for zero steps and for step counts the configuration cannot serve.
  virtual void set_timesteps(int num_inference_steps) = 0;
  // The timesteps the UNet is called with (float, since Euler-family timesteps are fractional).
  // PNDM returns N+1 entries (N+9 with Runge-Kutta warm-up steps).
  virtual const std::vector<double>& timesteps() const = 0;
  virtual float init_noise_sigma() const = 0;
  // May return `sample` itself (sharing storage) when the scheduler does not scale.
  virtual Tensor scale_model_input(const Tensor& sample, size_t step_index) const = 0;
  // One step. `noise` is the N(0,1) tensor for ancestral/LCM/SDE steps (nullptr for deterministic
  // schedulers); needs_noise(step_index) says whether a step consumes one. Multistep schedulers
  // (PNDM, DPM-Solver, LMS) keep a history and must be stepped in order 0, 1, 2, ...
  virtual Tensor step(const Tensor& model_output, size_t step_index, const Tensor& sample, const Tensor* noise) = 0;
  virtual bool needs_noise(size_t step_index) const { return false; }
  // The sigma list where the scheduler has one (Euler, Euler-a, LMS, DPM++), else empty.
  virtual std::vector<float> sigmas() const { return {}; }
  // For diagnostics/tests: x0 prediction of the last step when the scheduler computes one
  // (DDIM, Euler, Euler-a, LMS; for LCM the `denoised` output).
  virtual const Tensor* pred_original_sample() const { return nullptr; }
  virtual std::string name() const = 0;
  // Every configuration key the scheduler class knows, with the value in effect (file value or
  // class default), in the form diffusers stores in `scheduler.config`.
  virtual const nlohmann::json& effective_config() const = 0;
};

// name: pndm, ddim, euler, euler_a, dpmpp_2m, dpmpp_2m_karras, lms, lcm.
// config: the model's scheduler/scheduler_config.json, with from_config semantics: keys the
// scheduler class does not know are ignored, and its own defaults fill keys the file lacks.
// dpmpp_2m_karras is dpmpp_2m with use_karras_sigmas forced on.
std::unique_ptr<Scheduler> make_scheduler(const std::string& name, const Config& config);
std::vector<std::string> scheduler_names();

}  // namespace sdrt
