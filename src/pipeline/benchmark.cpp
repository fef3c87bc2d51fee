#include "pipeline/benchmark.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>

#include "core/cpu_isa.h"
#include "core/error.h"
#include "core/memory_stats.h"
#include "core/parallel.h"
#include "pipeline/pipeline.h"

namespace sdrt {

namespace {

// printf into a std::string, for report lines.
std::string fmt(const char* format, auto... args) {
  char buf[256];
  std::snprintf(buf, sizeof buf, format, args...);
  return buf;
}

void report(const BenchmarkOptions& o, const std::string& line) {
  if (o.progress) o.progress(line);
}

void check_options(const BenchmarkOptions& o) {
  kernels::precision_from_name(o.precision);  // throws on an unknown name
  residency_from_name(o.residency);          // likewise
  SDRT_CHECK(o.runs >= 1, "--runs must be at least 1, got ", o.runs);
  SDRT_CHECK(o.warmup >= 0, "--warmup must be 0 or more, got ", o.warmup);
  SDRT_CHECK(o.batch >= 1, "--batch must be at least 1, got ", o.batch);
  SDRT_CHECK(o.threads >= 0, "--threads must be 0 (physical cores) or more, got ", o.threads);
  SDRT_CHECK(o.peak_repeats >= 1, "peak microbenchmark repeats must be at least 1, got ", o.peak_repeats);
}

GenerateParams generation_params(const BenchmarkOptions& o, const StableDiffusionPipeline& pipe) {
  GenerateParams p;
  p.prompt = o.prompt;
  p.steps = o.steps;
  p.guidance = o.guidance;
  p.scheduler = o.scheduler.empty() ? pipe.default_scheduler() : o.scheduler;
  p.seed = o.seed;
  p.width = o.width ? o.width : pipe.default_width();
  p.height = o.height ? o.height : pipe.default_height();
  p.images = o.batch;
  p.vae_tile_size = o.vae_tile_size;
  return p;
}

bool guided(const GenerateParams& p) { return p.guidance > 1.0f; }

struct RunMacs {
  MacCounts text_encoder, unet_call, vae_decode;
  double unet_call_int8_seconds = 0;  // median over the run's UNet calls
};

// The text encoder's work in one run, counted on its own: generate() encodes the prompt, and the
// negative prompt when guided, each as one 77-token sequence whatever the text.
MacCounts count_text_encoder(const StableDiffusionPipeline& pipe, const GenerateParams& p) {
  kernels::MacCounter counter;
  kernels::OpCounterScope scope(counter);
  pipe.encode_prompt(p.prompt, p.images, p.clip_skip);
  if (guided(p)) pipe.encode_prompt(p.negative_prompt, p.images, p.clip_skip);
  return MacCounts::of(counter);
}

// One generation with every kernel call counted. The step callback snapshots the counter, so
// the stages separate by difference: before the first snapshot are the text encoder (counted
// again on its own and subtracted) and the first UNet call; after the last one, the VAE decode.
StageTimes counted_run(const StableDiffusionPipeline& pipe, const GenerateParams& p, const StepCallback& on_step,
                       RunMacs& macs) {
  kernels::MacCounter counter;
  std::vector<MacCounts> after_step;
  std::vector<double> int8_seconds_after_step;
  GenerateResult r;
  {
    kernels::OpCounterScope scope(counter);
    r = pipe.generate(p, [&](const StepInfo& s) {
      after_step.push_back(MacCounts::of(counter));
      int8_seconds_after_step.push_back(counter.seconds(kernels::OpKind::Int8));
      on_step(s);
    });
  }
  // Step 1 holds the text encoder's time too, which has no int8 layers: every step's difference counts.
  std::vector<double> int8_per_call;
  for (size_t i = 0; i < int8_seconds_after_step.size(); ++i)
    int8_per_call.push_back(int8_seconds_after_step[i] - (i ? int8_seconds_after_step[i - 1] : 0.0));
  macs.unet_call_int8_seconds = SampleStats::of(int8_per_call).median;
  SDRT_CHECK(!after_step.empty(), "benchmark: the pipeline ran no UNet step");
  macs.text_encoder = count_text_encoder(pipe, p);
  macs.unet_call = after_step.front() - macs.text_encoder;
  for (size_t i = 1; i < after_step.size(); ++i)
    SDRT_CHECK(after_step[i] - after_step[i - 1] == macs.unet_call, "benchmark: UNet step ", i + 1, " counted ",
               (after_step[i] - after_step[i - 1]).total(), " MACs but step 1 counted ", macs.unet_call.total(),
               "; the per-stage MAC split is unreliable");
  macs.vae_decode = MacCounts::of(counter) - after_step.back();
  return r.times;
}

StageTimes timed_run(const StableDiffusionPipeline& pipe, const GenerateParams& p, const StepCallback& on_step) {
  return pipe.generate(p, on_step).times;
}

ComponentRate component_rate(const MacCounts& macs, double median_seconds, double peak_gflops,
                             double int8_seconds = 0, double int8_peak_gops = 0) {
  ComponentRate c;
  c.macs = macs;
  c.median_seconds = median_seconds;
  c.gflops = median_seconds > 0 ? 2.0 * static_cast<double>(macs.total()) / median_seconds / 1e9 : 0;
  c.peak_fraction = peak_gflops > 0 && macs.int8 == 0 ? c.gflops / peak_gflops : 0;
  c.int8_seconds = int8_seconds;
  c.int8_gops = int8_seconds > 0 ? 2.0 * static_cast<double>(macs.int8) / int8_seconds / 1e9 : 0;
  c.int8_peak_fraction = int8_peak_gops > 0 ? c.int8_gops / int8_peak_gops : 0;
  return c;
}

std::string cpuinfo_value(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) != 0) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    return value;
  }
  return "";
}

}  // namespace

SampleStats SampleStats::of(std::vector<double> samples) {
  SampleStats s;
  s.samples = samples;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  size_t n = samples.size();
  s.median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

MacCounts MacCounts::of(const kernels::MacCounter& counter) {
  using kernels::OpKind;
  return {counter.macs(OpKind::Conv), counter.macs(OpKind::Linear), counter.macs(OpKind::Attention),
          counter.macs(OpKind::Int8)};
}

MacCounts MacCounts::operator-(const MacCounts& o) const {
  return {conv - o.conv, linear - o.linear, attention - o.attention, int8 - o.int8};
}

MacCounts MacCounts::divided_by(int64_t n) const {
  if (n <= 0) return {};
  return {conv / n, linear / n, attention / n, int8 / n};
}

MachineInfo describe_machine() {
  MachineInfo m;
  m.cpu_model = cpu_model_name();
  m.physical_cores = physical_cores();
  m.logical_cpus = static_cast<int>(std::thread::hardware_concurrency());
  m.threads = num_threads();
  std::istringstream flags(cpuinfo_value("flags"));
  std::set<std::string> present;
  for (std::string f; flags >> f;) present.insert(f);
  auto has = [&](const char* f) { return present.count(f) > 0; };
  m.avx2 = has("avx2");
  m.fma = has("fma");
  m.avx512f = has("avx512f");
  m.avx512_vnni = has("avx512_vnni");
  m.avx512_bf16 = has("avx512_bf16");
  m.amx_bf16 = has("amx_bf16");
  m.amx_int8 = has("amx_int8");
  m.kernel_isa = isa_summary();
  m.onednn_isa = kernels::onednn_isa_name();
  return m;
}

BenchmarkResult run_benchmark(const BenchmarkOptions& options) {
  check_options(options);
  set_num_threads(options.threads);
  BenchmarkResult result;
  result.options = options;
  result.machine = describe_machine();

  report(options, "loading " + options.model_dir);
  const kernels::Precision precision = kernels::precision_from_name(options.precision);
  auto pipe = StableDiffusionPipeline::load(options.model_dir, precision, residency_from_name(options.residency));
  result.load_s = pipe.load_seconds();
  result.rss_after_load_bytes = current_rss_bytes();
  result.load_memory = pipe.load_memory();

  GenerateParams params = generation_params(options, pipe);
  validate_params(params, pipe.vae_config().downscale());
  if (pipe.residency() == Residency::resident) {
    report(options, "compiling");
    result.compile_s = pipe.compile({params.images, params.width, params.height, guided(params)});
  }
  result.options.width = params.width;
  result.options.height = params.height;
  result.options.scheduler = params.scheduler;
  result.unet_batch = params.images * (guided(params) ? 2 : 1);
  params.measure_stage_memory = true;
  int64_t peak_rss = peak_rss_bytes();  // load's and compile's; the runs reset the counter per stage

  std::vector<double> run_load, text_encoder, unet_steps, vae_decode, image;
  RunMacs macs;
  const int total_runs = options.warmup + options.runs;
  for (int run = 0; run < total_runs; ++run) {
    bool warm_up = run < options.warmup;
    std::string label = warm_up ? str("warm-up ", run + 1, "/", options.warmup)
                                : str("run ", run - options.warmup + 1, "/", options.runs);
    auto on_step = [&](const StepInfo& s) {
      char line[128];
      std::snprintf(line, sizeof line, "%s: step %d/%d %.2f s", label.c_str(), s.step, s.total, s.seconds);
      report(options, line);
    };
    StageTimes t = run == 0 ? counted_run(pipe, params, on_step, macs) : timed_run(pipe, params, on_step);
    report(options, fmt("%s: %.2f s", label.c_str(), t.total_s));
    if (run == 0) result.unet_calls_per_run = static_cast<int>(t.unet_step_s.size());
    peak_rss = std::max({peak_rss, t.text_encoder_peak_rss, t.unet_peak_rss, t.vae_decode_peak_rss});
    if (warm_up) continue;
    result.text_encoder_peak_rss_bytes = std::max(result.text_encoder_peak_rss_bytes, t.text_encoder_peak_rss);
    result.unet_peak_rss_bytes = std::max(result.unet_peak_rss_bytes, t.unet_peak_rss);
    result.vae_decode_peak_rss_bytes = std::max(result.vae_decode_peak_rss_bytes, t.vae_decode_peak_rss);
    for (auto [sum, run] : {std::pair{&result.unet_arena, &t.unet_arena}, std::pair{&result.vae_arena, &t.vae_arena}}) {
      sum->block_bytes = std::max(sum->block_bytes, run->block_bytes);
      sum->served += run->served;
      sum->fallback += run->fallback;
    }
    run_load.push_back(t.load_s);
    text_encoder.push_back(t.text_encoder_s);
    unet_steps.insert(unet_steps.end(), t.unet_step_s.begin(), t.unet_step_s.end());
    vae_decode.push_back(t.vae_decode_s);
    image.push_back(t.total_s);
  }
  // Without per-stage measurements the counter was never reset and holds the whole peak.
  result.peak_rss_bytes = std::max(peak_rss, peak_rss_bytes());

  result.run_load_s = SampleStats::of(run_load);
  result.text_encoder_s = SampleStats::of(text_encoder);
  result.unet_step_s = SampleStats::of(unet_steps);
  result.vae_decode_s = SampleStats::of(vae_decode);
  result.image_s = SampleStats::of(image);
  result.images_per_minute = result.image_s.median > 0 ? options.batch * 60.0 / result.image_s.median : 0;

  if (options.measure_peak) {
    report(options, "measuring the matmul peak");
    result.peak = kernels::measure_peak_flops(options.peak_repeats);
  }
  // The fraction is of the peak of the precision the products ran in.
  kernels::MatmulType peak_type =
      precision == kernels::Precision::bf16 ? kernels::MatmulType::BF16 : kernels::MatmulType::F32;
  double peak_gflops = result.peak ? result.peak->best_gflops(peak_type) : 0;
  double int8_peak = result.peak ? result.peak->best_gflops(kernels::MatmulType::Int8) : 0;
  result.text_encoder_macs = macs.text_encoder;
  result.unet = component_rate(macs.unet_call, result.unet_step_s.median, peak_gflops, macs.unet_call_int8_seconds,
                               int8_peak);
  result.vae_decoder = component_rate(macs.vae_decode, result.vae_decode_s.median, peak_gflops);
  return result;
}

// ---- Reports.

namespace {

std::string seconds_row(const char* name, const SampleStats& s) {
  return fmt("  %-28s %10.4f %10.4f %10.4f   (%zu sample%s)\n", name, s.median, s.min, s.max, s.samples.size(),
             s.samples.size() == 1 ? "" : "s");
}

std::string yes_no(bool b) { return b ? "yes" : "no"; }

std::string work_row(const char* name, const MacCounts& m, const ComponentRate* rate) {
  std::string row = fmt("  %-30s %10.2f %9.2f %9.2f %9.2f %9.2f", name, m.total() / 1e9, m.conv / 1e9, m.linear / 1e9,
                        m.attention / 1e9, m.int8 / 1e9);
  if (rate) {
    row += fmt(" %10.1f", rate->gflops);
    row += rate->peak_fraction > 0 ? fmt(" %9.1f%%", 100 * rate->peak_fraction) : fmt(" %10s", "n/a");
  }
  return row + "\n";
}

std::string peak_rows(const kernels::PeakFlops& peak) {
  std::string out =
      fmt("matmul peak (oneDNN, %d thread%s, best of %d):\n", peak.threads, peak.threads == 1 ? "" : "s", peak.repeats);
  for (const auto& m : peak.measurements) {
    std::string shape = fmt("%lldx%lldx%lld", static_cast<long long>(m.shape.m), static_cast<long long>(m.shape.n),
                            static_cast<long long>(m.shape.k));
    const char* unit = m.type == kernels::MatmulType::Int8 ? "GOP/s" : "GFLOP/s";
    if (m.supported)
      out += fmt("  %-5s %-16s %9.1f %-8s (%s)\n", kernels::matmul_type_name(m.type), shape.c_str(), m.gflops, unit,
                 m.implementation.c_str());
    else
      out += fmt("  %-5s %-16s unsupported: %s\n", kernels::matmul_type_name(m.type), shape.c_str(), m.error.c_str());
  }
  return out;
}

nlohmann::ordered_json stats_json(const SampleStats& s) {
  return {{"median", s.median}, {"min", s.min}, {"max", s.max}, {"samples", s.samples}};
}

nlohmann::ordered_json macs_json(const MacCounts& m) {
  return {{"conv", m.conv}, {"linear", m.linear}, {"attention", m.attention}, {"int8", m.int8}, {"total", m.total()}};
}

nlohmann::ordered_json rate_json(const ComponentRate& r) {
  return {{"macs", macs_json(r.macs)},
          {"gflop", r.macs.gflop()},
          {"median_seconds", r.median_seconds},
          {"gflops_per_second", r.gflops},
          {"peak_fraction", r.peak_fraction},
          {"int8_seconds", r.int8_seconds},
          {"int8_gops_per_second", r.int8_gops},
          {"int8_peak_fraction", r.int8_peak_fraction}};
}

nlohmann::ordered_json peak_json(const kernels::PeakFlops& peak) {
  nlohmann::ordered_json j = {{"threads", peak.threads},
                              {"repeats", peak.repeats},
                              {"f32_gflops", peak.best_gflops(kernels::MatmulType::F32)},
                              {"bf16_gflops", peak.best_gflops(kernels::MatmulType::BF16)},
                              {"int8_gops", peak.best_gflops(kernels::MatmulType::Int8)}};
  auto& list = j["measurements"] = nlohmann::ordered_json::array();
  for (const auto& m : peak.measurements)
    list.push_back({{"type", kernels::matmul_type_name(m.type)},
                    {"m", m.shape.m},
                    {"n", m.shape.n},
                    {"k", m.shape.k},
                    {"supported", m.supported},
                    {"implementation", m.implementation},
                    {"error", m.error},
                    {"best_seconds", m.best_seconds},
                    {"gflops", m.gflops}});
  return j;
}

}  // namespace

std::string format_benchmark_table(const BenchmarkResult& r) {
  const auto& o = r.options;
  const auto& m = r.machine;
  std::string out;
  out += fmt("sdrt bench: %s\n", o.model_dir.c_str());
  out += fmt("  %dx%d, %d steps (%s), batch %d, guidance %g -> %d UNet rows per step, %s, %s models\n", o.width,
             o.height, o.steps, o.scheduler.c_str(), o.batch, o.guidance, r.unet_batch, o.precision.c_str(),
             o.residency.c_str());
  if (o.vae_tile_size) out += fmt("  VAE decoded in tiles of %d pixels\n", o.vae_tile_size);
  out += fmt("  %d measured run%s after %d warm-up run%s; %d UNet call%s per run\n", o.runs, o.runs == 1 ? "" : "s",
             o.warmup, o.warmup == 1 ? "" : "s", r.unet_calls_per_run, r.unet_calls_per_run == 1 ? "" : "s");
  out +=
      fmt("machine: %s, %d physical cores, %d logical CPUs, %d threads; avx2 %s, avx512f %s, avx512_vnni %s, "
          "avx512_bf16 %s, amx %s\n",
          m.cpu_model.c_str(), m.physical_cores, m.logical_cpus, m.threads, yes_no(m.avx2 && m.fma).c_str(),
          yes_no(m.avx512f).c_str(), yes_no(m.avx512_vnni).c_str(), yes_no(m.avx512_bf16).c_str(),
          yes_no(m.amx_bf16 || m.amx_int8).c_str());
  out += fmt("kernels: sdrt %s; oneDNN %s\n\n", m.kernel_isa.c_str(), m.onednn_isa.c_str());

  out += fmt("  %-28s %10s %10s %10s\n", "stage (seconds)", "median", "min", "max");
  if (residency_from_name(o.residency) == Residency::per_stage) {
    out += seconds_row("model loads (per run)", r.run_load_s);
  } else {
    out += fmt("  %-28s %10.4f   (once per process)\n", "model load", r.load_s);
  }
  out += r.compile_s ? fmt("  %-28s %10.4f\n", "compile", *r.compile_s) : fmt("  %-28s %10s\n", "compile", "n/a");
  out += seconds_row("text encoder", r.text_encoder_s);
  out += seconds_row(r.unet_batch > 1 ? "UNet step (one batched call)" : "UNet step", r.unet_step_s);
  out += seconds_row("VAE decode", r.vae_decode_s);
  out += seconds_row(o.batch > 1 ? "whole batch (excl. load)" : "whole image (excl. load)", r.image_s);
  out += fmt("  %-28s %10.2f\n\n", "images per minute", r.images_per_minute);

  out += fmt("memory: RSS after load %.0f MB (text encoder %.0f, UNet %.0f, VAE %.0f), peak RSS %.0f MB (%.0f MB above "
             "the loaded model)\n",
             r.rss_after_load_bytes / 1e6, r.load_memory.text_encoder / 1e6, r.load_memory.unet / 1e6,
             r.load_memory.vae / 1e6, r.peak_rss_bytes / 1e6, (r.peak_rss_bytes - r.rss_after_load_bytes) / 1e6);
  if (r.unet_peak_rss_bytes > 0)
    out += fmt("  peak RSS per stage: text encoder %.0f MB, UNet loop %.0f MB, VAE decode %.0f MB\n",
               r.text_encoder_peak_rss_bytes / 1e6, r.unet_peak_rss_bytes / 1e6, r.vae_decode_peak_rss_bytes / 1e6);
  for (auto [name, arena] : {std::pair{"UNet", &r.unet_arena}, std::pair{"VAE decoder", &r.vae_arena}}) {
    if (arena->block_bytes == 0) continue;
    out += fmt("  %s activations: %.0f MB planned arena; %zu buffers served from it, %zu fell back to the cache\n",
               name, arena->block_bytes / 1e6, arena->served, arena->fallback);
  }
  out += "\n";

  out += fmt("  %-30s %10s %9s %9s %9s %9s %10s %10s\n", "work (GMAC; 1 MAC = 2 FLOP)", "total", "conv", "linear",
             "attention", "int8", "GFLOP/s", fmt("%s peak", o.precision.c_str()).c_str());
  out +=
      work_row(fmt("UNet call (%d row%s)", r.unet_batch, r.unet_batch == 1 ? "" : "s").c_str(), r.unet.macs, &r.unet);
  out += work_row("UNet, per image per step", r.unet_macs_per_image(), nullptr);
  out += work_row(fmt("VAE decoder (%d image%s)", o.batch, o.batch == 1 ? "" : "s").c_str(), r.vae_decoder.macs,
                  &r.vae_decoder);
  out += work_row("text encoder (per run)", r.text_encoder_macs, nullptr);
  if (r.unet.macs.int8 > 0)
    out += fmt("  UNet int8 layers: %.3f s per call inside the kernels (input quantisation included), %.1f GOP/s, "
               "%s of the int8 peak\n",
               r.unet.int8_seconds, r.unet.int8_gops,
               r.unet.int8_peak_fraction > 0 ? fmt("%.1f%%", 100 * r.unet.int8_peak_fraction).c_str() : "n/a");
  out += "\n";
  out += r.peak ? peak_rows(*r.peak) : "matmul peak: not measured\n";
  return out;
}

std::string format_benchmark_comparison(const std::vector<BenchmarkResult>& results) {
  if (results.empty()) return "";
  std::string out = fmt("comparison (one process, %s):\n", results.front().machine.cpu_model.c_str());
  out += fmt("  %-34s %10s %8s %10s %9s %9s %11s %9s\n", "variant", "UNet step", "speed-up", "image s", "UNet MB",
             "peak MB", "int8 GOP/s", "int8 peak");
  const double base = results.front().unet_step_s.median;
  for (const auto& r : results) {
    // An int8 folder runs its stored int8 layers whatever the precision (which then is the float parts').
    const bool int8_folder =
        std::filesystem::exists(std::filesystem::path(r.options.model_dir) / "unet" / "quantization_config.json");
    std::string name = fmt("%s %s%s", r.options.precision.c_str(),
                           std::filesystem::path(r.options.model_dir).filename().string().c_str(),
                           int8_folder ? " (int8 folder)" : "");
    out += fmt("  %-34s %10.4f %7.2fx %10.3f %9.0f %9.0f", name.c_str(), r.unet_step_s.median,
               r.unet_step_s.median > 0 ? base / r.unet_step_s.median : 0.0, r.image_s.median,
               r.load_memory.unet / 1e6, r.peak_rss_bytes / 1e6);
    if (r.unet.macs.int8 == 0)
      out += fmt(" %11s %9s\n", "-", "-");
    else if (r.unet.int8_peak_fraction > 0)
      out += fmt(" %11.1f %8.1f%%\n", r.unet.int8_gops, 100 * r.unet.int8_peak_fraction);
    else  // the peak was not measured (--no-peak)
      out += fmt(" %11.1f %9s\n", r.unet.int8_gops, "n/a");
  }
  return out;
}

std::string format_benchmark_json(const BenchmarkResult& r) {
  const auto& o = r.options;
  const auto& m = r.machine;
  nlohmann::ordered_json j;
  j["config"] = {{"model", o.model_dir},
                 {"width", o.width},
                 {"height", o.height},
                 {"steps", o.steps},
                 {"scheduler", o.scheduler},
                 {"guidance", o.guidance},
                 {"batch", o.batch},
                 {"unet_batch", r.unet_batch},
                 {"unet_calls_per_run", r.unet_calls_per_run},
                 {"precision", o.precision},
                 {"residency", o.residency},
                 {"vae_tile_size", o.vae_tile_size},
                 {"runs", o.runs},
                 {"warmup", o.warmup},
                 {"prompt", o.prompt},
                 {"seed", o.seed}};
  j["machine"] = {{"cpu_model", m.cpu_model},
                  {"kernel_isa", m.kernel_isa},
                  {"onednn_isa", m.onednn_isa},
                  {"physical_cores", m.physical_cores},
                  {"logical_cpus", m.logical_cpus},
                  {"threads", m.threads},
                  {"isa",
                   {{"avx2", m.avx2},
                    {"fma", m.fma},
                    {"avx512f", m.avx512f},
                    {"avx512_vnni", m.avx512_vnni},
                    {"avx512_bf16", m.avx512_bf16},
                    {"amx_bf16", m.amx_bf16},
                    {"amx_int8", m.amx_int8}}}};
  j["seconds"] = {{"load", r.load_s},
                  {"run_load", stats_json(r.run_load_s)},
                  {"compile", r.compile_s ? nlohmann::ordered_json(*r.compile_s) : nlohmann::ordered_json(nullptr)},
                  {"text_encoder", stats_json(r.text_encoder_s)},
                  {"unet_step", stats_json(r.unet_step_s)},
                  {"vae_decode", stats_json(r.vae_decode_s)},
                  {"image", stats_json(r.image_s)}};
  j["images_per_minute"] = r.images_per_minute;
  auto& memory = j["memory_bytes"];
  memory["rss_after_load"] = r.rss_after_load_bytes;
  memory["peak_rss"] = r.peak_rss_bytes;
  memory["load_growth"] = {
      {"text_encoder", r.load_memory.text_encoder}, {"unet", r.load_memory.unet}, {"vae", r.load_memory.vae}};
  memory["stage_peak_rss"] = {{"text_encoder", r.text_encoder_peak_rss_bytes},
                              {"unet", r.unet_peak_rss_bytes},
                              {"vae_decode", r.vae_decode_peak_rss_bytes}};
  auto arena_json = [](const StageTimes::ArenaUse& a) {
    return nlohmann::ordered_json{{"block_bytes", a.block_bytes}, {"served", a.served}, {"fallback", a.fallback}};
  };
  j["activation_arenas"] = {{"unet", arena_json(r.unet_arena)}, {"vae_decoder", arena_json(r.vae_arena)}};
  j["work"] = {{"unet_call", rate_json(r.unet)},
               {"unet_per_image_per_step_macs", macs_json(r.unet_macs_per_image())},
               {"vae_decoder", rate_json(r.vae_decoder)},
               {"vae_decoder_per_image_macs", macs_json(r.vae_decoder_macs_per_image())},
               {"text_encoder_macs", macs_json(r.text_encoder_macs)}};
  j["peak"] = r.peak ? peak_json(*r.peak) : nlohmann::ordered_json(nullptr);
  return j.dump(2) + "\n";
}

}  // namespace sdrt
