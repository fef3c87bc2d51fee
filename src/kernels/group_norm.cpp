// GroupNorm (+ fused SiLU) at memory speed.
//
// Statistics: one read pass per group accumulating sum and sum of squares of d = x - pivot, where
// the pivot is the mean of the first vector of each channel of the group. Shifting by a value
// close to the mean is what makes the one-pass formula var = E[d^2] - E[d]^2 safe: with d centred
// to within a fraction of a standard deviation, the subtraction cancels almost nothing (for
// x = 1000 + N(0,1) an unshifted E[x^2] - E[x]^2 would cancel 6 of float's 7 digits). Each float
// lane adds at most 16 terms before its partial sums are widened into double accumulators, so the
// float rounding stays ~1e-7 relative per block, and blocks, threads and chunks add in double.
// Welford was the alternative; it needs a division per update and gains nothing once the data is
// centred.
//
// Work split: whole groups per thread when there are enough of them (always in the SD models),
// otherwise groups split into slices with a reduction of partial sums; see GroupNormRun.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/simd_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

using simd::Vec;
using simd_math::kLanes;

// Sum of d and of d^2 for d = x - pivot, over a contiguous piece of one group.
struct ShiftedMoments {
  double sum = 0, sum_sq = 0;
};

// The floats one thread processes per wave: both passes over them hit its own 1 MiB L2.
constexpr int64_t kWaveFloatsPerThread = 128 * 1024;
// Each float lane sums this many d (and d^2) before widening to double: 4 accumulator pairs, each
// receiving 4 vectors per block.
constexpr int64_t kBlockVectors = 16;

ShiftedMoments shifted_moments(const float* x, int64_t len, float pivot) {
  const Vec k = simd::broadcast(pivot);
  simd_math::DoubleSums sum, sum_sq;
  int64_t i = 0;
  for (; i + kBlockVectors * kLanes <= len; i += kBlockVectors * kLanes) {
    Vec s[4] = {simd::zero(), simd::zero(), simd::zero(), simd::zero()};
    Vec q[4] = {simd::zero(), simd::zero(), simd::zero(), simd::zero()};
    for (int64_t v = 0; v < kBlockVectors; v += 4) {
      for (int a = 0; a < 4; ++a) {
        Vec d = simd::sub(simd::load(x + i + (v + a) * kLanes), k);
        s[a] = simd::add(s[a], d);
        q[a] = simd::fma(d, d, q[a]);
      }
    }
    sum.add(simd::add(simd::add(s[0], s[1]), simd::add(s[2], s[3])));
    sum_sq.add(simd::add(simd::add(q[0], q[1]), simd::add(q[2], q[3])));
  }
  // Fewer than kBlockVectors vectors remain.
  Vec s = simd::zero(), q = simd::zero();
  for (; i + kLanes <= len; i += kLanes) {
    Vec d = simd::sub(simd::load(x + i), k);
    s = simd::add(s, d);
    q = simd::fma(d, d, q);
  }
  if (i < len) {
    int tail = static_cast<int>(len - i);
    // The lanes past the end load as 0; subtract the pivot only where there is data.
    Vec d = simd::sub(simd::load_leading(x + i, tail), simd::fill_leading_lanes(simd::zero(), tail, pivot));
    s = simd::add(s, d);
    q = simd::fma(d, d, q);
  }
  sum.add(s);
  sum_sq.add(q);
  return {sum.total(), sum_sq.total()};
}

// y = (x - pivot) * scale + shift, optionally followed by SiLU, over one channel's piece.
template <bool kSilu>
void normalise(const float* x, float* y, int64_t len, float pivot, float scale, float shift) {
  const Vec k = simd::broadcast(pivot), a = simd::broadcast(scale), b = simd::broadcast(shift);
  simd_math::map_vectors(x, y, len, [&](Vec v) {
    Vec out = simd::fma(simd::sub(v, k), a, b);
    return kSilu ? simd_math::silu(out) : out;
  });
}

// What normalising one group needs: y = (x - pivot - mean_d) * inv_std * gamma + beta.
struct GroupStats {
  float pivot = 0;
  double mean_d = 0;  // mean of x - pivot
  double inv_std = 0;  // 1 / sqrt(var + eps)
};

// A group's statistics from the shifted moments of its `count` values.
GroupStats group_stats(ShiftedMoments m, double count, float pivot, float eps) {
  const double mean_d = m.sum / count;
  const double var = std::max(0.0, m.sum_sq / count - mean_d * mean_d);
  return {pivot, mean_d, 1.0 / std::sqrt(var + static_cast<double>(eps))};
}

class GroupNormRun {
 public:
  GroupNormRun(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, bool fuse_silu,
               Tensor& y)
      : x_(x.data()), y_(y.data()), gamma_(gamma.data()), beta_(beta.data()), eps_(eps), fuse_silu_(fuse_silu),
        channels_(x.dim(1)), spatial_(x.numel() / (x.dim(0) * x.dim(1))), per_group_(channels_ / groups),
        group_len_(per_group_ * spatial_), total_groups_(x.dim(0) * groups) {}

  void run() {
    if (total_groups_ >= kMinGroupsPerThread * omp_get_max_threads())
      run_whole_groups();
    else
      run_split_groups();
  }

 private:
  // With at least this many groups per thread, whole groups are the work items: they balance well
  // under dynamic scheduling and need no synchronisation. The normalise pass re-reads a group right
  // after the statistics pass read it: from L2 for the UNet's groups (at most 160 KB at 512x512),
  // from L3 for the VAE decoder's (4 MB).
  static constexpr int64_t kMinGroupsPerThread = 4;

  bool parallel() const { return total_groups_ * group_len_ >= simd_math::kMinParallelFloats; }

  void run_whole_groups() const {
#pragma omp parallel for schedule(dynamic, 1) if (parallel())
    for (int64_t g = 0; g < total_groups_; ++g) {
      const float pivot = group_pivot(g);
      const GroupStats stats = finish(shifted_moments(x_ + g * group_len_, group_len_, pivot), pivot);
      normalise_range({g * group_len_, (g + 1) * group_len_}, [&](int64_t) { return stats; });
    }
  }

  // Few, large groups (batch 1 with few groups, or many threads): groups are processed in waves
  // of about one L2 per thread, and each wave is cut into equal contiguous slices, one per thread,
  // regardless of group boundaries. A thread accumulates per-group partial sums for its slice, all
  // meet at one barrier, then each combines the partials of the groups its slice touches and
  // normalises the same slice, which is still in its cache.
  void run_split_groups() {
    const int max_threads = omp_get_max_threads();
    const int64_t groups_per_wave =
        std::min(total_groups_, std::max<int64_t>(1, kWaveFloatsPerThread * max_threads / group_len_));
    std::vector<ShiftedMoments> partials[2];
    for (auto& p : partials) p.assign(static_cast<size_t>(max_threads * groups_per_wave), {});
#pragma omp parallel if (parallel())
    {
      const int thread = omp_get_thread_num(), threads = omp_get_num_threads();
      for (int64_t first = 0, wave = 0; first < total_groups_; first += groups_per_wave, ++wave) {
        const int64_t last = std::min(total_groups_, first + groups_per_wave);
        const simd_math::Range mine = simd_math::slice_of(first * group_len_, last * group_len_, thread, threads);
        const std::vector<ShiftedMoments>& buffer = partials[wave % 2];
        ShiftedMoments* my_partials = &partials[wave % 2][static_cast<size_t>(thread * groups_per_wave)];
        std::fill(my_partials, my_partials + groups_per_wave, ShiftedMoments{});
        for_each_group_piece(mine, [&](int64_t g, int64_t begin, int64_t end) {
          my_partials[g - first] = shifted_moments(x_ + begin, end - begin, group_pivot(g));
        });
        // Partials are double-buffered by wave parity: a thread that runs ahead into the next wave
        // writes the other buffer, and cannot get two waves ahead without passing this barrier.
#pragma omp barrier
        GroupStats stats;
        int64_t stats_group = -1;
        normalise_range(mine, [&](int64_t g) {
          if (g != stats_group) {
            // Every thread adds the partials in thread order, so a group shared by two slices gets
            // bit-identical statistics in both.
            ShiftedMoments m;
            for (int t = 0; t < threads; ++t) {
              const ShiftedMoments& p = buffer[static_cast<size_t>(t * groups_per_wave + g - first)];
              m.sum += p.sum;
              m.sum_sq += p.sum_sq;
            }
            stats = finish(m, group_pivot(g));
            stats_group = g;
          }
          return stats;
        });
      }
    }
  }

  // Mean of the first (up to) kLanes values of each channel of group g. Every thread that touches
  // the group computes it itself, from the same values in the same order, so all agree exactly.
  float group_pivot(int64_t g) const {
    const int64_t head = std::min<int64_t>(spatial_, kLanes);
    double s = 0;
    for (int64_t ch = 0; ch < per_group_; ++ch) {
      const float* p = x_ + g * group_len_ + ch * spatial_;
      for (int64_t i = 0; i < head; ++i) s += p[i];
    }
    return static_cast<float>(s / static_cast<double>(per_group_ * head));
  }

  GroupStats finish(ShiftedMoments m, float pivot) const {
    return group_stats(m, static_cast<double>(group_len_), pivot, eps_);
  }

  // f(group, begin, end) for the pieces of [r.begin, r.end) that lie in one group each.
  template <typename F>
  void for_each_group_piece(simd_math::Range r, F f) const {
    for (int64_t i = r.begin; i < r.end;) {
      const int64_t g = i / group_len_, end = std::min(r.end, (g + 1) * group_len_);
      f(g, i, end);
      i = end;
    }
  }

  // Normalises the floats [r.begin, r.end), channel piece by channel piece, with the statistics
  // stats_of(group) returns.
  template <typename StatsOf>
  void normalise_range(simd_math::Range r, StatsOf stats_of) const {
    for (int64_t i = r.begin; i < r.end;) {
      const int64_t plane = i / spatial_, end = std::min(r.end, (plane + 1) * spatial_);
      const int64_t channel = plane % channels_;
      const GroupStats s = stats_of(i / group_len_);
      const double scale = s.inv_std * gamma_[channel];
      const auto shift = static_cast<float>(beta_[channel] - s.mean_d * scale);
      if (fuse_silu_)
        normalise<true>(x_ + i, y_ + i, end - i, s.pivot, static_cast<float>(scale), shift);
      else
        normalise<false>(x_ + i, y_ + i, end - i, s.pivot, static_cast<float>(scale), shift);
      i = end;
    }
  }

  const float* x_;
  float* y_;
  const float *gamma_, *beta_;
  float eps_;
  bool fuse_silu_;
  int64_t channels_, spatial_, per_group_, group_len_, total_groups_;
};

// Channels-last GroupNorm, x [N, H, W, C]: a group is a run of C/G adjacent floats in every pixel,
// so both passes walk pixels with the channels as the vector dimension. Threads take contiguous
// slices of an image's pixels; each accumulates per-channel shifted sums (float vectors over
// blocks of kBlockPixels pixels, then widened to double), and after one barrier the per-channel
// sums are folded into groups. The same pivot rule as above keeps the one-pass variance safe.
class ChannelsLastGroupNormRun {
 public:
  ChannelsLastGroupNormRun(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                           bool fuse_silu, Tensor& y)
      : x_(x.data()), y_(y.data()), gamma_(gamma.data()), beta_(beta.data()), eps_(eps), fuse_silu_(fuse_silu),
        groups_(groups), channels_(x.dim(3)), pixels_(x.dim(1) * x.dim(2)), per_group_(channels_ / groups) {}

  void run(int64_t images) {
    for (int64_t n = 0; n < images; ++n) run_image(x_ + n * pixels_ * channels_, y_ + n * pixels_ * channels_);
  }

 private:
  // Float partial sums cover this many pixels before they are added to the double sums.
  static constexpr int64_t kBlockPixels = 32;

  void run_image(const float* x, float* y) {
    const std::vector<float> pivot = channel_pivots(x);
    const int max_threads = omp_get_max_threads();
    std::vector<double> partials(static_cast<size_t>(max_threads) * 2 * channels_, 0.0);
    std::vector<float> scale(padded_channels()), shift(padded_channels());
#pragma omp parallel if (pixels_ * channels_ >= simd_math::kMinParallelFloats)
    {
      const int thread = omp_get_thread_num(), threads = omp_get_num_threads();
      const simd_math::Range mine = simd_math::slice_of(0, pixels_, thread, threads);
      double* sums = &partials[static_cast<size_t>(thread) * 2 * channels_];
      accumulate(x, mine, pivot.data(), sums, sums + channels_);
#pragma omp barrier
#pragma omp single
      fold_into_scale_and_shift(partials, threads, scale, shift);
      if (fuse_silu_)
        normalise_pixels<true>(x, y, mine, pivot.data(), scale.data(), shift.data());
      else
        normalise_pixels<false>(x, y, mine, pivot.data(), scale.data(), shift.data());
    }
  }

  // Per-channel vectors are padded to whole SIMD vectors, so the last partial one loads in full.
  size_t padded_channels() const { return static_cast<size_t>((channels_ + kLanes - 1) / kLanes * kLanes); }

  // Each channel's pivot is its group's mean over the first (up to) kLanes pixels.
  std::vector<float> channel_pivots(const float* x) const {
    const int64_t head = std::min<int64_t>(pixels_, kLanes);
    std::vector<float> pivot(padded_channels());
    for (int g = 0; g < groups_; ++g) {
      double s = 0;
      for (int64_t p = 0; p < head; ++p)
        for (int64_t c = g * per_group_; c < (g + 1) * per_group_; ++c) s += x[p * channels_ + c];
      const auto mean = static_cast<float>(s / static_cast<double>(head * per_group_));
      std::fill(pivot.begin() + g * per_group_, pivot.begin() + (g + 1) * per_group_, mean);
    }
    return pivot;
  }

  void accumulate(const float* x, simd_math::Range pixels, const float* pivot, double* sum, double* sum_sq) const {
    const int64_t full = channels_ / kLanes * kLanes;
    for (int64_t p0 = pixels.begin; p0 < pixels.end; p0 += kBlockPixels) {
      const int64_t p1 = std::min(pixels.end, p0 + kBlockPixels);
      for (int64_t c = 0; c < full; c += kLanes) {
        const Vec k = simd::load(pivot + c);
        Vec s = simd::zero(), q = simd::zero();
        for (int64_t p = p0; p < p1; ++p) {
          Vec d = simd::sub(simd::load(x + p * channels_ + c), k);
          s = simd::add(s, d);
          q = simd::fma(d, d, q);
        }
        simd_math::add_lanes_to(sum + c, s);
        simd_math::add_lanes_to(sum_sq + c, q);
      }
      // The last channels when C is not a multiple of a vector.
      for (int64_t p = p0; p < p1 && full < channels_; ++p) {
        for (int64_t c = full; c < channels_; ++c) {
          const double d = static_cast<double>(x[p * channels_ + c]) - pivot[c];
          sum[c] += d;
          sum_sq[c] += d * d;
        }
      }
    }
  }

  // Adds the threads' partial sums in thread order and turns each group's moments into the
  // per-channel y = (x - pivot) * scale + shift.
  void fold_into_scale_and_shift(const std::vector<double>& partials, int threads, std::vector<float>& scale,
                                 std::vector<float>& shift) const {
    const auto count = static_cast<double>(pixels_ * per_group_);
    for (int g = 0; g < groups_; ++g) {
      ShiftedMoments m;
      for (int t = 0; t < threads; ++t) {
        const double* p = &partials[static_cast<size_t>(t) * 2 * channels_];
        for (int64_t c = g * per_group_; c < (g + 1) * per_group_; ++c) {
          m.sum += p[c];
          m.sum_sq += p[channels_ + c];
        }
      }
      // The pivot is folded into the per-channel pivots the normalise pass subtracts.
      const GroupStats s = group_stats(m, count, 0.0f, eps_);
      for (int64_t c = g * per_group_; c < (g + 1) * per_group_; ++c) {
        const double a = s.inv_std * gamma_[c];
        scale[c] = static_cast<float>(a);
        shift[c] = static_cast<float>(beta_[c] - s.mean_d * a);
      }
    }
  }

  template <bool kSilu>
  void normalise_pixels(const float* x, float* y, simd_math::Range pixels, const float* pivot, const float* scale,
                        const float* shift) const {
    const int64_t full = channels_ / kLanes * kLanes;
    const int tail = static_cast<int>(channels_ - full);
    auto normalised = [&](Vec v, int64_t c) {
      Vec out = simd::fma(simd::sub(v, simd::load(pivot + c)), simd::load(scale + c), simd::load(shift + c));
      return kSilu ? simd_math::silu(out) : out;
    };
    for (int64_t p = pixels.begin; p < pixels.end; ++p) {
      const float* in = x + p * channels_;
      float* out = y + p * channels_;
      for (int64_t c = 0; c < full; c += kLanes) simd::store(out + c, normalised(simd::load(in + c), c));
      if (tail) simd::store_leading(out + full, normalised(simd::load_leading(in + full, tail), full), tail);
    }
  }

  const float* x_;
  float* y_;
  const float *gamma_, *beta_;
  float eps_;
  bool fuse_silu_;
  int groups_;
  int64_t channels_, pixels_, per_group_;
};

}  // namespace

Tensor group_norm(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps, bool fuse_silu) {
  SDRT_CHECK(x.rank() >= 2, "group_norm: input must be [N, C, ...], got ", shape_str(x.shape()));
  int64_t c = x.dim(1);
  SDRT_CHECK(groups > 0 && c % groups == 0, "group_norm: ", c, " channels do not split into ", groups, " groups");
  SDRT_CHECK(gamma.numel() == c && beta.numel() == c, "group_norm: affine parameters ", shape_str(gamma.shape()),
             "/", shape_str(beta.shape()), " do not match ", c, " channels");
  Tensor y = Tensor::empty(x.shape());
  if (x.numel() == 0) return y;
  GroupNormRun(x, groups, gamma, beta, eps, fuse_silu, y).run();
  return y;
}

Tensor group_norm_channels_last(const Tensor& x, int groups, const Tensor& gamma, const Tensor& beta, float eps,
                                bool fuse_silu) {
  SDRT_CHECK(x.rank() == 4, "group_norm_channels_last: input must be [N, H, W, C], got ", shape_str(x.shape()));
  int64_t c = x.dim(3);
  SDRT_CHECK(groups > 0 && c % groups == 0, "group_norm_channels_last: ", c, " channels do not split into ", groups,
             " groups");
  SDRT_CHECK(gamma.numel() == c && beta.numel() == c, "group_norm_channels_last: affine parameters ",
             shape_str(gamma.shape()), "/", shape_str(beta.shape()), " do not match ", c, " channels");
  Tensor y = Tensor::empty(x.shape());
  if (x.numel() == 0) return y;
  ChannelsLastGroupNormRun(x, groups, gamma, beta, eps, fuse_silu, y).run(x.dim(0));
  return y;
}

}  // namespace sdrt::kernels::SDRT_ISA_NS
