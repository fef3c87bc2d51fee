#include <chrono>
#include <cstdio>

#include "commands.h"
#include "core/error.h"
#include "pipeline/random_model.h"

namespace sdrt::app {

Command add_init_random_command(CLI::App& app) {
  auto opts = std::make_shared<RandomModelOptions>();
  auto dtype = std::make_shared<std::string>("f16");
  opts->tokenizer_dir = std::string(SDRT_SOURCE_DIR) + "/tests/data/golden/tokenizer";
  auto* cmd = app.add_subcommand(
      "init-random", "Write a full-size model with real SD configs and random weights (for benchmarks and tests)");
  cmd->add_option("--like", opts->like, "architecture preset")
      ->check(CLI::IsMember(random_model_presets()))
      ->capture_default_str();
  cmd->add_option("--out", opts->out_dir, "output folder (diffusers layout)")->required();
  cmd->add_option("--dtype", *dtype, "weight dtype on disk")->check(CLI::IsMember({"f16", "f32"}))->capture_default_str();
  cmd->add_option("--seed", opts->seed, "weight seed")->capture_default_str();
  cmd->add_option("--tokenizer", opts->tokenizer_dir, "folder with vocab.json and merges.txt to copy")
      ->capture_default_str();
  return [opts, dtype] {
    opts->dtype = *dtype == "f32" ? DType::F32 : DType::F16;
    auto t0 = std::chrono::steady_clock::now();
    int64_t params = write_random_model(*opts);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "wrote %s (%s, %.1f M parameters, %s) in %.1f s\n", opts->out_dir.c_str(), opts->like.c_str(),
                 params / 1e6, dtype->c_str(), s);
  };
}

}  // namespace sdrt::app
