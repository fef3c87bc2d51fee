// What the machine can do at best: oneDNN matrix products timed on this process's thread count,
// the reference that benchmark GFLOP/s figures are measured against. f32 goes through
// dnnl_sgemm (the routine sdrt's own gemm calls); bf16 and int8 (u8 x s8 -> s32) through the
// oneDNN matmul primitive with weights in the layout it prefers, as an inference engine would
// pre-pack them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sdrt::kernels {

enum class MatmulType { F32, BF16, Int8 };
const char* matmul_type_name(MatmulType type);  // "f32", "bf16", "int8"

struct MatmulShape {
  int64_t m = 0, n = 0, k = 0;
};

struct MatmulPeak {
  MatmulType type = MatmulType::F32;
  MatmulShape shape;
  std::string implementation;  // "dnnl_sgemm", or the primitive's oneDNN implementation name
  bool supported = false;      // false: oneDNN has no implementation here; `error` says why
  std::string error;
  double best_seconds = 0;
  double gflops = 0;  // 2*m*n*k / best_seconds / 1e9 (integer ops for int8)
};

struct PeakFlops {
  int threads = 0;
  int repeats = 0;
  std::vector<MatmulPeak> measurements;
  // Best over the shapes of each type; 0 where unsupported.
  double best_gflops(MatmulType type) const;
};

// The shapes timed: a large square product and the 4096 x 320 x 320 projection that SD's
// first UNet level runs at 64x64 latents.
std::vector<MatmulShape> peak_flops_shapes();

// One warm-up call, then the best of `repeats` timed calls.
MatmulPeak measure_matmul_peak(MatmulType type, MatmulShape shape, int repeats);
// Every type x every shape of peak_flops_shapes(), on the current OpenMP thread count.
PeakFlops measure_peak_flops(int repeats);

}  // namespace sdrt::kernels
