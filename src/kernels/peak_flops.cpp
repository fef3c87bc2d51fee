#include "kernels/peak_flops.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <limits>
#include <oneapi/dnnl/dnnl.hpp>
#include <unordered_map>

#include "core/error.h"
#include "core/parallel.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {

namespace {

using Clock = std::chrono::steady_clock;

double best_time(const std::function<void()>& run, int repeats) {
  run();  // first call: page faults, oneDNN kernel generation, cache warm-up
  double best = std::numeric_limits<double>::infinity();
  for (int i = 0; i < std::max(repeats, 1); ++i) {
    auto t0 = Clock::now();
    run();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// Small integers, exact in every type measured, so no operand is a denormal or saturates.
std::vector<float> operand_values(int64_t count) {
  std::vector<float> v(static_cast<size_t>(count));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i % 5);
  return v;
}

double sgemm_seconds(MatmulShape s, int repeats) {
  std::vector<float> a = operand_values(s.m * s.k), b = operand_values(s.k * s.n);
  std::vector<float> c(static_cast<size_t>(s.m * s.n));
  return best_time([&] { gemm(false, false, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f, c.data(), s.n); },
                   repeats);
}

// A memory object in `desc`'s layout and type holding operand_values(), converted by a oneDNN reorder.
dnnl::memory filled_memory(const dnnl::memory::desc& desc, const dnnl::memory::dims& dims) {
  using namespace dnnl;
  int64_t count = 1;
  for (auto d : dims) count *= d;
  std::vector<float> values = operand_values(count);
  memory plain({dims, memory::data_type::f32, memory::format_tag::ab}, cpu_engine(), values.data());
  memory target(desc, cpu_engine());
  reorder(plain, target).execute(cpu_stream(), plain, target);
  cpu_stream().wait();
  return target;
}

struct PrimitiveTypes {
  dnnl::memory::data_type src, weights, dst;
};

PrimitiveTypes primitive_types(MatmulType type) {
  using dt = dnnl::memory::data_type;
  if (type == MatmulType::BF16) return {dt::bf16, dt::bf16, dt::f32};
  return {dt::u8, dt::s8, dt::s32};
}

double matmul_primitive_seconds(MatmulType type, MatmulShape s, int repeats, std::string& implementation) {
  using namespace dnnl;
  PrimitiveTypes t = primitive_types(type);
  memory::desc src_md({s.m, s.k}, t.src, memory::format_tag::ab);
  memory::desc weights_md({s.k, s.n}, t.weights, memory::format_tag::any);  // pre-packed, as for inference
  memory::desc dst_md({s.m, s.n}, t.dst, memory::format_tag::ab);
  matmul::primitive_desc pd(matmul::desc(src_md, weights_md, dst_md), cpu_engine());
  implementation = pd.impl_info_str();
  memory src = filled_memory(pd.src_desc(), {s.m, s.k});
  memory weights = filled_memory(pd.weights_desc(), {s.k, s.n});
  memory dst(pd.dst_desc(), cpu_engine());
  matmul product(pd);
  std::unordered_map<int, memory> args{{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
  return best_time(
      [&] {
        product.execute(cpu_stream(), args);
        cpu_stream().wait();
      },
      repeats);
}

}  // namespace

const char* matmul_type_name(MatmulType type) {
  switch (type) {
    case MatmulType::F32: return "f32";
    case MatmulType::BF16: return "bf16";
    case MatmulType::Int8: return "int8";
  }
  return "unknown";
}

double PeakFlops::best_gflops(MatmulType type) const {
  double best = 0;
  for (const auto& m : measurements)
    if (m.type == type && m.supported) best = std::max(best, m.gflops);
  return best;
}

std::vector<MatmulShape> peak_flops_shapes() { return {{2048, 2048, 2048}, {4096, 320, 320}}; }

MatmulPeak measure_matmul_peak(MatmulType type, MatmulShape shape, int repeats) {
  MatmulPeak p;
  p.type = type;
  p.shape = shape;
  try {
    if (type == MatmulType::F32) {
      p.implementation = "dnnl_sgemm";
      p.best_seconds = sgemm_seconds(shape, repeats);
    } else {
      p.best_seconds = matmul_primitive_seconds(type, shape, repeats, p.implementation);
    }
    p.supported = true;
    p.gflops = 2.0 * shape.m * shape.n * shape.k / p.best_seconds / 1e9;
  } catch (const dnnl::error& e) {
    // oneDNN without an implementation for this type on this CPU: reported, not fatal.
    p.error = str("oneDNN ", matmul_type_name(type), " matmul unavailable: ", e.what());
  }
  return p;
}

PeakFlops measure_peak_flops(int repeats) {
  PeakFlops peak;
  peak.threads = num_threads();
  peak.repeats = repeats;
  for (MatmulType type : {MatmulType::F32, MatmulType::BF16, MatmulType::Int8})
    for (MatmulShape shape : peak_flops_shapes())
      peak.measurements.push_back(measure_matmul_peak(type, shape, repeats));
  return peak;
}

}  // namespace sdrt::kernels
