#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/op_counter.h"

namespace sdrt::kernels {

namespace {

struct AttnShape {
  int64_t batch, lq, lk, channels, head_dim;
};

AttnShape check_attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads) {
  SDRT_CHECK(q.rank() == 3 && k.rank() == 3 && v.rank() == 3, "attention: q/k/v must be [B, L, C]");
  SDRT_CHECK(k.shape() == v.shape() && q.dim(0) == k.dim(0) && q.dim(2) == k.dim(2), "attention: q ",
             shape_str(q.shape()), ", k ", shape_str(k.shape()), ", v ", shape_str(v.shape()), " disagree");
  SDRT_CHECK(heads > 0 && q.dim(2) % heads == 0, "attention: ", q.dim(2), " channels do not split into ", heads,
             " heads");
  return {q.dim(0), q.dim(1), k.dim(1), q.dim(2), q.dim(2) / heads};
}

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

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  count_attention_macs(q, k);
  AttnShape s = check_attention(q, k, v, heads);
  Tensor out = Tensor::empty(q.shape());
  // Query rows are processed in blocks so the score matrix never exceeds block x Lk floats:
  // at 64x64 latents a full 4096 x 4096 score matrix per head would be 64 MB.
  constexpr int64_t kBlock = 128;
  int64_t blocks = (s.lq + kBlock - 1) / kBlock;
  int64_t tasks = s.batch * heads * blocks;
#pragma omp parallel
  {
    std::vector<float> scores(static_cast<size_t>(kBlock * s.lk));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      int64_t b = t / (heads * blocks), h = (t / blocks) % heads, blk = t % blocks;
      int64_t q0 = blk * kBlock, rows = std::min(kBlock, s.lq - q0);
      const float* qp = q.data() + (b * s.lq + q0) * s.channels + h * s.head_dim;
      const float* kp = k.data() + b * s.lk * s.channels + h * s.head_dim;
      const float* vp = v.data() + b * s.lk * s.channels + h * s.head_dim;
      float* op = out.data() + (b * s.lq + q0) * s.channels + h * s.head_dim;
      gemm(false, true, rows, s.lk, s.head_dim, scale, qp, s.channels, kp, s.channels, 0.0f, scores.data(), s.lk);
      softmax_rows(scores.data(), rows, s.lk, q0, causal);
      gemm(false, false, rows, s.head_dim, s.lk, 1.0f, scores.data(), s.lk, vp, s.channels, 0.0f, op, s.channels);
    }
  }
  return out;
}

Tensor attention_reference(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal) {
  AttnShape s = check_attention(q, k, v, heads);
  Tensor out = Tensor::empty(q.shape());
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t i = 0; i < s.lq; ++i) {
        std::vector<double> p(static_cast<size_t>(s.lk));
        double mx = -INFINITY;
        for (int64_t j = 0; j < s.lk; ++j) {
          if (causal && j > i) continue;
          double dot = 0;
          for (int64_t d = 0; d < s.head_dim; ++d)
            dot += static_cast<double>(q[(b * s.lq + i) * s.channels + h * s.head_dim + d]) *
                   k[(b * s.lk + j) * s.channels + h * s.head_dim + d];
          p[j] = dot * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < s.lk; ++j) {
          p[j] = (causal && j > i) ? 0.0 : std::exp(p[j] - mx);
          sum += p[j];
        }
        for (int64_t d = 0; d < s.head_dim; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < s.lk; ++j) acc += p[j] * v[(b * s.lk + j) * s.channels + h * s.head_dim + d];
          out[(b * s.lq + i) * s.channels + h * s.head_dim + d] = static_cast<float>(acc / sum);
        }
      }
    }
  }
  return out;
}

}  // namespace sdrt::kernels
