// The fused attention kernel against the blocked two-GEMM implementation it replaced, on the
// attention shapes of SD 1.5 at 512x512 (batch 2 = classifier-free guidance) and of its CLIP text
// encoder. Report median times; the GFLOP rate counts the two matrix products only,
// 2 x (2 B heads Lq Lk d), the full square also for the causal case. Both kernels run on the
// OpenMP pool (OMP_NUM_THREADS); OMP_NUM_THREADS=1 gives per-core figures.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {
namespace {

// The implementation before the fused kernel: per 128-query block, scores = Q K^T by sgemm into
// a 128 x Lk buffer, a scalar softmax with libm exp, then out = P V by sgemm.
void softmax_rows(float* s, int64_t rows, int64_t cols, int64_t first_row, bool causal) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s + r * cols;
    int64_t valid = causal ? std::min(cols, first_row + r + 1) : cols;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < valid; ++j) mx = std::max(mx, row[j]);
    float sum = 0;
    for (int64_t j = 0; j < valid; ++j) {
      row[j] = std::exp(row[j] - mx);
      sum += row[j];
    }
    float inv = 1.0f / sum;
    for (int64_t j = 0; j < valid; ++j) row[j] *= inv;
    for (int64_t j = valid; j < cols; ++j) row[j] = 0.0f;
  }
}

Tensor attention_blocked_gemm(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  const int64_t batch = q.dim(0), lq = q.dim(1), lk = k.dim(1), channels = q.dim(2), d = channels / heads;
  Tensor out = Tensor::empty(q.shape());
  constexpr int64_t kBlock = 128;
  const int64_t blocks = (lq + kBlock - 1) / kBlock, tasks = batch * heads * blocks;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(kBlock * lk));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      int64_t b = t / (heads * blocks), h = (t / blocks) % heads, blk = t % blocks;
      int64_t q0 = blk * kBlock, rows = std::min(kBlock, lq - q0);
      const float* qp = q.data() + (b * lq + q0) * channels + h * d;
      const float* kp = k.data() + b * lk * channels + h * d;
      const float* vp = v.data() + b * lk * channels + h * d;
      float* op = out.data() + (b * lq + q0) * channels + h * d;
      gemm(false, true, rows, lk, d, scale, qp, channels, kp, channels, 0.0f, scores.data(), lk);
      softmax_rows(scores.data(), rows, lk, q0, causal);
      gemm(false, false, rows, d, lk, 1.0f, scores.data(), lk, vp, channels, 0.0f, op, channels);
    }
  }
  return out;
}

struct Case {
  int64_t batch, lq, lk;
  int heads;
  int64_t head_dim;
  bool causal;
};

// Indexed by the benchmark argument.
constexpr Case kCases[] = {
    {2, 4096, 4096, 8, 40, false},  // 0: UNet self-attention at 64x64 latents
    {2, 1024, 1024, 8, 80, false},  // 1: UNet self-attention at 32x32
    {2, 4096, 77, 8, 40, false},    // 2: UNet cross-attention to the 77 text tokens at 64x64
    {1, 77, 77, 12, 64, true},      // 3: CLIP ViT-L text encoder, causal
    {2, 256, 256, 8, 160, false},   // 4: UNet self-attention at 16x16, the widest heads
};
const char* const kCaseNames[] = {"self_64x64_L4096_d40", "self_32x32_L1024_d80", "cross_64x64_Lk77_d40",
                                  "clip_causal_L77_d64", "self_16x16_L256_d160"};

template <Tensor (*Kernel)(const Tensor&, const Tensor&, const Tensor&, int, float, bool)>
void run_case(benchmark::State& state) {
  const Case& c = kCases[state.range(0)];
  const int64_t channels = c.heads * c.head_dim;
  Tensor q = TorchCpuRng(1).randn({c.batch, c.lq, channels});
  Tensor k = TorchCpuRng(2).randn({c.batch, c.lk, channels});
  Tensor v = TorchCpuRng(3).randn({c.batch, c.lk, channels});
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  for (auto _ : state) benchmark::DoNotOptimize(Kernel(q, k, v, c.heads, scale, c.causal));
  const double flops = 2.0 * (2.0 * c.batch * c.heads * c.lq * c.lk * c.head_dim);
  state.counters["GFLOP"] = benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(kCaseNames[state.range(0)]);
}

Tensor attention_f32(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  return attention(q, k, v, heads, scale, causal);
}
Tensor attention_bf16(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  return attention(q, k, v, heads, scale, causal, Precision::bf16);
}

void fused(benchmark::State& state) { run_case<attention_f32>(state); }
void fused_bf16(benchmark::State& state) { run_case<attention_bf16>(state); }
void blocked_gemm(benchmark::State& state) { run_case<attention_blocked_gemm>(state); }

BENCHMARK(fused)->DenseRange(0, 4)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(fused_bf16)->DenseRange(0, 4)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(blocked_gemm)->DenseRange(0, 4)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sdrt::kernels
