#include "models/weights.h"

#include <cmath>
#include <cstring>

#include "core/error.h"

namespace sdrt {

Int8Policy Int8Policy::dynamic(std::vector<std::string> keep_float) {
  Int8Policy p;
  for (const auto& pattern : keep_float) {
    try {
      p.patterns_.emplace_back(pattern);
    } catch (const std::regex_error& e) {
      fail("int8: keep-float pattern '", pattern, "' is not a valid regular expression: ", e.what());
    }
  }
  p.keep_float_ = std::move(keep_float);
  return p;
}

Int8Policy Int8Policy::from_file(bool static_activations) {
  Int8Policy p;
  p.file_decides_ = true;
  p.static_activations_ = static_activations;
  return p;
}

const std::vector<std::string>& Int8Policy::default_keep_float() {
  static const std::vector<std::string> patterns = {"^conv_in$", "^conv_out$", "^time_embedding\\.",
                                                    "\\.time_emb_proj$"};
  return patterns;
}

bool Int8Policy::quantizes(const std::string& layer) const {
  if (file_decides_) return false;
  for (const auto& p : patterns_)
    if (std::regex_search(layer, p)) return false;
  return true;
}

WeightSource::WeightSource(std::shared_ptr<const SafeTensors> file, std::string prefix)
    : file_(std::move(file)), prefix_(std::move(prefix)) {}

WeightSource WeightSource::open(const std::string& path) {
  return WeightSource(std::make_shared<const SafeTensors>(SafeTensors::open(path)));
}

WeightSource WeightSource::synthetic(TensorFactory factory, std::string label) {
  WeightSource s;
  s.synthetic_ = std::make_shared<Synthetic>(Synthetic{std::move(factory), std::move(label), {}});
  return s;
}

WeightSource WeightSource::sub(const std::string& prefix) const {
  WeightSource s = *this;
  s.prefix_ = full(prefix);
  return s;
}

WeightSource WeightSource::with_compute_precision(kernels::Precision p) const {
  WeightSource s = *this;
  s.precision_ = p;
  return s;
}

WeightSource WeightSource::with_int8_policy(std::shared_ptr<const Int8Policy> policy) const {
  WeightSource s = *this;
  s.int8_policy_ = std::move(policy);
  return s;
}

bool WeightSource::holds_int8(const std::string& name) const {
  return file_ && file_->contains(full(name)) && file_->info(full(name)).dtype == DType::I8;
}

kernels::Int8Weights WeightSource::get_int8(const std::string& layer, const std::string& weight_name,
                                            const Shape& expected) const {
  const std::string key = full(weight_name);
  SDRT_CHECK(holds_int8(weight_name), path(), ": tensor '", key, "' is not stored as I8");
  const TensorInfo& info = file_->info(key);
  const bool same_values = info.shape == expected || (shape_numel(info.shape) == shape_numel(expected) &&
                                                      !info.shape.empty() && info.shape[0] == expected[0]);
  if (!same_values)
    fail(file_->path(), ": tensor '", key, "' has shape ", shape_str(info.shape), ", expected ", shape_str(expected));
  used_->insert(key);
  kernels::Int8Weights w;
  w.shape = expected;
  // The values stay in the mapped file; the layer packs them once and then lets go, and the
  // view's pages leave the resident set then (else the load's peak holds the weights twice).
  auto bytes = file_->raw_view(key);
  w.data = std::shared_ptr<const int8_t>(bytes, reinterpret_cast<const int8_t*>(bytes.get()));
  Tensor scales = get(layer + ".weight_scale", {expected[0]});
  w.scales.assign(scales.data(), scales.data() + scales.numel());
  w.validate(file_->path() + ": tensor '" + full(layer + ".weight_scale") + "'");
  return w;
}

float WeightSource::get_input_scale(const std::string& layer) const {
  const std::string name = layer + ".input_scale";
  if (!contains(name))
    fail(path(), ": missing tensor '", full(name), "': int8 layer '", full(layer),
         "' needs its static activation scale (F32, shape [1])");
  Tensor t = get(name, {1});
  const float v = t.data()[0];
  SDRT_CHECK(std::isfinite(v) && v > 0, path(), ": tensor '", full(name), "' is ", v, " (must be finite and > 0)");
  return v;
}

const std::string& WeightSource::path() const { return synthetic_ ? synthetic_->label : file_->path(); }

bool WeightSource::contains(const std::string& name) const {
  // A synthetic model has exactly the tensors that were asked for by their canonical names.
  return synthetic_ ? synthetic_->made.count(full(name)) != 0 : file_->contains(full(name));
}

Tensor WeightSource::make(const std::string& key, const Shape& expected) const {
  Tensor t = synthetic_->factory(key, expected);
  SDRT_CHECK(t.shape() == expected, "synthetic tensor '", key, "' has shape ", shape_str(t.shape()), ", expected ",
             shape_str(expected));
  synthetic_->made[key] = t;
  used_->insert(key);
  return t;
}

Tensor WeightSource::get(const std::string& name, const Shape& expected) const {
  std::string key = full(name);
  if (synthetic_) return make(key, expected);
  if (!file_->contains(key))
    fail(file_->path(), ": missing tensor '", key, "' (expected shape ", shape_str(expected), ")");
  const TensorInfo& info = file_->info(key);
  if (info.shape != expected)
    fail(file_->path(), ": tensor '", key, "' has shape ", shape_str(info.shape), ", expected ", shape_str(expected));
  used_->insert(key);
  return file_->load_f32(key);
}

Tensor WeightSource::get_optional(const std::string& name, const Shape& expected) const {
  return contains(name) ? get(name, expected) : Tensor();
}

Tensor WeightSource::get_any(const std::vector<std::string>& names, const Shape& expected) const {
  SDRT_CHECK(!names.empty(), "get_any: no names given");
  if (synthetic_) return make(full(names.front()), expected);
  for (const auto& name : names) {
    if (!contains(name)) continue;
    std::string key = full(name);
    const TensorInfo& info = file_->info(key);
    bool same_layout = info.shape == expected ||
                       (shape_numel(info.shape) == shape_numel(expected) && info.shape[0] == expected[0]);
    if (!same_layout)
      fail(file_->path(), ": tensor '", key, "' has shape ", shape_str(info.shape), ", expected ", shape_str(expected));
    used_->insert(key);
    return file_->load_f32(key).reshape(expected);
  }
  std::string list;
  for (const auto& n : names) list += (list.empty() ? "'" : ", '") + full(n) + "'";
  fail(file_->path(), ": missing tensor: none of ", list, " is present (expected shape ", shape_str(expected), ")");
}

std::vector<std::string> WeightSource::unused() const {
  std::vector<std::string> out;
  if (synthetic_) return out;
  for (const auto& [name, info] : file_->tensors())
    if (!used_->count(name)) out.push_back(name);
  return out;
}

const std::map<std::string, Tensor>& WeightSource::made() const {
  SDRT_CHECK(synthetic_, "made(): not a synthetic weight source");
  return synthetic_->made;
}

}  // namespace sdrt
