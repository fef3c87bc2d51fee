// Full StableDiffusionPipeline runs of the tiny reference model against diffusers: same prompt,
// negative prompt, guidance, latents and (for Euler-a) replayed ancestral noise.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ostream>
#include <string>

#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "test_util.h"

namespace sdrt {
namespace {

struct PipelineCase {
  std::string scheduler;
  int steps;
};

// Readable names in ctest output instead of a byte dump.
void PrintTo(const PipelineCase& c, std::ostream* os) { *os << c.scheduler << ", " << c.steps << " steps"; }

std::string case_name(const ::testing::TestParamInfo<PipelineCase>& info) {
  return info.param.scheduler + "_" + std::to_string(info.param.steps) + "steps";
}

const StableDiffusionPipeline& tiny_pipeline() {
  static const StableDiffusionPipeline pipeline = StableDiffusionPipeline::load(testing::tiny_model_dir());
  return pipeline;
}

class PipelineGolden : public ::testing::TestWithParam<PipelineCase> {};

TEST_P(PipelineGolden, MatchesDiffusers) {
  const auto& c = GetParam();
  auto golden = SafeTensors::open(
      testing::case_path("pipeline_" + c.scheduler + "_" + std::to_string(c.steps) + "steps.safetensors"));
  const auto& meta = golden.metadata();
  const auto& pipe = tiny_pipeline();

  GenerateParams p;
  p.prompt = meta.at("prompt");
  p.negative_prompt = meta.at("negative_prompt");
  p.guidance = std::stof(meta.at("guidance_scale"));
  p.steps = c.steps;
  p.width = std::stoi(meta.at("width"));
  p.height = std::stoi(meta.at("height"));
  p.scheduler = c.scheduler;
  p.latents = golden.load_f32("latents_init");
  int evaluations = std::stoi(meta.at("unet_evaluations"));
  if (golden.contains("step00.noise")) {
    Tensor first = golden.load_f32("step00.noise");
    Shape s = first.shape();
    s.insert(s.begin(), evaluations);
    Tensor noise = Tensor::empty(s);
    for (int i = 0; i < evaluations; ++i) {
      char key[32];
      std::snprintf(key, sizeof key, "step%02d.noise", i);
      Tensor step = golden.load_f32(key);
      std::copy(step.data(), step.data() + step.numel(), noise.data() + i * step.numel());
    }
    p.noise = noise;
  }

  EXPECT_REL_LE(pipe.encode_prompt(p.prompt, 1, 1), golden.load_f32("prompt_embeds"), 1e-4);
  EXPECT_REL_LE(pipe.encode_prompt(p.negative_prompt, 1, 1), golden.load_f32("negative_prompt_embeds"), 1e-4);

  double worst_step_rel = 0;
  GenerateResult r = pipe.generate(p, [&](const StepInfo& s) {
    char prefix[16];
    std::snprintf(prefix, sizeof prefix, "step%02d.", s.step - 1);
    auto check = [&](const Tensor& actual, const std::string& name) {
      auto d = testing::compare(actual, golden.load_f32(prefix + name));
      worst_step_rel = std::max(worst_step_rel, d.rel());
      EXPECT_LE(d.rel(), 1e-4) << prefix << name;
    };
    check(s.model_input, "unet_input");
    check(s.noise_pred, "noise_pred");
    check(s.latents, "latents");
  });
  std::printf("    worst per-step rel %.3g over %d steps\n", worst_step_rel, evaluations);
  EXPECT_EQ(static_cast<int>(r.times.unet_step_s.size()), evaluations);
  EXPECT_REL_LE(r.latents, golden.load_f32("latents_final"), 1e-4);

  Tensor expected_image = golden.load_f32("image");
  auto d = testing::compare(r.images, expected_image);
  std::printf("    image max abs %.3g\n", d.max_abs);
  EXPECT_LE(d.max_abs, 1e-3);

  auto u8 = golden.load_u8("image_u8");
  int off_by_one = 0, worse = 0;
  for (int64_t i = 0; i < r.images.numel(); ++i) {
    int mine = static_cast<int>(std::nearbyint(r.images[i] * 255.0f));
    int diff = std::abs(mine - u8[static_cast<size_t>(i)]);
    off_by_one += diff == 1;
    worse += diff > 1;
  }
  std::printf("    image_u8: %d of %lld values differ by 1, %d by more\n", off_by_one,
              static_cast<long long>(r.images.numel()), worse);
  EXPECT_EQ(worse, 0);
}

INSTANTIATE_TEST_SUITE_P(AllSchedulers, PipelineGolden,
                         ::testing::Values(PipelineCase{"pndm", 4}, PipelineCase{"pndm", 8}, PipelineCase{"ddim", 4},
                                           PipelineCase{"ddim", 8}, PipelineCase{"euler", 4},
                                           PipelineCase{"euler", 8}, PipelineCase{"euler_a", 4},
                                           PipelineCase{"euler_a", 8}, PipelineCase{"dpmpp_2m", 4},
                                           PipelineCase{"dpmpp_2m", 8}),
                         case_name);

}  // namespace
}  // namespace sdrt
