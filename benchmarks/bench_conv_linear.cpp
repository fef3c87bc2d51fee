// Convolution and linear layers on SD 1.5's shapes at 512x512: the unpacked kernels (conv2d: a
// oneDNN convolution created on every call on plain NCHW/OIHW, which oneDNN runs as im2col + GEMM;
// linear: dnnl_sgemm on the unpacked weights) against the packed ones (PackedConv2d, PackedLinear:
// weights packed once, cached primitives, activations reordered to oneDNN's layout where that pays),
// and the packed ones on channels-last activations (no reorders), as the VAE uses them.
//
// Run with --benchmark_repetitions=5 --benchmark_report_aggregates_only=true and compare medians;
// "old" and "packed" of one shape run back to back, so that on a shared machine both see the same
// load. GFLOP/s counts 2 x MACs, the MACs the kernels count for sdrt bench.
#include <benchmark/benchmark.h>

#include <initializer_list>
#include <string>
#include <vector>

#include "core/rng.h"
#include "kernels/kernels.h"
#include "kernels/packed_conv2d.h"
#include "kernels/packed_linear.h"

namespace sdrt::kernels {
namespace {

struct ConvCase {
  const char* name;
  int64_t batch, in, out, size;  // x [batch, in, size, size]
  int kernel;
};

// UNet (a guided step: 2 rows) and VAE decoder (1 image) convolutions at 512x512.
const ConvCase kConvCases[] = {
    {"unet_conv_in_4to320_64x64", 2, 4, 320, 64, 3},
    {"unet_320_64x64", 2, 320, 320, 64, 3},
    {"unet_640_32x32", 2, 640, 640, 32, 3},
    {"unet_1280_16x16", 2, 1280, 1280, 16, 3},
    {"unet_1280_8x8", 2, 1280, 1280, 8, 3},
    {"unet_shortcut_1x1_640to1280_32x32", 2, 640, 1280, 32, 1},
    {"vae_512_64x64", 1, 512, 512, 64, 3},
    {"vae_512_128x128", 1, 512, 512, 128, 3},
    {"vae_256_256x256", 1, 256, 256, 256, 3},
    {"vae_128_512x512", 1, 128, 128, 512, 3},
    {"vae_conv_out_128to3_512x512", 1, 128, 3, 512, 3},
};

struct LinearCase {
  const char* name;
  int64_t rows, in, out;
};

const LinearCase kLinearCases[] = {
    {"unet_proj_320to320_M8192", 2 * 4096, 320, 320},
    {"unet_geglu_320to2560_M8192", 2 * 4096, 320, 2560},
    {"unet_ff_out_1280to320_M8192", 2 * 4096, 1280, 320},
    {"unet_proj_640to640_M2048", 2 * 1024, 640, 640},
    {"unet_cross_kv_768to320_M154", 2 * 77, 768, 320},
    {"unet_time_emb_1280to1280_M2", 2, 1280, 1280},
};

double conv_macs(const ConvCase& c) {
  return static_cast<double>(c.batch) * c.out * c.size * c.size * c.in * c.kernel * c.kernel;
}

void report(benchmark::State& state, double macs, size_t weight_bytes) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * macs * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["weight_MB"] = static_cast<double>(weight_bytes) / (1 << 20);
}

struct ConvInputs {
  Tensor x, weight, bias;
  Conv2dParams params;
};

ConvInputs conv_inputs(const ConvCase& c) {
  return {TorchCpuRng(1).randn({c.batch, c.in, c.size, c.size}), TorchCpuRng(2).randn({c.out, c.in, c.kernel, c.kernel}),
          TorchCpuRng(3).randn({c.out}), Conv2dParams::symmetric(1, c.kernel / 2)};
}

void conv_old(benchmark::State& state, const ConvCase& c) {
  ConvInputs in = conv_inputs(c);
  for (auto _ : state) benchmark::DoNotOptimize(conv2d(in.x, in.weight, in.bias, in.params));
  report(state, conv_macs(c), in.weight.numel() * sizeof(float));
}

void conv_packed_at(benchmark::State& state, const ConvCase& c, Precision precision) {
  ConvInputs in = conv_inputs(c);
  PackedConv2d conv(in.weight, in.bias, in.params, precision);
  for (auto _ : state) benchmark::DoNotOptimize(conv(in.x));
  report(state, conv_macs(c), conv.weight_bytes());
}
void conv_packed(benchmark::State& state, const ConvCase& c) { conv_packed_at(state, c, Precision::f32); }
void conv_packed_bf16(benchmark::State& state, const ConvCase& c) { conv_packed_at(state, c, Precision::bf16); }

// Channels-last activations in and out (PackedConv2d::channels_last), as the VAE runs them: no
// reorder on either side (in bf16, the input's conversion remains).
void conv_channels_last_at(benchmark::State& state, const ConvCase& c, Precision precision) {
  ConvInputs in = conv_inputs(c);
  PackedConv2d conv(in.weight, in.bias, in.params, precision);
  const Tensor x = nchw_to_nhwc(in.x);
  for (auto _ : state) benchmark::DoNotOptimize(conv.channels_last(x));
  report(state, conv_macs(c), conv.weight_bytes());
}
void conv_channels_last(benchmark::State& state, const ConvCase& c) {
  conv_channels_last_at(state, c, Precision::f32);
}
void conv_channels_last_bf16(benchmark::State& state, const ConvCase& c) {
  conv_channels_last_at(state, c, Precision::bf16);
}

// The residual add a ResnetBlock2D does after its conv_shortcut: h += conv(x).
void conv_add_old(benchmark::State& state, const ConvCase& c) {
  ConvInputs in = conv_inputs(c);
  Tensor h = TorchCpuRng(4).randn({c.batch, c.out, c.size, c.size});
  for (auto _ : state) add_inplace(h, conv2d(in.x, in.weight, in.bias, in.params));
  report(state, conv_macs(c), in.weight.numel() * sizeof(float));
}

void conv_add_packed(benchmark::State& state, const ConvCase& c) {
  ConvInputs in = conv_inputs(c);
  PackedConv2d conv(in.weight, in.bias, in.params);
  Tensor h = TorchCpuRng(4).randn({c.batch, c.out, c.size, c.size});
  for (auto _ : state) conv.accumulate(in.x, h);
  report(state, conv_macs(c), conv.weight_bytes());
}

struct LinearInputs {
  Tensor x, weight, bias;
};

LinearInputs linear_inputs(const LinearCase& c) {
  return {TorchCpuRng(1).randn({c.rows, c.in}), TorchCpuRng(2).randn({c.out, c.in}), TorchCpuRng(3).randn({c.out})};
}

double linear_macs(const LinearCase& c) { return static_cast<double>(c.rows) * c.in * c.out; }

void linear_old(benchmark::State& state, const LinearCase& c) {
  LinearInputs in = linear_inputs(c);
  for (auto _ : state) benchmark::DoNotOptimize(linear(in.x, in.weight, in.bias));
  report(state, linear_macs(c), in.weight.numel() * sizeof(float));
}

void linear_packed_at(benchmark::State& state, const LinearCase& c, Precision precision) {
  LinearInputs in = linear_inputs(c);
  PackedLinear packed(in.weight, in.bias, precision);
  for (auto _ : state) benchmark::DoNotOptimize(packed(in.x));
  report(state, linear_macs(c), packed.weight_bytes());
}
void linear_packed(benchmark::State& state, const LinearCase& c) { linear_packed_at(state, c, Precision::f32); }
void linear_packed_bf16(benchmark::State& state, const LinearCase& c) { linear_packed_at(state, c, Precision::bf16); }

// The residual add of a transformer block's feed-forward output: x += ff_out(h).
void linear_add_old(benchmark::State& state, const LinearCase& c) {
  LinearInputs in = linear_inputs(c);
  Tensor acc = TorchCpuRng(4).randn({c.rows, c.out});
  for (auto _ : state) add_inplace(acc, linear(in.x, in.weight, in.bias));
  report(state, linear_macs(c), in.weight.numel() * sizeof(float));
}

void linear_add_packed(benchmark::State& state, const LinearCase& c) {
  LinearInputs in = linear_inputs(c);
  PackedLinear packed(in.weight, in.bias);
  Tensor acc = TorchCpuRng(4).randn({c.rows, c.out});
  for (auto _ : state) packed.accumulate(in.x, acc);
  report(state, linear_macs(c), packed.weight_bytes());
}

template <typename Case>
using CaseFn = void (*)(benchmark::State&, const Case&);

// The variants of one case, named prefix/case/variant so that they sort side by side.
template <typename Case>
void register_variants(const std::string& prefix, const Case& c,
                       std::initializer_list<std::pair<const char*, CaseFn<Case>>> variants) {
  for (auto [variant, fn] : variants)
    benchmark::RegisterBenchmark((prefix + "/" + c.name + "/" + variant).c_str(),
                                 [fn, &c](benchmark::State& state) { fn(state, c); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
}

bool register_all() {
  for (const auto& c : kConvCases)
    register_variants<ConvCase>("conv", c,
                                {{"old", conv_old},
                                 {"packed", conv_packed},
                                 {"packed_bf16", conv_packed_bf16},
                                 {"channels_last", conv_channels_last},
                                 {"channels_last_bf16", conv_channels_last_bf16}});
  // The 1x1 conv_shortcut.
  register_variants<ConvCase>("conv_add", kConvCases[5], {{"old", conv_add_old}, {"packed", conv_add_packed}});
  for (const auto& c : kLinearCases)
    register_variants<LinearCase>(
        "linear", c, {{"old", linear_old}, {"packed", linear_packed}, {"packed_bf16", linear_packed_bf16}});
  // The feed-forward output plus the residual.
  register_variants<LinearCase>("linear_add", kLinearCases[2],
                                {{"old", linear_add_old}, {"packed", linear_add_packed}});
  return true;
}

[[maybe_unused]] const bool registered = register_all();

}  // namespace
}  // namespace sdrt::kernels
