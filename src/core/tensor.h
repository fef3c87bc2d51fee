// A dense float32 tensor, row-major (NCHW for images), with shared storage.
// Weights may point into a memory-mapped file (the owner keeps the mapping alive);
// activations own a 64-byte aligned buffer.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

namespace sdrt {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

class Tensor {
 public:
  Tensor() = default;
  // Allocates a zero-filled tensor.
  explicit Tensor(Shape shape);
  Tensor(std::initializer_list<int64_t> shape) : Tensor(Shape(shape)) {}

  // Allocates without clearing; for outputs that a kernel fully overwrites.
  static Tensor empty(Shape shape);
  // Views external memory; `owner` keeps it alive.
  static Tensor wrap(Shape shape, float* data, std::shared_ptr<const void> owner);
  static Tensor from_vector(Shape shape, const std::vector<float>& values);
  static Tensor full(Shape shape, float value);

  bool defined() const { return data_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  // Negative indices count from the end, as in Python.
  int64_t dim(int i) const;
  int64_t numel() const { return shape_numel(shape_); }

  float* data() { return data_; }
  const float* data() const { return data_; }
  float& operator[](int64_t i) { return data_[i]; }
  float operator[](int64_t i) const { return data_[i]; }

  // Same storage, new shape (numel must match).
  Tensor reshape(Shape shape) const;
  // Rows [begin, end) of the first dimension, sharing storage.
  Tensor slice0(int64_t begin, int64_t end) const;
  Tensor clone() const;
  std::vector<float> to_vector() const;

 private:
  Shape shape_;
  float* data_ = nullptr;
  std::shared_ptr<const void> owner_;
};

}  // namespace sdrt
