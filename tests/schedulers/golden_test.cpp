// Every scheduler against the diffusers v0.27.2 trajectories in tests/data/golden
// (scheduler_*.safetensors), built as users build them: from the SD 1.5 PNDM config file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <regex>
#include <string>

#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "schedulers/scheduler.h"
#include "test_util.h"

namespace sdrt {
namespace {

constexpr double kStepTolerance = 1e-5;      // golden README: scheduler steps fed the stored inputs
constexpr double kScheduleTolerance = 1e-6;  // float timesteps, sigmas, init_noise_sigma

std::string sd15_config_path() { return testing::tiny_model_dir() + "/scheduler/scheduler_config.json"; }

struct GoldenCase {
  const char* scheduler;
  const char* file;
};

const GoldenCase kCases[] = {
    {"pndm", "scheduler_pndm.safetensors"},         {"ddim", "scheduler_ddim.safetensors"},
    {"euler", "scheduler_euler.safetensors"},       {"euler_a", "scheduler_euler_a.safetensors"},
    {"dpmpp_2m", "scheduler_dpmpp_2m.safetensors"}, {"lms", "scheduler_lms.safetensors"},
    {"lcm", "scheduler_lcm.safetensors"},
};
const int kStepCounts[] = {4, 20, 50};

std::string step_key(int n, size_t i, const char* what) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "n%d.step%03zu.%s", n, i, what);
  return buf;
}

// The metadata config is Python's json.dumps, which writes -Infinity / Infinity / NaN bare;
// quote them so a strict JSON parser accepts the text.
nlohmann::json parse_python_json(const std::string& text) {
  static const std::regex non_finite(R"((-?Infinity|NaN))");
  return nlohmann::json::parse(std::regex_replace(text, non_finite, "\"$1\""));
}

bool same_value(const nlohmann::json& ours, const nlohmann::json& stored) {
  if (stored.is_string() && (stored == "-Infinity" || stored == "Infinity")) {
    return ours.is_number() && std::isinf(ours.get<double>()) && (ours.get<double>() < 0) == (stored == "-Infinity");
  }
  if (ours.is_number() && stored.is_number()) return ours.get<double>() == stored.get<double>();
  return ours == stored;
}

// The worst step of one quantity over a trajectory.
struct Worst {
  double rel = 0;
  double max_abs = 0;
  size_t step = 0;
  size_t count = 0;
  void add(const testing::Diff& d, size_t i) {
    ++count;
    if (d.rel() >= rel) {
      rel = d.rel();
      max_abs = d.max_abs;
      step = i;
    }
  }
  void report(const std::string& label, double tol) const {
    if (count == 0) return;
    std::printf("    [%s] max rel %.3g (max abs %.3g, step %zu of %zu)\n", label.c_str(), rel, max_abs, step, count);
    ::testing::Test::RecordProperty(label, std::to_string(rel));
    EXPECT_LE(rel, tol) << label << " at step " << step;
  }
};

class SchedulerGolden : public ::testing::TestWithParam<std::tuple<GoldenCase, int>> {
 protected:
  void SetUp() override {
    golden_case_ = std::get<0>(GetParam());
    n_ = std::get<1>(GetParam());
    golden_ = std::make_unique<SafeTensors>(SafeTensors::open(testing::case_path(golden_case_.file)));
    scheduler_ = make_scheduler(golden_case_.scheduler, Config::load(sd15_config_path()));
    scheduler_->set_timesteps(n_);
  }
  std::string key(const std::string& what) const { return str("n", n_, ".", what); }
  std::string label(const std::string& what) const { return str(golden_case_.scheduler, " n=", n_, " ", what); }

  GoldenCase golden_case_{};
  int n_ = 0;
  std::unique_ptr<SafeTensors> golden_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_P(SchedulerGolden, EffectiveConfigMatchesDiffusers) {
  const nlohmann::json stored = parse_python_json(golden_->metadata().at("config"));
  const nlohmann::json& ours = scheduler_->effective_config();
  EXPECT_EQ(ours.at("_class_name"), stored.at("_class_name"));
  // Every key we resolve has the value diffusers resolved (file value or class default).
  for (const auto& [k, v] : ours.items()) {
    if (k.starts_with("_")) continue;
    ASSERT_TRUE(stored.contains(k)) << "we read key '" << k << "' that diffusers' config lacks";
    EXPECT_TRUE(same_value(v, stored[k])) << k << ": ours " << v.dump() << ", diffusers " << stored[k].dump();
  }
  // Every key diffusers reports is either one we resolve or a hidden key passed through from the file.
  const nlohmann::json file = Config::load(sd15_config_path()).json();
  for (const auto& [k, v] : stored.items()) {
    if (k.starts_with("_")) continue;
    EXPECT_TRUE(ours.contains(k) || file.contains(k)) << "diffusers key '" << k << "' is not handled";
  }
}

TEST_P(SchedulerGolden, TimestepsSigmasAndInitNoiseSigma) {
  const std::vector<double>& ts = scheduler_->timesteps();
  const TensorInfo& info = golden_->info(key("timesteps"));
  if (info.dtype == DType::I64) {
    std::vector<int64_t> expected = golden_->load_i64(key("timesteps"));
    ASSERT_EQ(ts.size(), expected.size());
    for (size_t i = 0; i < ts.size(); ++i) EXPECT_EQ(ts[i], static_cast<double>(expected[i])) << "timestep " << i;
  } else {
    Tensor expected = golden_->load_f32(key("timesteps"));
    ASSERT_EQ(static_cast<int64_t>(ts.size()), expected.numel());
    Tensor ours = Tensor::from_vector({expected.numel()}, std::vector<float>(ts.begin(), ts.end()));
    EXPECT_REL_LE(ours, expected, kScheduleTolerance);
  }

  const std::vector<float> sigmas = scheduler_->sigmas();
  if (golden_->contains(key("sigmas"))) {
    Tensor expected = golden_->load_f32(key("sigmas"));
    ASSERT_EQ(static_cast<int64_t>(sigmas.size()), expected.numel());
    EXPECT_REL_LE(Tensor::from_vector({expected.numel()}, sigmas), expected, kScheduleTolerance);
  } else {
    EXPECT_TRUE(sigmas.empty());
  }

  Tensor init_sigma = golden_->load_f32(key("init_noise_sigma"));
  EXPECT_NEAR(scheduler_->init_noise_sigma(), init_sigma[0], kScheduleTolerance * std::fabs(init_sigma[0]));
  const Tensor noise_init = golden_->load_f32(key("noise_init"));
  const float sigma0 = scheduler_->init_noise_sigma();
  Tensor sample_init = Tensor::empty(noise_init.shape());
  for (int64_t i = 0; i < noise_init.numel(); ++i) sample_init[i] = noise_init[i] * sigma0;
  EXPECT_REL_LE(sample_init, golden_->load_f32(key("sample_init")), kStepTolerance);
}

// Each step is fed the stored sample_in, so errors cannot accumulate between steps.
TEST_P(SchedulerGolden, EveryStepMatchesOnStoredInputs) {
  Worst model_input, prev_sample, pred_original;
  for (size_t i = 0; i < scheduler_->timesteps().size(); ++i) {
    const Tensor sample_in = golden_->load_f32(step_key(n_, i, "sample_in"));
    const Tensor model_output = golden_->load_f32(step_key(n_, i, "model_output"));

    model_input.add(testing::compare(scheduler_->scale_model_input(sample_in, i),
                                     golden_->load_f32(step_key(n_, i, "model_input"))),
                    i);

    const std::string noise_name = step_key(n_, i, "noise");
    ASSERT_EQ(scheduler_->needs_noise(i), golden_->contains(noise_name)) << "step " << i;
    Tensor noise;
    if (golden_->contains(noise_name)) noise = golden_->load_f32(noise_name);
    const Tensor prev = scheduler_->step(model_output, i, sample_in, noise.defined() ? &noise : nullptr);
    prev_sample.add(testing::compare(prev, golden_->load_f32(step_key(n_, i, "prev_sample"))), i);

    for (const char* name : {"pred_original_sample", "denoised"}) {
      if (!golden_->contains(step_key(n_, i, name))) continue;
      ASSERT_NE(scheduler_->pred_original_sample(), nullptr) << "step " << i;
      pred_original.add(testing::compare(*scheduler_->pred_original_sample(), golden_->load_f32(step_key(n_, i, name))),
                        i);
    }
  }
  EXPECT_GT(prev_sample.count, 0u);
  model_input.report(label("model_input"), kStepTolerance);
  prev_sample.report(label("prev_sample"), kStepTolerance);
  pred_original.report(label("pred_original"), kStepTolerance);
}

// The scheduler's own outputs chained through every step and compared at the end. Model outputs
// are replayed from the file, so the comparison isolates the scheduler's accumulated rounding.
TEST_P(SchedulerGolden, ChainedTrajectoryMatchesFinalSample) {
  Tensor sample = golden_->load_f32(key("sample_init"));
  const size_t steps = scheduler_->timesteps().size();
  for (size_t i = 0; i < steps; ++i) {
    Tensor noise;
    if (scheduler_->needs_noise(i)) noise = golden_->load_f32(step_key(n_, i, "noise"));
    sample = scheduler_->step(golden_->load_f32(step_key(n_, i, "model_output")), i, sample,
                              noise.defined() ? &noise : nullptr);
  }
  const Tensor expected = golden_->load_f32(step_key(n_, steps - 1, "prev_sample"));
  const testing::Diff d = testing::compare(sample, expected);
  std::printf("    [%s] rel %.3g (max abs %.3g)\n", label("chained final sample").c_str(), d.rel(), d.max_abs);
  ::testing::Test::RecordProperty("chained_rel", std::to_string(d.rel()));
  EXPECT_LE(d.rel(), kStepTolerance);
}

std::string case_name(const ::testing::TestParamInfo<std::tuple<GoldenCase, int>>& info) {
  return std::string(std::get<0>(info.param).scheduler) + "_n" + std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Diffusers, SchedulerGolden,
                         ::testing::Combine(::testing::ValuesIn(kCases), ::testing::ValuesIn(kStepCounts)), case_name);

}  // namespace
}  // namespace sdrt
