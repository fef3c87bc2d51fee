// `sdrt bench`: times the pipeline stage by stage over several runs, counts the arithmetic each
// model evaluation performs, and relates the two to the machine's measured matmul peak.
//
// The model is loaded once per process; every run then encodes the prompts, runs the
// denoising steps (one batched UNet call per guided step) and decodes the latents, exactly as
// `sdrt generate` does. MACs are counted during the first run (warm-up or measured): counting
// costs one thread-local load per kernel call, nothing a timing could see.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kernels/op_counter.h"
#include "kernels/peak_flops.h"
#include "pipeline/pipeline.h"

namespace sdrt {

struct BenchmarkOptions {
  std::string model_dir;
  int width = 0, height = 0;  // 0: the model's native size
  int steps = 4;
  std::string precision = "fp32";  // fp32 | bf16 | int8 (kernels::Precision)
  std::string residency = "resident";  // resident | per-stage (sdrt::Residency)
  int batch = 1;                   // images per prompt
  int runs = 3;
  int warmup = 1;
  int threads = 0;        // 0: physical cores
  float guidance = 7.5f;  // > 1: each step is one UNet call on 2 x batch rows
  int vae_tile_size = 0;  // GenerateParams::vae_tile_size
  std::string prompt = "a photograph of an astronaut riding a horse on the moon";
  std::string scheduler;  // empty: the model's own
  uint64_t seed = 0;
  bool measure_peak = true;
  int peak_repeats = 10;  // best of: a shared machine needs several tries for one clean one
  // Progress lines (load, each run's steps) for a human watching a slow benchmark; may be empty.
  std::function<void(const std::string&)> progress;
};

// Median, minimum and maximum of a set of samples (all zero when there are none).
struct SampleStats {
  std::vector<double> samples;
  double median = 0, min = 0, max = 0;
  static SampleStats of(std::vector<double> samples);
};

// Multiply-accumulates per op kind, as counted by kernels::MacCounter.
struct MacCounts {
  int64_t conv = 0, linear = 0, attention = 0;
  int64_t int8 = 0;  // int8 convolutions and linear layers (not in conv or linear)
  int64_t total() const { return conv + linear + attention + int8; }
  double gflop() const { return 2.0 * static_cast<double>(total()) / 1e9; }  // 1 MAC = 2 FLOP
  static MacCounts of(const kernels::MacCounter& counter);
  MacCounts operator-(const MacCounts& other) const;
  MacCounts divided_by(int64_t n) const;
  bool operator==(const MacCounts&) const = default;
};

// Achieved rate of one model component: its counted work over the median time of its stage.
struct ComponentRate {
  MacCounts macs;  // per stage invocation: one UNet call, one whole VAE-decode stage
  double median_seconds = 0;
  double gflops = 0;  // 2 * macs.total() / median_seconds / 1e9 (int8 operations included)
  // gflops / the matmul peak of the run's precision; 0 when the peak was not measured, and when
  // the component mixes int8 and float work (then the int8 part has its own figures below).
  double peak_fraction = 0;
  // The int8 layers alone: their time inside the kernels (quantising the input included) per
  // invocation, in the counted run, the operations per second over it and the fraction of the
  // machine's int8 peak.
  double int8_seconds = 0, int8_gops = 0, int8_peak_fraction = 0;
};

struct MachineInfo {
  std::string cpu_model;  // the CPUID brand string (core/cpu_isa.h), as /proc/cpuinfo's "model name"
  int physical_cores = 0;
  int logical_cpus = 0;
  int threads = 0;  // OpenMP threads the benchmark ran with
  bool avx2 = false, fma = false, avx512f = false, avx512_vnni = false, avx512_bf16 = false;
  bool amx_bf16 = false, amx_int8 = false;
  std::string kernel_isa;  // the ISA tier sdrt's own kernels run (core/cpu_isa.h isa_summary())
  std::string onednn_isa;  // the ISA oneDNN's kernels run, in oneDNN's words
};

struct BenchmarkResult {
  BenchmarkOptions options;  // with width, height and scheduler resolved to what ran
  MachineInfo machine;
  int unet_batch = 0;          // rows per UNet call: 2 x batch when guided
  int unet_calls_per_run = 0;  // steps, or more for schedulers that warm up (PNDM: steps + 1)

  double load_s = 0;                // the one load of this process (per-stage: configs and tokenizer)
  SampleStats run_load_s;           // per run: models loaded inside it (per-stage residency; else zeros)
  std::optional<double> compile_s;  // StableDiffusionPipeline::compile for the run's shape; unset per-stage
  SampleStats text_encoder_s;       // per run, all prompts
  SampleStats unet_step_s;          // per UNet call of every measured run, with its scheduler step
  SampleStats vae_decode_s;         // per run, every image
  SampleStats image_s;              // per run: prompts + all steps + decode (load excluded)
  double images_per_minute = 0;     // batch * 60 / median image_s

  int64_t rss_after_load_bytes = 0;  // weights (and whatever load touched)
  int64_t peak_rss_bytes = 0;        // over load and all runs, before the peak microbenchmark
  LoadMemory load_memory;            // RSS growth per component during load
  // Peak RSS within each stage, the highest over the measured runs; 0 where the kernel does not
  // let a process reset its peak counter (then only peak_rss_bytes is known).
  int64_t text_encoder_peak_rss_bytes = 0, unet_peak_rss_bytes = 0, vae_decode_peak_rss_bytes = 0;
  // The activation arenas (StageTimes::unet_arena, vae_arena): the largest block, and the buffers
  // served and passed to the buffer cache, summed over the measured runs.
  StageTimes::ArenaUse unet_arena, vae_arena;

  MacCounts text_encoder_macs;  // all prompts of one run
  ComponentRate unet;           // one batched UNet call
  ComponentRate vae_decoder;    // the decode stage of one run (batch images)
  MacCounts unet_macs_per_image() const { return unet.macs.divided_by(unet_batch); }  // one row of one call
  MacCounts vae_decoder_macs_per_image() const { return vae_decoder.macs.divided_by(options.batch); }

  std::optional<kernels::PeakFlops> peak;
};

MachineInfo describe_machine();

// Loads the model, runs warmup + runs generations and the peak microbenchmark. Throws
// sdrt::Error for bad options.
BenchmarkResult run_benchmark(const BenchmarkOptions& options);

// Several benchmarks side by side (the same shape; e.g. fp32, bf16, int8 and an int8 model folder):
// UNet step, speed-up against the first, whole image, memory and the int8 layers' rate.
std::string format_benchmark_comparison(const std::vector<BenchmarkResult>& results);

// A human-readable report (stdout of `sdrt bench`).
std::string format_benchmark_table(const BenchmarkResult& result);
// Every number of the result, plus the machine description, as a JSON document.
std::string format_benchmark_json(const BenchmarkResult& result);

}  // namespace sdrt
