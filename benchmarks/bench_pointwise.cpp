// The memory-bound kernels (GroupNorm+SiLU, LayerNorm, GEGLU, NCHW -> NLC, nearest upsampling)
// against the scalar implementations they replaced, on SD 1.5 shapes at 512x512 (UNet batch 2 =
// classifier-free guidance, VAE decoder batch 1), next to a memcpy of 256 MB as the machine's
// practical memory bandwidth. The GB/s counter is the bytes a kernel must move at least: its input
// read once plus its output written once (1e9 bytes per GB).
//
//   bench_pointwise --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// The machine is shared, so compare old and new from the same run, as ratios of medians. The UNet
// shapes (10 MB in, 10 MB out) fit in a 32 MB L3 together, so repeated runs may exceed the memcpy
// rate; the VAE, GEGLU and upsampling shapes do not.
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"

namespace sdrt::kernels {
namespace {

// ---- The implementations before vectorisation, verbatim apart from their names.

Tensor group_norm_scalar_baseline(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                  bool fuse_silu) {
  int64_t n = x.dim(0), c = x.dim(1);
  int64_t spatial = c ? x.numel() / (n * c) : 0;
  int64_t per_group = c / groups;
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t g = 0; g < groups; ++g) {
      int64_t base = (b * c + g * per_group) * spatial;
      int64_t count = per_group * spatial;
      double sum = 0;
      for (int64_t i = 0; i < count; ++i) sum += xd[base + i];
      double mean = sum / static_cast<double>(count);
      double sq = 0;
      for (int64_t i = 0; i < count; ++i) {
        double d = xd[base + i] - mean;
        sq += d * d;
      }
      float inv_std = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(count) + eps));
      float mean_f = static_cast<float>(mean);
      for (int64_t ch = 0; ch < per_group; ++ch) {
        int64_t cc = g * per_group + ch;
        float scale = inv_std * gamma[cc];
        float shift = beta[cc] - mean_f * scale;
        const float* src = xd + base + ch * spatial;
        float* dst = yd + base + ch * spatial;
        if (fuse_silu) {
          for (int64_t i = 0; i < spatial; ++i) {
            float v = src[i] * scale + shift;
            dst[i] = v / (1.0f + std::exp(-v));
          }
        } else {
          for (int64_t i = 0; i < spatial; ++i) dst[i] = src[i] * scale + shift;
        }
      }
    }
  }
  return y;
}

Tensor layer_norm_scalar_baseline(const Tensor& x, const Tensor& gamma, const Tensor& beta, float eps) {
  int64_t d = x.dim(-1);
  int64_t rows = d ? x.numel() / d : 0;
  Tensor y = Tensor::empty(x.shape());
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = xd + r * d;
    float* dst = yd + r * d;
    double sum = 0;
    for (int64_t i = 0; i < d; ++i) sum += src[i];
    double mean = sum / static_cast<double>(d);
    double sq = 0;
    for (int64_t i = 0; i < d; ++i) sq += (src[i] - mean) * (src[i] - mean);
    float inv_std = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(d) + eps));
    float mean_f = static_cast<float>(mean);
    for (int64_t i = 0; i < d; ++i) dst[i] = (src[i] - mean_f) * inv_std * gamma[i] + beta[i];
  }
  return y;
}

Tensor geglu_scalar_baseline(const Tensor& x) {
  int64_t two_h = x.dim(-1);
  int64_t h = two_h / 2, rows = x.numel() / two_h;
  Shape out_shape = x.shape();
  out_shape.back() = h;
  Tensor y = Tensor::empty(out_shape);
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float* hidden = xd + r * two_h;
    const float* gate = hidden + h;
    for (int64_t i = 0; i < h; ++i) {
      float g = gate[i];
      yd[r * h + i] = hidden[i] * (0.5f * g * (1.0f + std::erf(g * 0.70710678118654752f)));
    }
  }
  return y;
}

void transpose_batched_scalar_baseline(const float* in, float* out, int64_t n, int64_t rows, int64_t cols) {
  constexpr int64_t kTile = 32;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
      const float* src = in + b * rows * cols;
      float* dst = out + b * rows * cols;
      for (int64_t c0 = 0; c0 < cols; c0 += kTile)
        for (int64_t r = r0; r < std::min(rows, r0 + kTile); ++r)
          for (int64_t c = c0; c < std::min(cols, c0 + kTile); ++c) dst[c * rows + r] = src[r * cols + c];
    }
  }
}

Tensor nchw_to_nlc_scalar_baseline(const Tensor& x) {
  int64_t n = x.dim(0), c = x.dim(1), hw = x.dim(2) * x.dim(3);
  Tensor y = Tensor::empty({n, hw, c});
  transpose_batched_scalar_baseline(x.data(), y.data(), n, c, hw);
  return y;
}

Tensor nlc_to_nchw_scalar_baseline(const Tensor& x, int64_t h, int64_t w) {
  int64_t n = x.dim(0), c = x.dim(2);
  Tensor y = Tensor::empty({n, c, h, w});
  transpose_batched_scalar_baseline(x.data(), y.data(), n, h * w, c);
  return y;
}

Tensor upsample_nearest2x_scalar_baseline(const Tensor& x) {
  int64_t planes = x.dim(0) * x.dim(1), h = x.dim(2), w = x.dim(3);
  Tensor y = Tensor::empty({x.dim(0), x.dim(1), 2 * h, 2 * w});
  const float* xd = x.data();
  float* yd = y.data();
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    for (int64_t i = 0; i < h; ++i) {
      const float* src = xd + (p * h + i) * w;
      float* dst = yd + (p * 2 * h + 2 * i) * 2 * w;
      for (int64_t j = 0; j < w; ++j) dst[2 * j] = dst[2 * j + 1] = src[j];
      std::memcpy(dst + 2 * w, dst, static_cast<size_t>(2 * w) * sizeof(float));
    }
  }
  return y;
}

// ---- Harness.

constexpr int64_t kMiB = 1 << 20;

// The same random tensor for every benchmark that asks for this shape (generated once: randn of
// 128 MB takes a while).
const Tensor& input(const Shape& shape) {
  static std::vector<std::pair<Shape, Tensor>> cache;
  for (const auto& [s, t] : cache)
    if (s == shape) return t;
  cache.emplace_back(shape, TorchCpuRng(7).randn(shape));
  return cache.back().second;
}

void report_bytes(benchmark::State& state, int64_t bytes) {
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = omp_get_max_threads();
}

int64_t bytes_of(const Shape& s) { return shape_numel(s) * static_cast<int64_t>(sizeof(float)); }

// 256 MB copied by one memcpy per thread: the bandwidth a streaming kernel can hope for.
void BM_Memcpy256MB(benchmark::State& state) {
  const int64_t bytes = 256 * kMiB;
  std::vector<char> src(static_cast<size_t>(bytes), 1), dst(static_cast<size_t>(bytes), 0);
  for (auto _ : state) {
#pragma omp parallel
    {
      int t = omp_get_thread_num(), nt = omp_get_num_threads();
      int64_t begin = bytes * t / nt, end = bytes * (t + 1) / nt;
      std::memcpy(dst.data() + begin, src.data() + begin, static_cast<size_t>(end - begin));
    }
    benchmark::DoNotOptimize(dst.data());
  }
  report_bytes(state, 2 * bytes);
}
BENCHMARK(BM_Memcpy256MB)->Unit(benchmark::kMillisecond)->UseRealTime();

// GroupNorm(32) + SiLU: 2x320x64x64 (UNet, 512x512, batch 2) and 1x128x512x512 (VAE decoder).
template <bool kBaseline>
void BM_GroupNormSilu(benchmark::State& state) {
  const Shape shape = state.range(0) == 0 ? Shape{2, 320, 64, 64} : Shape{1, 128, 512, 512};
  const Tensor& x = input(shape);
  const int64_t c = shape[1];
  Tensor gamma = Tensor::full({c}, 1.1f), beta = Tensor::full({c}, 0.1f);
  for (auto _ : state) {
    Tensor y = kBaseline ? group_norm_scalar_baseline(x, 32, gamma, beta, 1e-5f, true)
                         : group_norm(x, 32, gamma, beta, 1e-5f, true);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 2 * bytes_of(shape));
}
BENCHMARK(BM_GroupNormSilu<true>)
    ->Name("GroupNormSilu/old")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_GroupNormSilu<false>)
    ->Name("GroupNormSilu/new")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// GroupNorm(32) + SiLU on the VAE decoder's largest activation, NCHW against channels last (the
// layout the decoder keeps): the same bytes, walked pixel by pixel with channels as the vector.
template <bool kChannelsLast>
void BM_GroupNormSiluVae(benchmark::State& state) {
  const Shape shape{1, 128, 512, 512};
  const Tensor x = kChannelsLast ? nchw_to_nhwc(input(shape)) : input(shape);
  Tensor gamma = Tensor::full({128}, 1.1f), beta = Tensor::full({128}, 0.1f);
  for (auto _ : state) {
    Tensor y = kChannelsLast ? group_norm_channels_last(x, 32, gamma, beta, 1e-6f, true)
                             : group_norm(x, 32, gamma, beta, 1e-6f, true);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 2 * bytes_of(shape));
}
BENCHMARK(BM_GroupNormSiluVae<false>)
    ->Name("GroupNormSilu_1x128x512x512/nchw")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_GroupNormSiluVae<true>)
    ->Name("GroupNormSilu_1x128x512x512/channels_last")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// GroupNorm without the activation on the UNet shape: the statistics and normalise passes alone.
template <bool kBaseline>
void BM_GroupNorm(benchmark::State& state) {
  const Shape shape{2, 320, 64, 64};
  const Tensor& x = input(shape);
  Tensor gamma = Tensor::full({320}, 1.1f), beta = Tensor::full({320}, 0.1f);
  for (auto _ : state) {
    Tensor y = kBaseline ? group_norm_scalar_baseline(x, 32, gamma, beta, 1e-5f, false)
                         : group_norm(x, 32, gamma, beta, 1e-5f, false);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 2 * bytes_of(shape));
}
BENCHMARK(BM_GroupNorm<true>)->Name("GroupNorm_2x320x64x64/old")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_GroupNorm<false>)->Name("GroupNorm_2x320x64x64/new")->Unit(benchmark::kMillisecond)->UseRealTime();

// LayerNorm over 320 channels of 8192 tokens (2 x 64 x 64, the UNet's first transformer).
template <bool kBaseline>
void BM_LayerNorm(benchmark::State& state) {
  const Shape shape{8192, 320};
  const Tensor& x = input(shape);
  Tensor gamma = Tensor::full({320}, 1.1f), beta = Tensor::full({320}, 0.1f);
  for (auto _ : state) {
    Tensor y = kBaseline ? layer_norm_scalar_baseline(x, gamma, beta, 1e-5f) : layer_norm(x, gamma, beta, 1e-5f);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 2 * bytes_of(shape));
}
BENCHMARK(BM_LayerNorm<true>)->Name("LayerNorm_8192x320/old")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LayerNorm<false>)->Name("LayerNorm_8192x320/new")->Unit(benchmark::kMillisecond)->UseRealTime();

// GEGLU of the first transformer's feed-forward: [8192, 2 x 1280] -> [8192, 1280].
template <bool kBaseline>
void BM_Geglu(benchmark::State& state) {
  const Shape shape{8192, 2560};
  const Tensor& x = input(shape);
  for (auto _ : state) {
    Tensor y = kBaseline ? geglu_scalar_baseline(x) : geglu(x);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, bytes_of(shape) + bytes_of(shape) / 2);
}
BENCHMARK(BM_Geglu<true>)->Name("Geglu_8192x2560/old")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Geglu<false>)->Name("Geglu_8192x2560/new")->Unit(benchmark::kMillisecond)->UseRealTime();

template <bool kBaseline>
void BM_NchwToNlc(benchmark::State& state) {
  const Shape shape{2, 320, 64, 64};
  const Tensor& x = input(shape);
  for (auto _ : state) {
    Tensor y = kBaseline ? nchw_to_nlc_scalar_baseline(x) : nchw_to_nlc(x);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 2 * bytes_of(shape));
}
BENCHMARK(BM_NchwToNlc<true>)->Name("NchwToNlc_2x320x64x64/old")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_NchwToNlc<false>)->Name("NchwToNlc_2x320x64x64/new")->Unit(benchmark::kMillisecond)->UseRealTime();

// The way back (attention output -> image), same shape.
template <bool kBaseline>
void BM_NlcToNchw(benchmark::State& state) {
  const Shape shape{2, 4096, 320};
  const Tensor& x = input(shape);
  for (auto _ : state) {
    Tensor y = kBaseline ? nlc_to_nchw_scalar_baseline(x, 64, 64) : nlc_to_nchw(x, 64, 64);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 2 * bytes_of(shape));
}
BENCHMARK(BM_NlcToNchw<true>)->Name("NlcToNchw_2x4096x320/old")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_NlcToNchw<false>)->Name("NlcToNchw_2x4096x320/new")->Unit(benchmark::kMillisecond)->UseRealTime();

// The VAE decoder's 256 x 256 -> 512 x 512 upsampling of 256 channels.
template <bool kBaseline>
void BM_Upsample(benchmark::State& state) {
  const Shape shape{1, 256, 256, 256};
  const Tensor& x = input(shape);
  for (auto _ : state) {
    Tensor y = kBaseline ? upsample_nearest2x_scalar_baseline(x) : upsample_nearest2x(x);
    benchmark::DoNotOptimize(y.data());
  }
  report_bytes(state, 5 * bytes_of(shape));
}
BENCHMARK(BM_Upsample<true>)->Name("Upsample2x_1x256x256x256/old")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Upsample<false>)->Name("Upsample2x_1x256x256x256/new")->Unit(benchmark::kMillisecond)->UseRealTime();

// In-place SiLU and residual add on the UNet's 2x320x64x64 activations (new only: the old loops
// were the same scalar code as the GroupNorm epilogue and a plain add). SiLU runs on 20 + N(0, 1),
// nearly a fixed point, so hundreds of repeated applications do not decay into subnormals; the
// vector code has no data-dependent branches, so the values do not change its speed.
void BM_SiluInplace(benchmark::State& state) {
  Tensor x = input({2, 320, 64, 64}).clone();
  for (int64_t i = 0; i < x.numel(); ++i) x[i] += 20.0f;
  for (auto _ : state) {
    apply_activation(x, Activation::SiLU);
    benchmark::DoNotOptimize(x.data());
  }
  report_bytes(state, 2 * x.numel() * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_SiluInplace)->Name("Silu_2x320x64x64/new")->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_AddInplace(benchmark::State& state) {
  Tensor x = input({2, 320, 64, 64}).clone();
  const Tensor& y = input({2, 320, 64, 64});
  for (auto _ : state) {
    add_inplace(x, y);
    benchmark::DoNotOptimize(x.data());
  }
  report_bytes(state, 3 * x.numel() * static_cast<int64_t>(sizeof(float)));
}
BENCHMARK(BM_AddInplace)->Name("Add_2x320x64x64/new")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace sdrt::kernels
