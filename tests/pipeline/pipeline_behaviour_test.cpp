// Pipeline behaviour the golden runs do not cover: batching, guidance <= 1, seeds, bad requests.
#include <gtest/gtest.h>

#include <algorithm>

#include <filesystem>

#include "core/error.h"
#include "core/rng.h"
#include "kernels/op_counter.h"
#include "pipeline/pipeline.h"
#include "test_util.h"

namespace sdrt {
namespace {

const StableDiffusionPipeline& tiny() {
  static const StableDiffusionPipeline pipeline = StableDiffusionPipeline::load(testing::tiny_model_dir());
  return pipeline;
}

GenerateParams small_request() {
  GenerateParams p;
  p.prompt = "a red apple";
  p.negative_prompt = "blurry";
  p.steps = 2;
  p.width = p.height = 64;  // 8x8 latents keep these tests fast
  p.scheduler = "euler_a";  // ancestral: exercises the per-step noise stream too
  p.seed = 11;
  return p;
}

TEST(PipelineBehaviour, SameSeedSameImageOtherSeedOtherImage) {
  GenerateParams p = small_request();
  Tensor a = tiny().generate(p).images, b = tiny().generate(p).images;
  EXPECT_REL_LE(a, b, 0.0);
  p.seed = 12;
  EXPECT_GT(testing::compare(tiny().generate(p).images, a).max_abs, 1e-3);
}

TEST(PipelineBehaviour, SeedDrawsLatentsLikeTorchRandn) {
  // Replaying torch.manual_seed(11); torch.randn(...) latents must give the seeded result.
  GenerateParams p = small_request();
  p.scheduler = "ddim";  // no ancestral noise: the latents are the only random draw
  Tensor seeded = tiny().generate(p).images;
  p.latents = TorchCpuRng(11).randn({1, 4, 8, 8});
  EXPECT_REL_LE(tiny().generate(p).images, seeded, 0.0);
}

TEST(PipelineBehaviour, ImagesPerPromptShareOneGeneratorStream) {
  GenerateParams p = small_request();
  p.scheduler = "ddim";
  p.images = 2;
  GenerateResult two = tiny().generate(p);
  ASSERT_EQ(two.images.shape(), (Shape{2, 64, 64, 3}));
  EXPECT_GT(testing::compare(two.images.slice0(0, 1), two.images.slice0(1, 2)).max_abs, 1e-3);
  // Image 1 is what a single-image run with the second half of the batch's latents gives.
  Tensor latents = TorchCpuRng(11).randn({2, 4, 8, 8});
  p.images = 1;
  p.latents = latents.slice0(1, 2).clone();
  EXPECT_REL_LE(tiny().generate(p).images, two.images.slice0(1, 2).clone(), 1e-5);
}

TEST(PipelineBehaviour, PerStageResidencyGivesTheSameImageAndKeepsNoModels) {
  auto per_stage =
      StableDiffusionPipeline::load(testing::tiny_model_dir(), kernels::Precision::f32, Residency::per_stage);
  GenerateParams p = small_request();
  GenerateResult r = per_stage.generate(p);
  EXPECT_REL_LE(r.images, tiny().generate(p).images, 0.0);
  EXPECT_GT(r.times.load_s, 0.0);  // each stage loaded its model
  // The first UNet step planned the activation arena, the second took its buffers from it.
  EXPECT_GT(r.times.unet_arena.served, 0u);
  EXPECT_EQ(r.times.unet_arena.fallback, 0u);
  EXPECT_EQ(r.times.vae_arena.block_bytes, 0u);  // only compile() plans one for the decoder
  EXPECT_EQ(per_stage.default_width(), tiny().default_width());
  EXPECT_THROW(per_stage.unet(), Error);
  EXPECT_THROW(per_stage.vae(), Error);
  EXPECT_THROW(per_stage.text_encoder(), Error);
  EXPECT_EQ(tiny().generate(p).times.load_s, 0.0);  // resident: nothing loads per run
}

TEST(PipelineBehaviour, PerStageLoadStillFailsOnAMissingWeightsFile) {
  std::string dir = testing::scratch_dir("per-stage-no-unet-weights");
  std::filesystem::remove_all(dir);
  std::filesystem::copy(testing::tiny_model_dir(), dir, std::filesystem::copy_options::recursive);
  for (const auto& entry : std::filesystem::directory_iterator(dir + "/unet"))
    if (entry.path().extension() == ".safetensors") std::filesystem::remove(entry.path());
  try {
    StableDiffusionPipeline::load(dir, kernels::Precision::f32, Residency::per_stage);
    FAIL() << "loaded a pipeline whose UNet has no weights";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unet"), std::string::npos) << e.what();
  }
}

TEST(PipelineBehaviour, ACompiledShapeGeneratesWithoutCreatingKernelPlans) {
  // A fresh pipeline: plans live in the loaded layers, and tiny() has run other shapes already.
  auto pipe = StableDiffusionPipeline::load(testing::tiny_model_dir());
  GenerateParams p = small_request();
  kernels::MacCounter compiling, generating, other_size;
  {
    kernels::OpCounterScope scope(compiling);
    EXPECT_GT(pipe.compile({p.images, p.width, p.height, /*guided=*/true}), 0.0);
  }
  EXPECT_GT(compiling.plans(), 0);
  GenerateResult r;
  {
    kernels::OpCounterScope scope(generating);
    r = pipe.generate(p);
  }
  EXPECT_EQ(generating.plans(), 0);
  // Nor allocates: every large UNet and decoder buffer comes from the arenas compile() planned.
  for (const auto& arena : {r.times.unet_arena, r.times.vae_arena}) {
    EXPECT_GT(arena.block_bytes, 0u);
    EXPECT_GT(arena.served, 0u);
    EXPECT_EQ(arena.fallback, 0u);
  }
  EXPECT_REL_LE(r.images, tiny().generate(p).images, 0.0);  // compiling changes nothing in the result
  p.width = 96;  // another size still works, making its own plans
  {
    kernels::OpCounterScope scope(other_size);
    pipe.generate(p);
  }
  EXPECT_GT(other_size.plans(), 0);
}

TEST(PipelineBehaviour, ACompiledShapeWithLargeInputsRunsEntirelyFromItsArenas) {
  // 64x32 latents: the UNet's and the decoder's inputs are large enough (>= 64 KB) to be arena
  // buffers themselves, which compile() must not record as part of the calls.
  auto pipe = StableDiffusionPipeline::load(testing::tiny_model_dir());
  GenerateParams p = small_request();
  p.width = 256;
  p.height = 512;
  pipe.compile({p.images, p.width, p.height, /*guided=*/true});
  GenerateResult r = pipe.generate(p);
  for (const auto& arena : {r.times.unet_arena, r.times.vae_arena}) {
    EXPECT_GT(arena.served, 0u);
    EXPECT_EQ(arena.fallback, 0u);
  }
}

TEST(PipelineBehaviour, CompileNeedsAResidentPipeline) {
  auto per_stage =
      StableDiffusionPipeline::load(testing::tiny_model_dir(), kernels::Precision::f32, Residency::per_stage);
  EXPECT_THROW(per_stage.compile({}), Error);
}

TEST(PipelineBehaviour, ResidencyNames) {
  EXPECT_EQ(residency_from_name("per-stage"), Residency::per_stage);
  EXPECT_EQ(residency_from_name("resident"), Residency::resident);
  EXPECT_STREQ(residency_name(Residency::per_stage), "per-stage");
  EXPECT_THROW(residency_from_name("lazy"), Error);
}

TEST(PipelineBehaviour, GuidanceOneSkipsTheUnconditionalPass) {
  GenerateParams p = small_request();
  p.guidance = 1.0f;
  Tensor with_negative = tiny().generate(p).images;
  p.negative_prompt = "something else entirely";
  EXPECT_REL_LE(tiny().generate(p).images, with_negative, 0.0);
}

TEST(PipelineBehaviour, NegativePromptMattersWhenGuided) {
  GenerateParams p = small_request();
  Tensor a = tiny().generate(p).images;
  p.negative_prompt = "something else entirely";
  EXPECT_GT(testing::compare(tiny().generate(p).images, a).max_abs, 1e-4);
}

TEST(PipelineBehaviour, RejectsBadRequestsBeforeWork) {
  auto expect_error = [](GenerateParams p, const std::string& fragment) {
    try {
      tiny().generate(p);
      FAIL() << "expected an error mentioning " << fragment;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    }
  };
  GenerateParams p = small_request();
  p.width = 60;
  expect_error(p, "multiple of 8");
  p = small_request();
  p.steps = 0;
  expect_error(p, "at least 1");
  p = small_request();
  p.latents = Tensor({1, 4, 9, 9});
  expect_error(p, "--latents");
  p = small_request();
  p.noise = Tensor({1, 1, 4, 8, 8});
  expect_error(p, "--noise");
  p = small_request();
  p.scheduler = "nope";
  expect_error(p, "nope");
  p = small_request();
  p.vae_tile_size = 20;
  expect_error(p, "--vae-tile");
}

TEST(PipelineBehaviour, TiledDecodingDecodesTheSameLatentsInTiles) {
  GenerateParams p = small_request();
  p.width = 128;
  p.height = 96;  // 16 x 12 latents in tiles of 8: 3 x 2 tiles
  GenerateResult whole = tiny().generate(p);
  p.vae_tile_size = 64;
  GenerateResult tiled = tiny().generate(p);
  EXPECT_REL_LE(tiled.latents, whole.latents, 0.0);  // only the decode changes
  ASSERT_EQ(tiled.images.shape(), whole.images.shape());
  Tensor z = tiled.latents.clone();
  kernels::scale_inplace(z, 1.0f / tiny().vae_config().scaling_factor);
  Tensor expected = kernels::nchw_to_nhwc(tiny().vae().decode_tiled(z, 64));
  for (int64_t i = 0; i < expected.numel(); ++i) expected[i] = std::clamp(expected[i] / 2 + 0.5f, 0.0f, 1.0f);
  // The same decode to a few float roundings of values near 1 (9.5e-7 with the AVX-512 kernels,
  // 1.0e-6 with the AVX2 and scalar ones): not bit-identical, since the pipeline's decode and
  // this one do not share their oneDNN plans and buffers.
  EXPECT_REL_LE(tiled.images, expected, 2e-6);
}

TEST(PipelineBehaviour, MissingComponentFolderIsNamed) {
  std::string dir = testing::scratch_dir("no-vae");
  try {
    StableDiffusionPipeline::load(dir);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model_index.json"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace sdrt
