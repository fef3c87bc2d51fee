#include "models/weights.h"

#include "core/error.h"

namespace sdrt {

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
