#include "models/weights.h"

#include "core/error.h"

namespace sdrt {

WeightSource::WeightSource(std::shared_ptr<const SafeTensors> file, std::string prefix)
    : file_(std::move(file)), prefix_(std::move(prefix)), used_(std::make_shared<std::set<std::string>>()) {}

WeightSource WeightSource::open(const std::string& path) {
  return WeightSource(std::make_shared<const SafeTensors>(SafeTensors::open(path)));
}

WeightSource WeightSource::sub(const std::string& prefix) const {
  WeightSource s = *this;
  s.prefix_ = full(prefix);
  return s;
}

const std::string& WeightSource::path() const { return file_->path(); }

bool WeightSource::contains(const std::string& name) const { return file_->contains(full(name)); }

Tensor WeightSource::get(const std::string& name, const Shape& expected) const {
  std::string key = full(name);
  if (!file_->contains(key)) fail(file_->path(), ": missing tensor '", key, "' (expected shape ", shape_str(expected), ")");
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
  for (const auto& [name, info] : file_->tensors())
    if (!used_->count(name)) out.push_back(name);
  return out;
}

}  // namespace sdrt
