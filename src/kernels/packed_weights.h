// Pieces shared by the packed convolution and linear kernels (packed_conv2d.cpp,
// packed_linear.cpp); internal to src/kernels, the only place that includes oneDNN's headers.
#pragma once

#include <oneapi/dnnl/dnnl.hpp>

#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "kernels/int8.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

// A buffer as oneDNN memory of layout `desc`, without copying. The caller keeps it alive.
dnnl::memory wrap_memory(const dnnl::memory::desc& desc, const void* data);

// The data type of a packed kernel's weights and source activations at precision `p`.
dnnl::memory::data_type compute_data_type(Precision p);

// int8 without VNNI (kernels/int8.h): whether oneDNN's packed layout `weights` halves the weights
// itself (its "scale adjust", which its int8 convolutions apply) so that vpmaddubsw cannot
// saturate. Where it does not (its int8 GEMM), the kernel must be given 7-bit weights.
bool onednn_halves_int8_weights(const dnnl::memory::desc& weights);
// Checks that a plan's packed weights `weights` agree with how the layer's weights were prepared
// (`seven_bit`: sdrt halved them), so that no int8 primitive can saturate unnoticed.
void check_int8_weight_preparation(const dnnl::memory::desc& weights, bool seven_bit, const char* kernel);

// The int8 side of a packed convolution or linear layer (kernels/int8.h). Static (input_scale > 0):
// the primitive applies output_scales = s_x * scale[o] to (acc + scaled_bias), oneDNN 2.x's int8
// convention (the bias is scaled too). Dynamic (input_scale 0): the primitive writes int32 and
// dequantize_int32() applies the measured per-image or per-row scales and the bias.
struct Int8Scales {
  Int8Scales() = default;
  Int8Scales(std::vector<float> weight_scales, float input_scale, const Tensor& bias);

  std::vector<float> weight_scales, output_scales;
  float input_scale = 0;
  Tensor scaled_bias;
  bool seven_bit_weights = false;  // halved by sdrt for a CPU without VNNI

  bool dynamic() const { return input_scale == 0; }
  // The bias the primitive adds for a layer with `bias`: the scaled one when static, none when
  // dynamic (the epilogue adds it).
  const Tensor* primitive_bias(const Tensor& bias) const {
    return bias.defined() && !dynamic() ? &scaled_bias : nullptr;
  }
  // The attr of the reorder that quantises the caller's f32 input: 1/s_x, or runtime scales per
  // index of dimension 0 (image or row) when dynamic.
  dnnl::primitive_attr source_reorder_attr() const;
  // Adds the static output scales, per index of the destination's dimension 1, to `attr`.
  void add_output_scales(dnnl::primitive_attr& attr) const;
  // Dynamic: each of `chunks` chunks of `len` values gets its scale (absmax / 127) in `scales`
  // and 1/scale in `inverse`; without `measure` (a dry run) the scales are 1.
  static void measure(const float* x, int64_t chunks, int64_t len, bool measure, std::vector<float>& scales,
                      std::vector<float>& inverse);
};

// `weights` as an int8 primitive here should get them: the 7-bit form where the CPU lacks VNNI
// and oneDNN's kernel (`halves_itself`: it halves them in its packed layout) does not.
Int8Weights prepare_int8_weights(Int8Weights weights, bool halves_itself, bool& seven_bit);

// One layer's weights in the layouts its primitives asked for (usually exactly one: oneDNN picks
// the weight layout from the channel counts, not the input size).
//
// It starts as the unpacked tensor, which may be a zero-copy view into a memory-mapped file; the
// first packed layout is reordered from it and then the unpacked reference is released, so a
// layer never keeps two full f32 copies. A layout that no primitive uses any more is dropped as
// soon as another one exists.
//
// Not synchronised: the owner serialises calls (PlanCache holds the mutex).
class WeightLayouts {
 public:
  // `unpacked` in layout `unpacked_desc` (e.g. oihw for conv weights [O, C, kh, kw]).
  WeightLayouts(Tensor unpacked, const dnnl::memory::desc& unpacked_desc);
  // The same for weights of any data type (int8) at `data`, kept alive by `owner` until packed.
  WeightLayouts(std::shared_ptr<const void> owner, const void* data, const dnnl::memory::desc& unpacked_desc);

  // The weights in layout `desc`, reordered from an existing layout on first request. Holding the
  // returned pointer keeps that layout alive.
  std::shared_ptr<const dnnl::memory> in_layout(const dnnl::memory::desc& desc);

  // Bytes held over all layouts, the unpacked tensor included while it is still referenced.
  size_t bytes() const;
  size_t layout_count() const { return layouts_.size(); }

 private:
  struct Layout {
    std::shared_ptr<dnnl::memory> memory;
    std::shared_ptr<const void> storage;  // set when `memory` views the unpacked weights rather than owning its buffer
  };
  void drop_unused_except(const dnnl::memory* keep);

  std::vector<Layout> layouts_;
};

// A layer's packed weights and its plans (primitives and the weights they use), one per input
// shape, behind one mutex so that a layer can run on several threads at once. A plan is made on
// the first call with its shape; past `capacity` shapes the cache starts over (running calls
// keep their plans alive). SD runs a handful of shapes per layer; the cap only bounds a
// long-running process that sees many image sizes.
template <class Key, class Plan>
class PlanCache {
 public:
  PlanCache(WeightLayouts weights, size_t capacity) : weights_(std::move(weights)), capacity_(capacity) {}

  // The plan for `key`; on first use made by make(weights), which picks its weight layout with
  // weights.in_layout().
  template <class Make>
  std::shared_ptr<const Plan> get(const Key& key, Make&& make) {
    std::lock_guard lock(mutex_);
    if (auto it = plans_.find(key); it != plans_.end()) return it->second;
    if (plans_.size() >= capacity_) plans_.clear();
    std::shared_ptr<const Plan> plan = make(weights_);
    plans_.emplace(key, plan);
    return plan;
  }

  // Packs the weights into `desc` ahead of the first call.
  void pack(const dnnl::memory::desc& desc) {
    std::lock_guard lock(mutex_);
    weights_.in_layout(desc);
  }

  size_t weight_bytes() const {
    std::lock_guard lock(mutex_);
    return weights_.bytes();
  }
  size_t size() const {
    std::lock_guard lock(mutex_);
    return plans_.size();
  }

 private:
  mutable std::mutex mutex_;  // guards weights_ and plans_
  WeightLayouts weights_;
  std::map<Key, std::shared_ptr<const Plan>> plans_;
  size_t capacity_;
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
