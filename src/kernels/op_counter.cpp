#include "kernels/op_counter.h"

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

void MacCounter::reset() {
  for (auto& m : macs_) m.store(0, std::memory_order_relaxed);
  plans_.store(0, std::memory_order_relaxed);
}

}  // namespace sdrt::kernels
