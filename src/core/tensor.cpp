#include "core/tensor.h"

#include <algorithm>
#include <cstring>

#include "core/buffer_cache.h"
#include "core/error.h"

namespace sdrt {

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}


Tensor Tensor::empty(Shape shape) {
  for (int64_t d : shape) SDRT_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
  Tensor t;
  auto buf = BufferCache::instance().allocate(static_cast<size_t>(shape_numel(shape)) * sizeof(float));
  t.data_ = buf.get();
  t.owner_ = std::move(buf);
  t.shape_ = std::move(shape);
  return t;
}

Tensor::Tensor(Shape shape) {
  *this = empty(std::move(shape));
  std::memset(data_, 0, static_cast<size_t>(numel()) * sizeof(float));
}

Tensor Tensor::wrap(Shape shape, float* data, std::shared_ptr<const void> owner) {
  Tensor t;
  t.shape_ = std::move(shape);
  t.data_ = data;
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::from_vector(Shape shape, const std::vector<float>& values) {
  SDRT_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), "from_vector: shape ", shape_str(shape),
             " needs ", shape_numel(shape), " values, got ", values.size());
  Tensor t = empty(std::move(shape));
  std::copy(values.begin(), values.end(), t.data_);
  return t;
}

Tensor Tensor::full(Shape shape, float value) {
  Tensor t = empty(std::move(shape));
  std::fill(t.data_, t.data_ + t.numel(), value);
  return t;
}

int64_t Tensor::dim(int i) const {
  int r = rank();
  int j = i < 0 ? i + r : i;
  SDRT_CHECK(j >= 0 && j < r, "dim(", i, ") out of range for shape ", shape_str(shape_));
  return shape_[j];
}

Tensor Tensor::reshape(Shape shape) const {
  SDRT_CHECK(shape_numel(shape) == numel(), "cannot reshape ", shape_str(shape_), " to ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice0(int64_t begin, int64_t end) const {
  SDRT_CHECK(rank() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "slice0(", begin, ", ", end,
             ") out of range for shape ", shape_str(shape_));
  Tensor t = *this;
  int64_t row = shape_[0] ? numel() / shape_[0] : 0;
  t.data_ = data_ + begin * row;
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_);
  if (numel()) std::memcpy(t.data_, data_, static_cast<size_t>(numel()) * sizeof(float));
  return t;
}

std::vector<float> Tensor::to_vector() const { return std::vector<float>(data_, data_ + numel()); }

}  // namespace sdrt
