// Pieces shared by the packed convolution and linear kernels (packed_conv2d.cpp,
// packed_linear.cpp); internal to src/kernels, the only place that includes oneDNN's headers.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <initializer_list>
#include <memory>
#include <unordered_map>
#include <vector>

#include "core/tensor.h"

namespace sdrt::kernels {

// A float buffer as oneDNN memory of layout `desc`, without copying. The caller keeps it alive.
dnnl::memory wrap_memory(const dnnl::memory::desc& desc, const float* data);

// One layer's weights in the layouts its primitives asked for (usually exactly one: oneDNN picks
// the weight layout from the channel counts, not the input size).
//
// It starts as the unpacked tensor, which may be a zero-copy view into a memory-mapped file; the
// first packed layout is reordered from it and then the unpacked reference is released, so a
// layer never keeps two full f32 copies. A layout that no primitive uses any more is dropped as
// soon as another one exists.
//
// Not synchronised: the owner serialises calls (PackedConv2d and PackedLinear hold their mutex).
class WeightLayouts {
 public:
  // `unpacked` in layout `unpacked_desc` (e.g. oihw for conv weights [O, C, kh, kw]).
  WeightLayouts(Tensor unpacked, const dnnl::memory::desc& unpacked_desc);

  // The weights in layout `desc`, reordered from an existing layout on first request. Holding the
  // returned pointer keeps that layout alive.
  std::shared_ptr<const dnnl::memory> in_layout(const dnnl::memory::desc& desc);

  // Bytes held over all layouts, the unpacked tensor included while it is still referenced.
  size_t bytes() const;
  size_t layout_count() const { return layouts_.size(); }

 private:
  struct Layout {
    std::shared_ptr<dnnl::memory> memory;
    Tensor storage;  // set when `memory` views a tensor (the unpacked weights) rather than owning its buffer
  };
  void drop_unused_except(const dnnl::memory* keep);

  std::vector<Layout> layouts_;
};

// Attributes for the packed kernels' primitives. The scratchpad is user-managed: oneDNN's default
// (a per-thread global scratchpad bound when a primitive is created) is not safe when one cached
// primitive runs on several threads at once. `accumulate` adds the sum post-op: dst += result.
dnnl::primitive_attr packed_kernel_attr(bool accumulate);

// The scratchpad for one execution of primitives created with packed_kernel_attr(): a buffer of
// the largest size among them, from the tensor buffer cache.
class Scratchpad {
 public:
  explicit Scratchpad(size_t bytes);
  // Adds DNNL_ARG_SCRATCHPAD for a primitive whose scratchpad layout is `desc` (nothing if it needs none).
  void add_to(std::unordered_map<int, dnnl::memory>& args, const dnnl::memory::desc& desc) const;

 private:
  Tensor buffer_;
};

// Bytes of the largest of these scratchpads.
size_t max_scratchpad_bytes(std::initializer_list<dnnl::memory::desc> descs);

// A tensor with room for `bytes` bytes, for activations in a primitive's own layout.
Tensor buffer_for(const dnnl::memory::desc& desc);

}  // namespace sdrt::kernels
