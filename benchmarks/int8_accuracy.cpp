// How far an int8 UNet's output strays from the float UNet's along the float model's own sampling
// trajectory: at every step, each int8 UNet gets exactly the float run's input (latents, timestep,
// the guidance batch's text conditioning) and its guided noise prediction is compared with the
// float one (relative L2 error). On a random-weight model this is a weak proxy for image quality
// (its outputs are not images anyone would look at) but it measures the arithmetic on the real
// architecture and shapes.
//
//   int8_accuracy FLOAT_DIR [--dynamic] [--int8 QDIR]... [--steps N] [--size S] [--prompt P] [--seed N]
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "models/unet.h"
#include "pipeline/pipeline.h"
#include "schedulers/scheduler.h"

using namespace sdrt;

namespace {

double relative_error(const Tensor& got, const Tensor& want) {
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double d = static_cast<double>(got.data()[i]) - want.data()[i];
    diff += d * d;
    norm += static_cast<double>(want.data()[i]) * want.data()[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

Tensor concat_rows(const Tensor& a, const Tensor& b) {
  Shape s = a.shape();
  s[0] += b.dim(0);
  Tensor out = Tensor::empty(s);
  std::memcpy(out.data(), a.data(), a.numel() * sizeof(float));
  std::memcpy(out.data() + a.numel(), b.data(), b.numel() * sizeof(float));
  return out;
}

Tensor guided(const Tensor& batch, float guidance) {
  const int64_t half = batch.numel() / 2;
  Shape s = batch.shape();
  s[0] /= 2;
  Tensor out = Tensor::empty(s);
  for (int64_t i = 0; i < half; ++i)
    out.data()[i] = batch.data()[i] + guidance * (batch.data()[half + i] - batch.data()[i]);
  return out;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc < 2) {
    std::fprintf(stderr, "usage: int8_accuracy FLOAT_DIR [--dynamic] [--int8 QDIR]... [--steps N] [--size S] "
                         "[--prompt P] [--seed N]\n");
    return 2;
  }
  const std::string float_dir = argv[1];
  std::vector<std::pair<std::string, std::string>> variants;  // (label, unet dir or "" for dynamic)
  int steps = 20, size = 0;
  uint64_t seed = 1;
  std::string prompt = "a photograph of an astronaut riding a horse";
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&] {
      SDRT_CHECK(i + 1 < argc, a, " needs a value");
      return std::string(argv[++i]);
    };
    if (a == "--dynamic") variants.emplace_back("dynamic int8", "");
    else if (a == "--int8") {
      std::string d = next();
      variants.emplace_back(d, d + "/unet");
    } else if (a == "--steps") steps = std::stoi(next());
    else if (a == "--size") size = std::stoi(next());
    else if (a == "--prompt") prompt = next();
    else if (a == "--seed") seed = std::stoull(next());
    else fail("unknown argument ", a);
  }
  auto pipe = StableDiffusionPipeline::load(float_dir, kernels::Precision::f32, Residency::resident);
  std::vector<std::unique_ptr<UNet2DConditionModel>> unets;
  for (const auto& [label, dir] : variants)
    unets.push_back(std::make_unique<UNet2DConditionModel>(
        dir.empty() ? UNet2DConditionModel::load(float_dir + "/unet", kernels::Precision::int8)
                    : UNet2DConditionModel::load(dir, kernels::Precision::f32)));

  GenerateParams p;
  p.prompt = prompt;
  p.steps = steps;
  p.seed = seed;
  p.width = p.height = size;
  p.scheduler = pipe.default_scheduler();
  auto scheduler = make_scheduler(p.scheduler, pipe.scheduler_config());
  scheduler->set_timesteps(steps);
  const std::vector<double> timesteps = scheduler->timesteps();
  const Tensor context = concat_rows(pipe.encode_prompt("", 1, 1), pipe.encode_prompt(prompt, 1, 1));

  std::printf("step  timestep");
  for (const auto& v : variants) std::printf("  %s", v.first.c_str());
  std::printf("   (relative L2 error of the guided noise prediction against fp32)\n");
  std::vector<double> sums(variants.size(), 0);
  pipe.generate(p, [&](const StepInfo& s) {
    const size_t i = static_cast<size_t>(s.step - 1);
    const Tensor model_in = concat_rows(s.model_input, s.model_input);
    std::vector<float> t(2, static_cast<float>(timesteps[i]));
    std::printf("%4d %9.1f", s.step, timesteps[i]);
    for (size_t v = 0; v < unets.size(); ++v) {
      const double e = relative_error(guided(unets[v]->forward(model_in, t, context), p.guidance), s.noise_pred);
      sums[v] += e;
      std::printf("  %.4f", e);
    }
    std::printf("\n");
    std::fflush(stdout);
  });
  std::printf("mean          ");
  for (double s : sums) std::printf("  %.4f", s / timesteps.size());
  std::printf("\n");
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "int8_accuracy: %s\n", e.what());
  return 1;
}
