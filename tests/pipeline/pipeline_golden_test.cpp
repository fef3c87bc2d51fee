// Full StableDiffusionPipeline runs of the tiny reference model against diffusers: same prompt,
// negative prompt, guidance, latents and (for Euler-a) replayed ancestral noise.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <ostream>
#include <string>

#include "io/safetensors.h"
#include "pipeline/golden_pipeline_cases.h"
#include "pipeline/pipeline.h"
#include "test_util.h"

namespace sdrt {
namespace {

using PipelineCase = testing::GoldenCase;

std::string case_name(const ::testing::TestParamInfo<PipelineCase>& info) {
  return info.param.scheduler + "_" + std::to_string(info.param.steps) + "steps";
}

const StableDiffusionPipeline& tiny_pipeline() {
  static const StableDiffusionPipeline pipeline = StableDiffusionPipeline::load(testing::tiny_model_dir());
  return pipeline;
}

const StableDiffusionPipeline& tiny_pipeline_bf16() {
  static const StableDiffusionPipeline pipeline =
      StableDiffusionPipeline::load(testing::tiny_model_dir(), kernels::Precision::bf16);
  return pipeline;
}

SafeTensors open_golden(const PipelineCase& c) { return SafeTensors::open(c.file()); }

using testing::golden_request;
using testing::psnr;

class PipelineGolden : public ::testing::TestWithParam<PipelineCase> {};

TEST_P(PipelineGolden, MatchesDiffusers) {
  const auto& c = GetParam();
  auto golden = open_golden(c);
  const auto& pipe = tiny_pipeline();
  GenerateParams p = golden_request(golden, c);
  int evaluations = std::stoi(golden.metadata().at("unet_evaluations"));

  EXPECT_REL_LE(pipe.encode_prompt(p.prompt, 1, 1), golden.load_f32("prompt_embeds"), 1e-4);
  EXPECT_REL_LE(pipe.encode_prompt(p.negative_prompt, 1, 1), golden.load_f32("negative_prompt_embeds"), 1e-4);

  double worst_step_rel = 0;
  GenerateResult r = pipe.generate(p, [&](const StepInfo& s) {
    char prefix[32];
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

// bf16 rounds the operands of every convolution, linear layer and attention product, so it is
// held to an image-level bound instead of the per-step one: the PSNR target against
// diffusers' fp32 image (measured: 43-49 dB). The first step's guided noise prediction is
// reported as a relative error, max|diff| / max|ref|: 4.6-5.6 % on this random-weight model,
// where each layer's rounding (0.2-0.5 %, see the kernel tests) compounds through the UNet; the
// bound only catches a broken path.
constexpr double kBf16MinPsnrDb = 35.0;
constexpr double kBf16FirstStepTol = 0.1;

TEST_P(PipelineGolden, Bf16IsWithin35dBOfDiffusersFp32) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(kernels::Precision::bf16);
  const auto& c = GetParam();
  auto golden = open_golden(c);
  GenerateParams p = golden_request(golden, c);
  double first_step_rel = -1;
  GenerateResult r = tiny_pipeline_bf16().generate(p, [&](const StepInfo& s) {
    if (s.step == 1) first_step_rel = testing::compare(s.noise_pred, golden.load_f32("step00.noise_pred")).rel();
  });
  double db = psnr(r.images, golden.load_f32("image"));
  std::printf("    bf16: image PSNR %.1f dB vs diffusers fp32; first-step noise_pred rel %.3g\n", db, first_step_rel);
  EXPECT_GE(db, kBf16MinPsnrDb);
  EXPECT_LE(first_step_rel, kBf16FirstStepTol);
  EXPECT_GT(first_step_rel, 0) << "bf16 should not be bit-identical to fp32: is it running at all?";
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
