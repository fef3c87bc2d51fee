#include <oneapi/dnnl/dnnl.hpp>

#include "kernels/kernels.h"

namespace sdrt::kernels {

const dnnl::engine& cpu_engine() {
  static const dnnl::engine engine = [] {
    apply_isa_cap_to_onednn();  // must precede oneDNN's first kernel
    return dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return engine;
}

dnnl::stream& cpu_stream() {
  // Streams are cheap; one per thread keeps concurrent pipelines independent.
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

}  // namespace sdrt::kernels
