// `sdrt bench`: the command-line face of pipeline/benchmark.h. Progress goes to stderr, the
// table to stdout, and with --json the full result to a file for tools.
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "pipeline/benchmark.h"

namespace sdrt::app {

namespace {

struct BenchCommandOptions {
  BenchmarkOptions bench;
  std::vector<std::string> precisions = {"fp32"};
  std::vector<std::string> compare_models;  // more model folders (e.g. int8 ones from sdrt quantize)
  std::string json_file;
  bool quiet = false;
};

void write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  if (!out) fail("--json: cannot open '", path, "' for writing");
  out << text;
  if (!out.flush()) fail("--json: failed writing '", path, "'");
}

// One benchmark per precision of --precision, then one per --compare-model (at the first
// precision), in this process one after another, and a side-by-side table when there are several.
void run_bench(BenchCommandOptions& o) {
  if (!o.quiet) o.bench.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  std::vector<BenchmarkOptions> variants;
  for (const auto& p : o.precisions) {
    variants.push_back(o.bench);
    variants.back().precision = p;
  }
  for (const auto& m : o.compare_models) {
    variants.push_back(o.bench);
    variants.back().precision = o.precisions.front();
    variants.back().model_dir = m;
  }
  std::vector<BenchmarkResult> results;
  for (const auto& v : variants) {
    results.push_back(run_benchmark(v));
    std::fputs(format_benchmark_table(results.back()).c_str(), stdout);
    if (variants.size() > 1) std::fputs("\n", stdout);
  }
  if (results.size() > 1) std::fputs(format_benchmark_comparison(results).c_str(), stdout);
  if (!o.json_file.empty()) {
    std::string json;
    if (results.size() == 1) {
      json = format_benchmark_json(results.front());
    } else {
      json = "{\"variants\": [\n";
      for (size_t i = 0; i < results.size(); ++i) json += (i ? ",\n" : "") + format_benchmark_json(results[i]);
      json += "]}\n";
    }
    write_text_file(o.json_file, json);
    if (!o.quiet) std::fprintf(stderr, "wrote %s\n", o.json_file.c_str());
  }
}

}  // namespace

Command add_bench_command(CLI::App& app) {
  auto o = std::make_shared<BenchCommandOptions>();
  auto& b = o->bench;
  b.model_dir = default_model_dir();
  auto* cmd = app.add_subcommand("bench", "Time the pipeline stage by stage; report GFLOP/s against the matmul peak");
  cmd->add_option("--model,-m", b.model_dir, "diffusers model folder (default: $SDRT_MODEL or the shipped model)")
      ->capture_default_str();
  cmd->add_option("--width,-W", b.width, "image width, a multiple of 8 (default: the model's native size)");
  cmd->add_option("--height,-H", b.height, "image height, a multiple of 8 (default: the model's native size)");
  cmd->add_option("--steps", b.steps, "denoising steps per run")->capture_default_str();
  cmd->add_option("--precision", o->precisions,
                  "compute precision of convolutions, linear layers and attention: fp32, bf16, or int8 (the UNet's "
                  "layers quantised at load, dynamic scales); several (fp32,bf16,int8) benchmark each in turn and "
                  "compare them")
      ->delimiter(',')
      ->check(CLI::IsMember({"fp32", "bf16", "int8"}))
      ->capture_default_str();
  cmd->add_option("--compare-model", o->compare_models,
                  "another model folder to benchmark after --model, at the first --precision, and compare (e.g. an "
                  "int8 folder from sdrt quantize; repeatable)");
  cmd->add_option("--residency", b.residency,
                  "resident: models load once and stay (stage times exclude loading); per-stage: each run loads "
                  "each model for its stage and frees it after, as sdrt generate does (lowest peak memory)")
      ->check(CLI::IsMember({"resident", "per-stage"}))
      ->capture_default_str();
  cmd->add_option("--batch", b.batch, "images per prompt (one batched run)")->capture_default_str();
  cmd->add_option("--guidance,--cfg", b.guidance, "guidance scale; > 1 makes each step one UNet call on 2 x batch")
      ->capture_default_str();
  cmd->add_option("--vae-tile", b.vae_tile_size, "decode in tiles of this many pixels (0 = whole)")
      ->capture_default_str();
  cmd->add_option("--runs", b.runs, "measured runs")->capture_default_str();
  cmd->add_option("--warmup", b.warmup, "unmeasured runs first")->capture_default_str();
  cmd->add_option("--threads,-t", b.threads, "threads (default: physical cores)");
  cmd->add_flag("!--no-peak", b.measure_peak,
               "skip the matmul peak microbenchmark (no fraction-of-peak column), e.g. in a grid of runs");
  cmd->add_option("--json", o->json_file, "also write every number, with machine info, to this JSON file");
  cmd->add_flag("--quiet,-q", o->quiet, "no progress on stderr");
  return [o] { run_bench(*o); };
}

}  // namespace sdrt::app
