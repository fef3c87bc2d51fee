// `sdrt bench` on the tiny reference model: exact MAC counts of whole model evaluations, checked
// against numbers derived from the configs by hand, and one end-to-end benchmark run whose
// results must be complete and self-consistent. No timing thresholds: timings belong to the
// benchmark's reports, not to unit tests.
#include "pipeline/benchmark.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/cpu_isa.h"
#include "core/error.h"
#include "core/rng.h"
#include "pipeline/pipeline.h"
#include "test_util.h"

namespace sdrt {
namespace {

using kernels::MacCounter;
using kernels::OpCounterScope;

const StableDiffusionPipeline& tiny_pipeline() {
  static const StableDiffusionPipeline pipeline = StableDiffusionPipeline::load(testing::tiny_model_dir());
  return pipeline;
}

// One UNet forward of tests/data/golden/tiny-sd15 on a [1, 4, 32, 32] sample with a [1, 77, 32]
// context. From unet/config.json (block_out_channels [32, 64], layers_per_block 2,
// CrossAttnDown + Down / Up + CrossAttnUp, 8 heads, cross_attention_dim 32, time_embed_dim
// 4 x 32 = 128), following diffusers' channel bookkeeping; L = tokens = H*W at the level:
//
// conv (N*O*OH*OW*C*kh*kw), 339,214,336:
//   conv_in 4->32 @32x32                                               1,179,648
//   down0: 2 resnets 32->32 (2 3x3 convs each) @32x32               37,748,736
//          downsample 3x3 s2 -> 16x16                                 2,359,296
//   down1: resnet 32->64 (3x3 4,718,592 + 3x3 9,437,184 + 1x1 shortcut 524,288),
//          resnet 64->64 (18,874,368) @16x16                         33,554,432
//   mid:   2 resnets 64->64 @16x16                                   37,748,736
//   up0:   resnets (64+64)->64 twice (18,874,368 + 9,437,184 + 2,097,152 each),
//          (64+32)->64 (14,155,776 + 9,437,184 + 1,572,864) @16x16   85,524,480
//          upsample conv 64->64 @32x32                               37,748,736
//   up1:   resnets (64+32)->32 (28,311,552 + 9,437,184 + 3,145,728),
//          (32+32)->32 twice (18,874,368 + 9,437,184 + 2,097,152 each) @32x32   101,711,872
//   conv_out 32->4 @32x32                                              1,179,648
// linear (rows*in*out), 127,031,296:
//   time embedding 32->128->128: 4,096 + 16,384 = 20,480; time_emb_proj in 9 resnets:
//   5 x 128*64 + 4 x 128*32 = 57,344
//   5 transformers at 32 channels, L=1024, each: proj_in, q, k, v, out, q2, out2, proj_out
//   8 x 1024*32*32 = 8,388,608 (sdrt runs the 1x1-conv projections as linear layers),
//   cross k, v 2 x 77*32*32 = 157,696, GEGLU 1024*32*256 + 1024*128*32 = 12,582,912:
//   21,129,216 x 5 = 105,646,080
//   mid transformer at 64 channels, L=256: 8 x 256*64*64 + 2 x 77*32*64 + 256*64*512 +
//   256*256*64 = 21,286,912
// attention (B*heads*Lq*Lk*d*2 = B*Lq*Lk*channels*2), 371,687,424:
//   5 x (self 1024*1024*32*2 + cross 1024*77*32*2) = 5 x 72,155,136 = 360,775,680
//   mid: 256*256*64*2 + 256*77*64*2 = 10,911,744
// Total 837,933,056. (A small Python transcription of diffusers' module structure gives the same.)
constexpr int64_t kTinyUnetConvMacs = 339'214'336;
constexpr int64_t kTinyUnetLinearMacs = 127'031'296;
constexpr int64_t kTinyUnetAttentionMacs = 371'687'424;
constexpr int64_t kTinyUnetMacs = 837'933'056;

// VAE decode of [1, 4, 32, 32] latents to 256x256 (block_out_channels [32, 32, 64, 64],
// layers_per_block 1, i.e. 2 resnets per up block): post_quant_conv, conv_in, mid block (2 resnets
// + single-head attention at 32x32), 4 up blocks at 32, 64, 128, 256 pixels, conv_out. Derived
// the same way as above: conv 5,528,371,200, linear (mid attention q, k, v, out 4 x 1024*64*64)
// 16,777,216, attention 1024*1024*64*2 = 134,217,728.
constexpr int64_t kTinyVaeDecoderMacs = 5'679'366'144;

TEST(BenchmarkMacs, TinyUnetForwardMatchesTheHandCount) {
  const auto& pipe = tiny_pipeline();
  Tensor sample = TorchCpuRng(1).randn({1, 4, 32, 32});
  Tensor context = TorchCpuRng(2).randn({1, 77, 32});
  MacCounter counter;
  {
    OpCounterScope scope(counter);
    pipe.unet().forward(sample, {999.0f}, context);
  }
  MacCounts m = MacCounts::of(counter);
  EXPECT_EQ(m.conv, kTinyUnetConvMacs);
  EXPECT_EQ(m.linear, kTinyUnetLinearMacs);
  EXPECT_EQ(m.attention, kTinyUnetAttentionMacs);
  EXPECT_EQ(m.total(), kTinyUnetMacs);
}

TEST(BenchmarkMacs, TinyVaeDecodeMatchesTheHandCount) {
  MacCounter counter;
  {
    OpCounterScope scope(counter);
    tiny_pipeline().vae().decode(TorchCpuRng(3).randn({1, 4, 32, 32}));
  }
  EXPECT_EQ(counter.total_macs(), kTinyVaeDecoderMacs);
  EXPECT_EQ(counter.macs(kernels::OpKind::Attention), 134'217'728);
}

BenchmarkOptions tiny_options() {
  BenchmarkOptions o;
  o.model_dir = testing::tiny_model_dir();
  o.runs = 1;
  o.warmup = 0;
  o.steps = 1;
  o.peak_repeats = 1;
  return o;
}

TEST(Benchmark, EndToEndOnTheTinyModelIsComplete) {
  BenchmarkResult r = run_benchmark(tiny_options());
  EXPECT_EQ(r.options.width, 256);  // native: sample_size 32 x VAE factor 8
  EXPECT_EQ(r.options.height, 256);
  EXPECT_FALSE(r.options.scheduler.empty());
  EXPECT_EQ(r.unet_batch, 2);  // guided: [uncond, text] in one call
  EXPECT_GT(r.machine.threads, 0);
  EXPECT_GT(r.machine.physical_cores, 0);

  EXPECT_GT(r.load_s, 0);
  ASSERT_TRUE(r.compile_s.has_value());  // resident: the run's shape is compiled first
  EXPECT_GT(*r.compile_s, 0);
  for (const SampleStats* s : {&r.text_encoder_s, &r.vae_decode_s, &r.image_s}) EXPECT_EQ(s->samples.size(), 1u);
  EXPECT_EQ(r.unet_step_s.samples.size(), static_cast<size_t>(r.unet_calls_per_run));
  EXPECT_GE(r.unet_calls_per_run, 1);
  for (const SampleStats* s : {&r.text_encoder_s, &r.unet_step_s, &r.vae_decode_s, &r.image_s}) {
    EXPECT_GT(s->median, 0);
    EXPECT_LE(s->min, s->median);
    EXPECT_LE(s->median, s->max);
  }
  double stages = r.text_encoder_s.median + r.unet_step_s.median + r.vae_decode_s.median;
  EXPECT_GE(r.image_s.median, 0.5 * stages);
  EXPECT_GT(r.images_per_minute, 0);
  EXPECT_GT(r.rss_after_load_bytes, 0);
  EXPECT_GE(r.peak_rss_bytes, r.rss_after_load_bytes);
  // Per-stage peaks need a kernel that lets a process reset its peak counter (Linux does).
  if (r.unet_peak_rss_bytes > 0) {
    for (int64_t stage : {r.text_encoder_peak_rss_bytes, r.unet_peak_rss_bytes, r.vae_decode_peak_rss_bytes}) {
      EXPECT_GT(stage, 0);
      EXPECT_LE(stage, r.peak_rss_bytes);
    }
  }

  // Counted during the run: the batched UNet call is two tiny forwards, the decode one image.
  EXPECT_EQ(r.unet.macs.total(), 2 * kTinyUnetMacs);
  EXPECT_EQ(r.unet_macs_per_image().total(), kTinyUnetMacs);
  EXPECT_EQ(r.vae_decoder.macs.total(), kTinyVaeDecoderMacs);
  // Two prompts (text, negative) of 77 tokens through 3 layers of width 32, MLP 64, 4 heads:
  // 3 x (4 x 77*32*32 + 2 x 77*32*64 + 77*77*32*2) = 3,030,720 each.
  EXPECT_EQ(r.text_encoder_macs.total(), 2 * 3'030'720);
  EXPECT_GT(r.unet.gflops, 0);
  EXPECT_GT(r.vae_decoder.gflops, 0);

  ASSERT_TRUE(r.peak.has_value());
  EXPECT_EQ(r.peak->measurements.size(), 6u);  // f32, bf16, int8 x 2 shapes
  EXPECT_GT(r.peak->best_gflops(kernels::MatmulType::F32), 0);
  EXPECT_GT(r.unet.peak_fraction, 0);
}

TEST(Benchmark, StepMacsAgreeAcrossStepsAndBatch) {
  BenchmarkOptions o = tiny_options();
  o.steps = 2;
  o.batch = 2;
  o.guidance = 1.0f;     // unguided: one row per image
  o.scheduler = "ddim";  // one UNet call per step (the model's PNDM makes steps + 1)
  o.measure_peak = false;
  BenchmarkResult r = run_benchmark(o);
  EXPECT_EQ(r.unet_batch, 2);
  EXPECT_EQ(r.unet_calls_per_run, 2);
  EXPECT_EQ(r.unet_step_s.samples.size(), 2u);
  EXPECT_EQ(r.unet.macs.total(), 2 * kTinyUnetMacs);
  EXPECT_EQ(r.vae_decoder.macs.total(), 2 * kTinyVaeDecoderMacs);
  EXPECT_EQ(r.vae_decoder_macs_per_image().total(), kTinyVaeDecoderMacs);
  EXPECT_EQ(r.text_encoder_macs.total(), 3'030'720);  // no negative prompt pass
  EXPECT_FALSE(r.peak.has_value());
  EXPECT_EQ(r.unet.peak_fraction, 0);
}

TEST(Benchmark, PerStageResidencyLoadsInEachRunAndCountsTheSameWork) {
  BenchmarkOptions o = tiny_options();
  o.residency = "per-stage";
  o.measure_peak = false;
  BenchmarkResult r = run_benchmark(o);
  ASSERT_EQ(r.run_load_s.samples.size(), 1u);
  EXPECT_GT(r.run_load_s.median, 0);
  EXPECT_EQ(r.load_memory.unet, 0);  // nothing loaded up front
  EXPECT_EQ(r.unet.macs.total(), 2 * kTinyUnetMacs);
  EXPECT_EQ(r.vae_decoder.macs.total(), kTinyVaeDecoderMacs);
  auto j = nlohmann::json::parse(format_benchmark_json(r));
  EXPECT_EQ(j["config"]["residency"], "per-stage");
  EXPECT_NE(format_benchmark_table(r).find("model loads (per run)"), std::string::npos);
  EXPECT_FALSE(r.compile_s.has_value());  // nothing stays loaded to compile
  EXPECT_TRUE(j["seconds"]["compile"].is_null());
  o.residency = "lazy";
  EXPECT_THROW(run_benchmark(o), Error);
}

TEST(Benchmark, JsonReportParsesAndCarriesTheNumbers) {
  BenchmarkOptions o = tiny_options();
  o.measure_peak = false;
  BenchmarkResult r = run_benchmark(o);
  auto j = nlohmann::json::parse(format_benchmark_json(r));
  EXPECT_EQ(j["config"]["width"], 256);
  EXPECT_EQ(j["config"]["precision"], "fp32");
  EXPECT_DOUBLE_EQ(j["seconds"]["compile"].get<double>(), *r.compile_s);
  EXPECT_DOUBLE_EQ(j["seconds"]["unet_step"]["median"].get<double>(), r.unet_step_s.median);
  EXPECT_EQ(j["work"]["unet_call"]["macs"]["total"].get<int64_t>(), 2 * kTinyUnetMacs);
  EXPECT_EQ(j["work"]["vae_decoder_per_image_macs"]["total"].get<int64_t>(), kTinyVaeDecoderMacs);
  EXPECT_GT(j["memory_bytes"]["peak_rss"].get<int64_t>(), 0);
  EXPECT_TRUE(j["machine"]["isa"].contains("avx512_bf16"));
  EXPECT_EQ(j["machine"]["kernel_isa"], isa_summary());
  EXPECT_FALSE(j["machine"]["onednn_isa"].get<std::string>().empty());
  EXPECT_FALSE(j["machine"]["cpu_model"].get<std::string>().empty());
  EXPECT_TRUE(j["peak"].is_null());
  // Resident and compiled: both stages ran from their planned arenas.
  for (const char* stage : {"unet", "vae_decoder"}) {
    EXPECT_GT(j["activation_arenas"][stage]["block_bytes"].get<size_t>(), 0u) << stage;
    EXPECT_GT(j["activation_arenas"][stage]["served"].get<size_t>(), 0u) << stage;
    EXPECT_EQ(j["activation_arenas"][stage]["fallback"].get<size_t>(), 0u) << stage;
  }

  std::string table = format_benchmark_table(r);
  EXPECT_NE(table.find("compile"), std::string::npos);
  EXPECT_NE(table.find("UNet activations"), std::string::npos);
  EXPECT_NE(table.find("images per minute"), std::string::npos);
}

TEST(Benchmark, Bf16RunsAndIsRatedAgainstTheBf16Peak) {
  SDRT_SKIP_UNLESS_PRECISION_SUPPORTED(kernels::Precision::bf16);
  BenchmarkOptions o = tiny_options();
  o.precision = "bf16";
  BenchmarkResult r = run_benchmark(o);
  ASSERT_TRUE(r.peak.has_value());
  double bf16_peak = r.peak->best_gflops(kernels::MatmulType::BF16);
  ASSERT_GT(bf16_peak, 0);
  EXPECT_NEAR(r.unet.peak_fraction, r.unet.gflops / bf16_peak, 1e-9);
  EXPECT_EQ(nlohmann::json::parse(format_benchmark_json(r))["config"]["precision"], "bf16");
  EXPECT_NE(format_benchmark_table(r).find("bf16 peak"), std::string::npos);
}

TEST(Benchmark, RejectsBadCounts) {
  BenchmarkOptions o = tiny_options();
  o.runs = 0;
  EXPECT_THROW(run_benchmark(o), Error);
  o = tiny_options();
  o.precision = "fp16";
  EXPECT_THROW(run_benchmark(o), Error);
}

}  // namespace
}  // namespace sdrt
