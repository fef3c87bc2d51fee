#include "quantization/quantize_model.h"

#include <chrono>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include "core/error.h"
#include "io/safetensors.h"
#include "kernels/int8.h"
#include "models/component_files.h"
#include "models/layers.h"
#include "models/quantization_config.h"
#include "models/weights.h"
#include "pipeline/pipeline.h"
#include "quantization/activation_range.h"

namespace sdrt::quantization {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64; }

// The layer whose weight tensor `name` is, if it is a convolution's or linear layer's: a
// "<layer>.weight" of rank 4 or 2 in a float dtype (norm weights are rank 1; the UNet has no
// embedding tables). Empty for every other tensor.
std::string conv_or_linear_layer(const std::string& name, const TensorInfo& info) {
  const std::string suffix = ".weight";
  if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) return "";
  if ((info.shape.size() != 4 && info.shape.size() != 2) || !is_float(info.dtype)) return "";
  return name.substr(0, name.size() - suffix.size());
}

// Records the input range of the layers that will be quantised, on every call.
class Calibrator : public ActivationObserver {
 public:
  explicit Calibrator(std::set<std::string> layers) : layers_(std::move(layers)) {}
  void observe(const std::string& layer, const Tensor& input) override {
    if (!layers_.count(layer)) return;
    std::lock_guard lock(mutex_);
    ranges_[layer].add(input);
  }
  const std::map<std::string, ActivationRange>& ranges() const { return ranges_; }

 private:
  std::set<std::string> layers_;
  std::mutex mutex_;
  std::map<std::string, ActivationRange> ranges_;
};

void check_options(const QuantizeOptions& o) {
  SDRT_CHECK(o.method == "ptq" || o.method == "dynamic", "quantize: unknown method '", o.method,
             "' (expected ptq or dynamic)");
  SDRT_CHECK(fs::is_directory(o.model_dir), "quantize: ", o.model_dir, ": not a model folder");
  SDRT_CHECK(!o.out_dir.empty(), "quantize: no output folder given");
  if (fs::exists(o.out_dir)) {
    SDRT_CHECK(fs::is_directory(o.out_dir) && fs::is_empty(o.out_dir), "quantize: ", o.out_dir,
               " already exists and is not an empty folder; refusing to overwrite it");
    SDRT_CHECK(!fs::equivalent(o.out_dir, o.model_dir), "quantize: the output folder is the model folder");
  }
  SDRT_CHECK(o.steps > 0 && o.steps <= 1000, "quantize: --calibration-steps ", o.steps, " (expected 1..1000)");
  SDRT_CHECK(o.samples >= 0, "quantize: --calibration-samples ", o.samples, " (expected >= 0)");
}

// Everything in the model folder but the UNet's weights, unchanged.
void copy_except_unet_weights(const fs::path& from, const fs::path& to) {
  fs::create_directories(to);
  for (const auto& entry : fs::directory_iterator(from)) {
    const fs::path target = to / entry.path().filename();
    if (entry.path().filename() != "unet") {
      fs::copy(entry.path(), target, fs::copy_options::recursive);
      continue;
    }
    fs::create_directories(target);
    for (const auto& f : fs::directory_iterator(entry.path())) {
      const std::string ext = f.path().extension().string();
      const bool weights = ext == ".safetensors" || ext == ".bin" || ext == ".ckpt" || ext == ".pt";
      if (!weights && f.path().filename() != QuantizationConfig::kFileName)
        fs::copy(f.path(), target / f.path().filename(), fs::copy_options::recursive);
    }
  }
}

std::map<std::string, ActivationRange> calibrate(const QuantizeOptions& o, const std::set<std::string>& layers,
                                                 QuantizeReport& report) {
  std::vector<std::string> prompts = o.prompts.empty() ? default_calibration_prompts() : o.prompts;
  if (o.samples > 0 && static_cast<size_t>(o.samples) < prompts.size()) prompts.resize(o.samples);
  auto pipeline = StableDiffusionPipeline::load(o.model_dir, kernels::Precision::f32, Residency::resident);
  Calibrator calibrator(layers);
  for (size_t i = 0; i < prompts.size(); ++i) {
    GenerateParams p;
    p.prompt = prompts[i];
    p.steps = o.steps;
    p.guidance = o.guidance;
    p.scheduler = o.scheduler;
    p.seed = o.seed + i;
    p.width = o.width;
    p.height = o.height;
    auto t0 = Clock::now();
    GenerateResult r;
    {
      ObserveActivations scope(calibrator);
      r = pipeline.generate(p);
    }
    report.calibration_unet_calls += static_cast<int64_t>(r.times.unet_step_s.size());
    ++report.calibration_images;
    if (o.log) {
      std::ostringstream line;
      line << "calibration " << i + 1 << "/" << prompts.size() << ": \"" << prompts[i] << "\", " << o.steps
           << " steps, " << seconds_since(t0) << " s";
      o.log(line.str());
    }
  }
  for (const auto& [layer, range] : calibrator.ranges())
    SDRT_CHECK(range.non_finite() == 0, "quantize: calibration saw ", range.non_finite(),
               " non-finite input values in UNet layer '", layer, "'; the float model itself overflows");
  return calibrator.ranges();
}

}  // namespace

QuantizeReport quantize_model(const QuantizeOptions& o) {
  auto t0 = Clock::now();
  check_options(o);
  QuantizeReport report;
  const std::vector<std::string> keep_float = o.keep_float.empty() ? Int8Policy::default_keep_float() : o.keep_float;
  const Int8Policy policy = Int8Policy::dynamic(keep_float);  // checks the patterns

  const fs::path unet_dir = fs::path(o.model_dir) / "unet";
  SDRT_CHECK(fs::is_directory(unet_dir), o.model_dir, ": missing component folder 'unet/'");
  SDRT_CHECK(!QuantizationConfig::load_if_present(unet_dir.string()), o.model_dir,
             " is already an int8 model folder (unet/", QuantizationConfig::kFileName, ")");
  const std::string weights_path = find_weights_file(unet_dir.string());
  const SafeTensors file = SafeTensors::open(weights_path);
  std::set<std::string> to_quantize;
  for (const auto& [name, info] : file.tensors())
    if (const std::string layer = conv_or_linear_layer(name, info); !layer.empty() && policy.quantizes(layer))
      to_quantize.insert(layer);

  std::map<std::string, ActivationRange> ranges;
  if (o.method == "ptq") {
    auto tc = Clock::now();
    ranges = calibrate(o, to_quantize, report);
    report.calibration_s = seconds_since(tc);
  }

  const bool created = !fs::exists(o.out_dir);
  try {
    copy_except_unet_weights(o.model_dir, o.out_dir);
    SafeTensorsWriter writer;
    writer.set_metadata("format", "pt");
    for (const auto& [name, info] : file.tensors()) {
      const std::string layer = conv_or_linear_layer(name, info);
      const bool is_layer_weight = !layer.empty();
      auto range = ranges.find(layer);
      const bool calibrated = o.method == "dynamic" || (range != ranges.end() && range->second.count() > 0);
      if (!is_layer_weight || !to_quantize.count(layer) || !calibrated) {
        writer.add_raw(name, info.dtype, info.shape, file.raw(name));
        if (is_layer_weight) ++report.float_layers;
        continue;
      }
      kernels::Int8Weights q = kernels::Int8Weights::quantize(file.load_f32(name));
      writer.add_raw(name, DType::I8, info.shape,
                     {reinterpret_cast<const uint8_t*>(q.data.get()), static_cast<size_t>(shape_numel(info.shape))});
      writer.add(layer + ".weight_scale", Tensor::from_vector({static_cast<int64_t>(q.scales.size())}, q.scales));
      if (o.method == "ptq") writer.add(layer + ".input_scale", Tensor::from_vector({1}, {range->second.int8_scale()}));
      ++report.int8_layers;
    }
    const fs::path out_weights = fs::path(o.out_dir) / "unet" / "diffusion_pytorch_model.safetensors";
    writer.write(out_weights.string());

    QuantizationConfig config;
    config.method = o.method;
    config.static_activations = o.method == "ptq";
    config.keep_float = keep_float;
    config.details["source_model"] = fs::absolute(o.model_dir).string();
    if (o.method == "ptq") {
      config.details["calibration"] = {{"images", report.calibration_images},
                                       {"unet_calls", report.calibration_unet_calls},
                                       {"steps", o.steps},
                                       {"guidance", o.guidance},
                                       {"width", o.width},
                                       {"height", o.height},
                                       {"seed", o.seed},
                                       {"range", "mse_optimal_symmetric"},
                                       {"seconds", report.calibration_s}};
    }
    config.save((fs::path(o.out_dir) / "unet").string());
    report.unet_bytes_before = static_cast<int64_t>(fs::file_size(weights_path));
    report.unet_bytes_after = static_cast<int64_t>(fs::file_size(out_weights));
  } catch (...) {
    // Nothing half-made is left behind; an existing (empty) folder is left as it was found.
    std::error_code ignored;
    if (created) {
      fs::remove_all(o.out_dir, ignored);
    } else {  // it was empty: remove what this run put in it
      std::vector<fs::path> made;
      for (fs::directory_iterator it(o.out_dir, ignored), end; !ignored && it != end; it.increment(ignored))
        made.push_back(it->path());
      for (const auto& p : made) fs::remove_all(p, ignored);
    }
    throw;
  }
  report.total_s = seconds_since(t0);
  return report;
}

}  // namespace sdrt::quantization
