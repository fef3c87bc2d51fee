#include "kernels/op_counter.h"

#include <chrono>

namespace sdrt::kernels {

namespace detail {
thread_local constinit MacCounter* active_mac_counter = nullptr;
}  // namespace detail

const char* op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Conv: return "conv";
    case OpKind::Linear: return "linear";
    case OpKind::Attention: return "attention";
    case OpKind::Int8: return "int8";
  }
  return "unknown";
}

int64_t MacCounter::total_macs() const {
  int64_t total = 0;
  for (OpKind kind : kAllOpKinds) total += macs(kind);
  return total;
}

namespace {
int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
}  // namespace

KernelTimer::KernelTimer(OpKind kind) : counter_(detail::active_mac_counter), kind_(kind) {
  if (counter_) start_ns_ = now_ns();
}

KernelTimer::~KernelTimer() {
  if (counter_) counter_->add_nanoseconds(kind_, now_ns() - start_ns_);
}

void MacCounter::reset() {
  for (auto& m : macs_) m.store(0, std::memory_order_relaxed);
  for (auto& t : nanoseconds_) t.store(0, std::memory_order_relaxed);
  plans_.store(0, std::memory_order_relaxed);
}

}  // namespace sdrt::kernels
