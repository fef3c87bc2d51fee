// Multiply-accumulate counting for benchmarks: how much arithmetic a model evaluation asks of the
// kernels, so measured time can be turned into GFLOP/s and compared with the machine's peak.
//
// Only the ops that dominate the work are counted: convolutions, linear layers and the two
// matrix products of attention (q k^T and p v). Norms, activations, softmax and element-wise
// ops are left out, which is the usual convention for diffusion-model FLOP figures.
//
// The same counter also counts the kernel plans (oneDNN primitives for one input shape) created
// under it: once a shape is compiled (StableDiffusionPipeline::compile) a generation of that shape
// must create none.
//
// Counting is opt-in per thread: an OpCounterScope installs a counter for the thread that
// creates it, and the kernels call count_macs() on their calling thread before they fan out to
// OpenMP workers. With no scope installed a call costs one thread-local load and a branch.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "core/tensor.h"

namespace sdrt::kernels {

// Int8: the int8 convolutions and linear layers (kernels/int8.h), whose peak is the int8 one.
enum class OpKind { Conv, Linear, Attention, Int8 };
inline constexpr int kOpKindCount = 4;
inline constexpr std::array<OpKind, kOpKindCount> kAllOpKinds = {OpKind::Conv, OpKind::Linear, OpKind::Attention,
                                                                 OpKind::Int8};

// "conv", "linear", "attention", "int8": the keys benchmark reports use.
const char* op_kind_name(OpKind kind);

// MACs per op kind. Atomic so that several threads may share one counter (each with its own scope).
class MacCounter {
 public:
  void add(OpKind kind, int64_t macs) { macs_[index(kind)].fetch_add(macs, std::memory_order_relaxed); }
  int64_t macs(OpKind kind) const { return macs_[index(kind)].load(std::memory_order_relaxed); }
  int64_t total_macs() const;
  void add_plan() { plans_.fetch_add(1, std::memory_order_relaxed); }
  // Wall time spent inside the packed convolution and linear kernels, per kind (KernelTimer).
  void add_nanoseconds(OpKind kind, int64_t ns) { nanoseconds_[index(kind)].fetch_add(ns, std::memory_order_relaxed); }
  double seconds(OpKind kind) const { return nanoseconds_[index(kind)].load(std::memory_order_relaxed) * 1e-9; }
  int64_t plans() const { return plans_.load(std::memory_order_relaxed); }
  void reset();

 private:
  static size_t index(OpKind kind) { return static_cast<size_t>(kind); }
  std::array<std::atomic<int64_t>, kOpKindCount> macs_{};
  std::array<std::atomic<int64_t>, kOpKindCount> nanoseconds_{};
  std::atomic<int64_t> plans_{0};
};

namespace detail {
// constinit: no dynamic initialisation, so other translation units read it without a TLS wrapper call.
extern thread_local constinit MacCounter* active_mac_counter;
}  // namespace detail

// Installs `counter` for the calling thread for the scope's lifetime. Scopes nest: the innermost
// counter receives the counts, and the outer one is restored when the inner scope ends.
class OpCounterScope {
 public:
  explicit OpCounterScope(MacCounter& counter) : previous_(detail::active_mac_counter) {
    detail::active_mac_counter = &counter;
  }
  ~OpCounterScope() { detail::active_mac_counter = previous_; }
  OpCounterScope(const OpCounterScope&) = delete;
  OpCounterScope& operator=(const OpCounterScope&) = delete;

 private:
  MacCounter* previous_;
};

inline bool counting_macs() { return detail::active_mac_counter != nullptr; }

// Called by the kernels at entry, on the calling thread.
inline void count_macs(OpKind kind, int64_t macs) {
  if (MacCounter* counter = detail::active_mac_counter) counter->add(kind, macs);
}

// Called by the packed kernels when they create a plan for a new input shape, on the calling thread.
inline void count_plan_created() {
  if (MacCounter* counter = detail::active_mac_counter) counter->add_plan();
}

// Times a kernel call into the thread's counter, if one is installed (one thread-local load otherwise).
class KernelTimer {
 public:
  explicit KernelTimer(OpKind kind);
  ~KernelTimer();
  KernelTimer(const KernelTimer&) = delete;
  KernelTimer& operator=(const KernelTimer&) = delete;

 private:
  MacCounter* counter_;
  OpKind kind_;
  int64_t start_ns_ = 0;
};

// softmax(q k^T) v with q [B, Lq, heads*d] and k [B, Lk, heads*d]: B*heads*Lq*Lk*d MACs for q k^T
// and as many again for p v. Tensors that are not rank 3 count 0: the kernel rejects them anyway.
inline int64_t attention_macs(const Tensor& q, const Tensor& k) {
  if (q.rank() != 3 || k.rank() != 3) return 0;
  return q.dim(0) * q.dim(1) * k.dim(1) * q.dim(2) * 2;
}

// The attention kernel's counting call, kept to one line there.
inline void count_attention_macs(const Tensor& q, const Tensor& k) {
  if (counting_macs()) count_macs(OpKind::Attention, attention_macs(q, k));
}

}  // namespace sdrt::kernels
