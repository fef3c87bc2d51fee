// The diffusers golden pipeline runs of the tiny model (tests/data/golden/README.md): the case
// files, the request each run made, and image PSNR against its image. Shared by the pipeline's
// golden tests and the int8 tests that hold quantised pipelines to the same images.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <string>

#include "io/safetensors.h"
#include "pipeline/pipeline.h"
#include "test_util.h"

namespace sdrt::testing {

// A golden pipeline case: tiny-sd15/cases/pipeline_<scheduler>_<steps>steps.safetensors.
struct GoldenCase {
  std::string scheduler;
  int steps;
  std::string file() const { return case_path("pipeline_" + scheduler + "_" + std::to_string(steps) + "steps.safetensors"); }
};

// Readable names in gtest output instead of a byte dump.
inline void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.scheduler << ", " << c.steps << " steps"; }

// The golden run's request: prompts, guidance, size, initial latents and (for ancestral
// schedulers) the replayed noise of every step.
inline GenerateParams golden_request(const SafeTensors& golden, const GoldenCase& c) {
  const auto& meta = golden.metadata();
  GenerateParams p;
  p.prompt = meta.at("prompt");
  p.negative_prompt = meta.at("negative_prompt");
  p.guidance = std::stof(meta.at("guidance_scale"));
  p.steps = c.steps;
  p.width = std::stoi(meta.at("width"));
  p.height = std::stoi(meta.at("height"));
  p.scheduler = c.scheduler;
  p.latents = golden.load_f32("latents_init");
  const int evaluations = std::stoi(meta.at("unet_evaluations"));
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
  return p;
}

// Peak signal-to-noise ratio of two images in [0, 1], in dB.
inline double psnr(const Tensor& a, const Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double sum = 0;
  for (int64_t i = 0; i < a.numel(); ++i) sum += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return 10.0 * std::log10(1.0 / std::max(sum / static_cast<double>(a.numel()), 1e-20));
}

// The image PSNR of `pipeline` on golden case `c` against diffusers' fp32 image.
inline double golden_psnr(const StableDiffusionPipeline& pipeline, const GoldenCase& c) {
  SafeTensors golden = SafeTensors::open(c.file());
  GenerateResult r = pipeline.generate(golden_request(golden, c));
  return psnr(r.images, golden.load_f32("image"));
}

}  // namespace sdrt::testing
