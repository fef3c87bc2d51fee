// Fused ("flash") attention. For each (batch, head, block of queries) the keys are visited in
// blocks; each block's scores become probabilities against a running per-query maximum (online
// softmax) and go straight into the output accumulator, which is rescaled whenever the maximum
// grows. No more than one query block x one key block of scores ever exists: the memory per thread
// is O(block^2) plus one head's packed keys (Lk x head_dim), and the work per query is linear in Lk.
//
// The score tile is kept transposed, keys x queries, with the queries along the vector lanes.
// The softmax reductions over keys (maximum, sum) are then lane-wise max/add down the tile instead
// of horizontal reductions, and both products are "broadcast one scalar, multiply-add a vector of
// queries" micro-kernels that keep all their accumulators in registers:
//   scores^T[j][i] = sum_c K[j][c] * (scale Q)^T[c][i]
//   out^T[c][i]   += sum_j V[j][c] * P^T[j][i]
// Each thread repacks the K of the head it is working on (pack_keys), each task its queries; V is
// read in place. A task is a few query blocks of one head, which take turns on every key block.
//
// Written against simd::Vec (vector_math.h) and compiled once per ISA tier: AVX-512 or AVX2
// registers, or plain per-lane loops, with the same arithmetic; the blocking follows the tier's
// register file.
//
// In bf16 both products run on bf16 pairs (simd::PairVec, one vdpbf16ps per two multiply-adds):
// queries and keys are packed with channels in pairs, values and the probability tile with keys
// in pairs. Scores, the softmax and the output accumulators stay float.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/dry_run.h"
#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "kernels/kernels.h"
#include "kernels/op_counter.h"
#include "kernels/vector_math.h"

namespace sdrt::kernels::SDRT_ISA_NS {

#include "kernels/isa_ops.inc"

namespace {

using simd::kLanes;
using simd::Vec;

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

// The register blocking follows the register file: with 32 vector registers (AVX-512), 2 vectors
// of queries and 12 keys per QK micro-kernel call, 24 accumulators; with 8 Vecs' worth (AVX2's 16
// ymm, two per Vec) 1 vector of queries and 6 keys, 12 of the 16 ymm registers, leaving room for
// the row of queries and the broadcast key.
constexpr bool kWideRegisterFile = simd::kRegisterVecs >= 32;
// Queries per block: every K and V value loaded into a register is reused for this many queries.
constexpr int kQueryVecs = kWideRegisterFile ? 2 : 1;
constexpr int kQueryBlock = kQueryVecs * kLanes;
// Keys per QK micro-kernel call: kKeyRows x kQueryVecs accumulators.
constexpr int kKeyRows = kWideRegisterFile ? 12 : 6;
// Keys per online-softmax step: big enough that the per-step rescale is noise, small enough that
// the score tile (kKeyBlock x kQueryBlock floats: 15 KB on AVX-512, 4 KB on AVX2) stays in L1
// from QK through P V.
constexpr int kKeyBlock = 10 * kKeyRows;
// Head channels per PV micro-kernel call, for the same register budget as kKeyRows.
constexpr int kMaxChannelRows = kKeyRows;

using QueryVecs = Vec[kQueryVecs];

// The element types of the two products: float, or bf16 pairs (two terms of the sum per lane).
// `Row` holds one row of the query-side operand, madd adds broadcast(a) x row to an accumulator.
struct FloatTerms {
  using Row = Vec;
  static Row load(const float* p) { return simd::load(p); }
  static Row broadcast(float a) { return simd::broadcast(a); }
  static Vec madd(Vec acc, Row a, Row row) { return simd::fma(a, row, acc); }
};
struct PairTerms {
  using Row = simd::PairVec;
  static Row load(const uint32_t* p) { return simd::load_pairs(p); }
  static Row broadcast(uint32_t a) { return simd::broadcast_pair(a); }
  static Vec madd(Vec acc, Row a, Row row) { return simd::pair_dot(acc, a, row); }
};
template <class T>
using TermsOf = std::conditional_t<std::is_same_v<T, float>, FloatTerms, PairTerms>;

// acc[r][v] = sum over k < depth of a[k * a_step + r] * b[k * kQueryBlock + v * kLanes + lane]:
// each step broadcasts R scalars of `a` against the kQueryVecs vectors of one row of `b`. With
// bf16 pairs each step takes two terms of the sum at once.
template <int R, class T>
inline void broadcast_product(const T* a, int64_t a_step, const T* b, int64_t depth, Vec (&acc)[R][kQueryVecs]) {
  using Terms = TermsOf<T>;
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kQueryVecs; ++v) acc[r][v] = simd::zero();
  for (int64_t k = 0; k < depth; ++k, a += a_step, b += kQueryBlock) {
    typename Terms::Row row[kQueryVecs];
#pragma GCC unroll 4
    for (int v = 0; v < kQueryVecs; ++v) row[v] = Terms::load(b + v * kLanes);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      typename Terms::Row ar = Terms::broadcast(a[r]);
#pragma GCC unroll 4
      for (int v = 0; v < kQueryVecs; ++v) acc[r][v] = Terms::madd(acc[r][v], ar, row[v]);
    }
  }
}

// (first, second) rounded to bf16, as one pair.
inline uint32_t bf16_pair(float first, float second) {
  return static_cast<uint32_t>(float_to_bf16(first)) | static_cast<uint32_t>(float_to_bf16(second)) << 16;
}

int64_t channel_pairs(int64_t head_dim) { return (head_dim + 1) / 2; }

// One head's keys in groups of kKeyRows: group g holds, channel by channel, the kKeyRows keys'
// values side by side, so the QK micro-kernel reads it front to back. The last group is padded
// with zero keys, whose scores are computed and never used.
int64_t packed_keys_size(const AttnShape& s) { return (s.lk + kKeyRows - 1) / kKeyRows * kKeyRows * s.head_dim; }

void pack_keys(const float* k, const AttnShape& s, float* packed) {
  const int64_t d = s.head_dim, groups = (s.lk + kKeyRows - 1) / kKeyRows;
  for (int64_t g = 0; g < groups; ++g) {
    float* group = packed + g * d * kKeyRows;
    for (int r = 0; r < kKeyRows; ++r) {
      const int64_t j = g * kKeyRows + r;
      for (int64_t c = 0; c < d; ++c) group[c * kKeyRows + r] = j < s.lk ? k[j * s.channels + c] : 0.0f;
    }
  }
}

// bf16: the pack_keys layout with channels in pairs, (K[j][2c], K[j][2c + 1]) at
// [(g * pairs + c) * kKeyRows + r]; an odd head size is padded with a zero channel.
int64_t packed_key_pairs_size(const AttnShape& s) {
  return (s.lk + kKeyRows - 1) / kKeyRows * kKeyRows * channel_pairs(s.head_dim);
}

void pack_key_pairs(const float* k, const AttnShape& s, uint32_t* packed) {
  const int64_t d = s.head_dim, pairs = channel_pairs(d), groups = (s.lk + kKeyRows - 1) / kKeyRows;
  for (int64_t g = 0; g < groups; ++g) {
    uint32_t* group = packed + g * pairs * kKeyRows;
    for (int r = 0; r < kKeyRows; ++r) {
      const int64_t j = g * kKeyRows + r;
      for (int64_t c = 0; c < pairs; ++c) {
        float first = j < s.lk ? k[j * s.channels + 2 * c] : 0.0f;
        float second = j < s.lk && 2 * c + 1 < d ? k[j * s.channels + 2 * c + 1] : 0.0f;
        group[c * kKeyRows + r] = bf16_pair(first, second);
      }
    }
  }
}

// bf16: one head's values with keys in pairs, (V[2j][c], V[2j + 1][c]) at [j * head_dim + c]; an
// odd key count is padded with a zero key.
int64_t packed_value_pairs_size(const AttnShape& s) { return (s.lk + 1) / 2 * s.head_dim; }

void pack_value_pairs(const float* v, const AttnShape& s, uint32_t* packed) {
  for (int64_t j = 0; j < (s.lk + 1) / 2; ++j) {
    const float* first = v + 2 * j * s.channels;
    const float* second = 2 * j + 1 < s.lk ? v + (2 * j + 1) * s.channels : nullptr;
    for (int64_t c = 0; c < s.head_dim; ++c)
      packed[j * s.head_dim + c] = bf16_pair(first[c], second ? second[c] : 0.0f);
  }
}

// scores^T rows [0, round_up(n, kKeyRows)) for the keys starting at packed key group `keys`, over
// `depth` channels (float) or channel pairs (bf16).
// Not inlined: its 24 accumulators need the registers that the softmax's constants would hold.
template <class T>
[[gnu::noinline]] void compute_scores(const T* keys, const T* queries_t, int64_t depth, int n, float* tile) {
  for (int j = 0; j < n; j += kKeyRows) {
    Vec acc[kKeyRows][kQueryVecs];
    broadcast_product<kKeyRows>(keys + (j / kKeyRows) * depth * kKeyRows, kKeyRows, queries_t, depth, acc);
    for (int r = 0; r < kKeyRows; ++r)
      for (int v = 0; v < kQueryVecs; ++v) simd::store(tile + (j + r) * kQueryBlock + v * kLanes, acc[r][v]);
  }
}

// Causal: key j is hidden from query i when j > i. Only the diagonal tiles have such pairs, since
// the key loop stops at the block's last query.
void mask_future_keys(float* tile, int64_t first_key, int n, int64_t first_query) {
  for (int j = 0; j < n; ++j) {
    int64_t hidden_queries = first_key + j - first_query;  // queries first_query + [0, this) precede key j
    if (hidden_queries <= 0) continue;
    for (int v = 0; v < kQueryVecs; ++v) {
      float* row = tile + j * kQueryBlock + v * kLanes;
      int lanes = static_cast<int>(std::min<int64_t>(hidden_queries - v * kLanes, kLanes));
      simd::store(row, simd::fill_leading_lanes(simd::load(row), lanes, -std::numeric_limits<float>::infinity()));
    }
  }
}

// Per query: the largest score seen so far and sum of exp(score - that maximum).
struct OnlineSoftmax {
  QueryVecs max, sum;

  OnlineSoftmax() {
    // Finite, so that max - new max is never inf - inf, even for a query whose first keys are masked.
    for (Vec& m : max) m = simd::broadcast(std::numeric_limits<float>::lowest());
    for (Vec& s : sum) s = simd::zero();
  }

  // Replaces the tile's n rows of scores by exp(score - running max) and sets `rescale` to the
  // factor that brings what was accumulated against the previous maximum onto the new one.
  void step(float* tile, int n, QueryVecs& rescale) {
    QueryVecs tile_max, tile_sum;
    for (int v = 0; v < kQueryVecs; ++v) tile_max[v] = max[v];
    for (int j = 0; j < n; ++j)
      for (int v = 0; v < kQueryVecs; ++v)
        tile_max[v] = simd::max(tile_max[v], simd::load(tile + j * kQueryBlock + v * kLanes));
    for (int v = 0; v < kQueryVecs; ++v) {
      rescale[v] = simd::exp(simd::sub(max[v], tile_max[v]));
      max[v] = tile_max[v];
      tile_sum[v] = simd::zero();
    }
    for (int j = 0; j < n; ++j) {
      for (int v = 0; v < kQueryVecs; ++v) {
        float* row = tile + j * kQueryBlock + v * kLanes;
        Vec p = simd::exp(simd::sub(simd::load(row), max[v]));
        simd::store(row, p);
        tile_sum[v] = simd::add(tile_sum[v], p);
      }
    }
    // Summing each tile on its own and then across tiles keeps the rounding error growing with
    // Lk / kKeyBlock + kKeyBlock rather than with Lk.
    for (int v = 0; v < kQueryVecs; ++v) sum[v] = simd::fma(sum[v], rescale[v], tile_sum[v]);
  }
};

// out^T rows [0, R) = out^T * rescale + sum over the tile's n keys of V[j][c] * P^T[j].
// Like the softmax sum, the tile's contribution is accumulated from zero before it is added.
// `n` counts keys (float) or key pairs (bf16).
template <int R, class T>
void accumulate_channels(const T* values, int64_t ldv, const T* probs, int n, const QueryVecs& rescale,
                         float* out_t) {
  Vec acc[R][kQueryVecs];
  broadcast_product<R>(values, ldv, probs, n, acc);
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kQueryVecs; ++v) {
      float* o = out_t + r * kQueryBlock + v * kLanes;
      simd::store(o, simd::fma(simd::load(o), rescale[v], acc[r][v]));
    }
  }
}

template <class T>
using ChannelKernel = void (*)(const T*, int64_t, const T*, int, const QueryVecs&, float*);

template <class T, size_t... RowsMinusOne>
constexpr auto make_channel_kernels(std::index_sequence<RowsMinusOne...>) {
  return std::array<ChannelKernel<T>, sizeof...(RowsMinusOne)>{&accumulate_channels<RowsMinusOne + 1, T>...};
}
template <class T>
constexpr auto kChannelKernels = make_channel_kernels<T>(std::make_index_sequence<kMaxChannelRows>{});

// out^T = out^T * rescale + V_tile^T P^T for the whole head. The channels are split into equal
// blocks (40 = 4 x 10, not 3 x 12 + 4) so that no call is left with a few, badly used rows.
template <class T>
void accumulate_values(const T* values, int64_t ldv, int64_t d, const T* probs, int n, const QueryVecs& rescale,
                       float* out_t) {
  const int64_t blocks = (d + kMaxChannelRows - 1) / kMaxChannelRows;
  for (int64_t blk = 0, c0 = 0; blk < blocks; ++blk) {
    int64_t rows = d / blocks + (blk < d % blocks ? 1 : 0);
    kChannelKernels<T>[rows - 1](values + c0, ldv, probs, n, rescale, out_t + c0 * kQueryBlock);
    c0 += rows;
  }
}

struct Problem {
  AttnShape shape;
  const float *q, *k, *v;
  float* out;
  int heads;
  float scale;
  bool causal;
  bool bf16;
};

// Query blocks per task, at most. They take turns on each key block while its K and V are hot in
// L1/L2: one head's K and V at 4096 tokens (1.3 MB) do not fit in L2, and streaming them from L3
// once per 32 queries is traffic that every core adds to.
constexpr int kMaxBlocksPerTask = 4;

// Fewer blocks per task where grouping would leave threads without enough tasks to balance
// (CLIP's 77 tokens x 12 heads, the UNet's 8x8 level).
int blocks_per_task(int64_t heads_total, int64_t query_blocks) {
  const int64_t wanted_tasks = 4 * static_cast<int64_t>(num_threads());
  int blocks = kMaxBlocksPerTask;
  while (blocks > 1 && heads_total * ((query_blocks + blocks - 1) / blocks) < wanted_tasks) blocks /= 2;
  return blocks;
}

// One query block's state across the key loop.
struct QueryBlock {
  int64_t first, rows;  // queries [first, first + rows)
  int64_t key_end;      // keys [0, key_end) are visible to some query of the block
  float* queries_t;     // (scale Q)^T [head_dim][kQueryBlock]
  uint32_t* query_pairs;  // bf16: the same rounded, channels in pairs [channel_pairs][kQueryBlock]
  float* out_t;         // unnormalised out^T [head_dim][kQueryBlock]
  OnlineSoftmax softmax;
};

// Per-thread working memory: one head's packed keys, and O(head_dim x kQueryBlock + kKeyBlock x
// kQueryBlock) floats per query block.
struct Workspace {
  Tensor keys;  // pack_keys layout (float only), for head `keys_head` (batch * heads + head)
  int64_t keys_head = -1;
  Tensor queries_t, out_t;  // kMaxBlocksPerTask x [head_dim][kQueryBlock]
  Tensor tile;              // scores^T, then P^T, [kKeyBlock][kQueryBlock]
  // bf16 only: pack_key_pairs and pack_value_pairs of head `keys_head`, the blocks' query pairs,
  // and the probability tile in key pairs [kKeyBlock / 2][kQueryBlock].
  std::vector<uint32_t> key_pairs, value_pairs, query_pairs, prob_pairs;
  Workspace(const AttnShape& s, bool bf16)
      : keys(Tensor::empty({bf16 ? 0 : packed_keys_size(s)})),
        queries_t(Tensor::empty({kMaxBlocksPerTask, s.head_dim, kQueryBlock})),
        out_t(Tensor::empty({kMaxBlocksPerTask, s.head_dim, kQueryBlock})),
        tile(Tensor::empty({kKeyBlock, kQueryBlock})) {
    if (!bf16) return;
    key_pairs.resize(packed_key_pairs_size(s));
    value_pairs.resize(packed_value_pairs_size(s));
    query_pairs.resize(kMaxBlocksPerTask * channel_pairs(s.head_dim) * kQueryBlock);
    prob_pairs.resize(kKeyBlock / 2 * kQueryBlock);
  }
};

// (scale Q)^T, 16 x 16 tiles at a time. Lanes past the last query are zero queries: harmless
// finite scores, never written out.
void pack_query_block(const float* q, int64_t ldq, int64_t rows, int64_t d, float scale, float* queries_t) {
  const Vec scale_v = simd::broadcast(scale);
  for (int64_t i0 = 0; i0 < kQueryBlock; i0 += kLanes) {
    for (int64_t c0 = 0; c0 < d; c0 += kLanes) {
      const int cols = static_cast<int>(std::min<int64_t>(kLanes, d - c0));
      Vec tile[kLanes];
      for (int r = 0; r < kLanes; ++r)
        tile[r] = i0 + r < rows ? simd::load_leading(q + (i0 + r) * ldq + c0, cols) : simd::zero();
      simd::transpose(tile);
      for (int c = 0; c < cols; ++c) simd::store(queries_t + (c0 + c) * kQueryBlock + i0, simd::mul(tile[c], scale_v));
    }
  }
}

// bf16: (scale Q)^T rounded, channels in pairs; an odd head size is padded with a zero channel.
void round_queries_to_pairs(const float* queries_t, int64_t d, uint32_t* query_pairs) {
  for (int64_t c = 0; c < channel_pairs(d); ++c)
    for (int v = 0; v < kQueryVecs; ++v) {
      Vec first = simd::load(queries_t + 2 * c * kQueryBlock + v * kLanes);
      Vec second = 2 * c + 1 < d ? simd::load(queries_t + (2 * c + 1) * kQueryBlock + v * kLanes) : simd::zero();
      simd::store_pairs(query_pairs + c * kQueryBlock + v * kLanes, simd::round_to_pairs(first, second));
    }
}

// bf16: P^T rows [0, n) rounded, keys in pairs; an odd n is padded with a zero row.
void round_probs_to_pairs(const float* tile, int n, uint32_t* prob_pairs) {
  for (int j = 0; j < (n + 1) / 2; ++j)
    for (int v = 0; v < kQueryVecs; ++v) {
      Vec first = simd::load(tile + 2 * j * kQueryBlock + v * kLanes);
      Vec second = 2 * j + 1 < n ? simd::load(tile + (2 * j + 1) * kQueryBlock + v * kLanes) : simd::zero();
      simd::store_pairs(prob_pairs + j * kQueryBlock + v * kLanes, simd::round_to_pairs(first, second));
    }
}

// out = out^T / sum, transposed back 16 x 16 at a time into the block's rows of `out`.
void write_output(const QueryBlock& qb, int64_t d, float* out, int64_t ldo) {
  for (int v = 0; v < kQueryVecs; ++v) {
    const Vec inv_sum = simd::div(simd::broadcast(1.0f), qb.softmax.sum[v]);
    const int64_t i0 = v * kLanes;
    for (int64_t c0 = 0; c0 < d; c0 += kLanes) {
      const int cols = static_cast<int>(std::min<int64_t>(kLanes, d - c0));
      Vec tile[kLanes];
      for (int c = 0; c < kLanes; ++c)
        tile[c] = c < cols ? simd::mul(simd::load(qb.out_t + (c0 + c) * kQueryBlock + i0), inv_sum) : simd::zero();
      simd::transpose(tile);
      for (int r = 0; r < kLanes && i0 + r < qb.rows; ++r)
        simd::store_leading(out + (i0 + r) * ldo + c0, tile[r], cols);
    }
  }
}

// One key block [j0, j0 + n) for one query block: scores, mask, online softmax, P V.
// `values` is V in place (float) or unused (bf16, which reads the workspace's value pairs).
void attend_key_block(const Problem& p, Workspace& w, const float* values, int64_t j0, QueryBlock& qb) {
  const int64_t d = p.shape.head_dim, ldv = p.shape.channels, pairs = channel_pairs(d);
  const int n = static_cast<int>(std::min<int64_t>(kKeyBlock, qb.key_end - j0));
  float* tile = w.tile.data();
  if (p.bf16)
    compute_scores(w.key_pairs.data() + j0 * pairs, qb.query_pairs, pairs, n, tile);
  else
    compute_scores(w.keys.data() + j0 * d, qb.queries_t, d, n, tile);
  if (p.causal) mask_future_keys(tile, j0, n, qb.first);
  QueryVecs rescale;
  qb.softmax.step(tile, n, rescale);
  if (p.bf16) {
    // j0 is a multiple of kKeyBlock, which is even: the block starts on a whole key pair.
    round_probs_to_pairs(tile, n, w.prob_pairs.data());
    accumulate_values(w.value_pairs.data() + j0 / 2 * d, d, d, w.prob_pairs.data(), (n + 1) / 2, rescale, qb.out_t);
  } else {
    accumulate_values(values + j0 * ldv, ldv, d, tile, n, rescale, qb.out_t);
  }
}

// Query blocks [first_block, first_block + blocks) of head h of batch b.
void attend_query_blocks(const Problem& p, int64_t b, int64_t h, int64_t first_block, int blocks, Workspace& w) {
  const AttnShape& s = p.shape;
  const int64_t d = s.head_dim, head = h * d;
  // A thread's tasks are consecutive, so it packs each head it visits once (twice at most for the
  // head it shares with a neighbour), and no thread ever waits for another's packing.
  const float* keys = p.k + b * s.lk * s.channels + head;
  const float* values = p.v + b * s.lk * s.channels + head;
  if (w.keys_head != b * p.heads + h) {
    if (p.bf16) {
      pack_key_pairs(keys, s, w.key_pairs.data());
      pack_value_pairs(values, s, w.value_pairs.data());
    } else {
      pack_keys(keys, s, w.keys.data());
    }
    w.keys_head = b * p.heads + h;
  }

  QueryBlock qbs[kMaxBlocksPerTask];
  int64_t key_end = 0;
  for (int g = 0; g < blocks; ++g) {
    QueryBlock& qb = qbs[g];
    qb.first = (first_block + g) * kQueryBlock;
    qb.rows = std::min<int64_t>(kQueryBlock, s.lq - qb.first);
    // Keys after the block's last query are hidden from all of it under the causal mask.
    qb.key_end = p.causal ? std::min(s.lk, qb.first + qb.rows) : s.lk;
    qb.queries_t = w.queries_t.data() + g * d * kQueryBlock;
    qb.out_t = w.out_t.data() + g * d * kQueryBlock;
    pack_query_block(p.q + (b * s.lq + qb.first) * s.channels + head, s.channels, qb.rows, d, p.scale, qb.queries_t);
    qb.query_pairs = nullptr;
    if (p.bf16) {
      qb.query_pairs = w.query_pairs.data() + g * channel_pairs(d) * kQueryBlock;
      round_queries_to_pairs(qb.queries_t, d, qb.query_pairs);
    }
    std::fill_n(qb.out_t, d * kQueryBlock, 0.0f);
    key_end = std::max(key_end, qb.key_end);
  }
  for (int64_t j0 = 0; j0 < key_end; j0 += kKeyBlock)
    for (int g = 0; g < blocks; ++g)
      if (j0 < qbs[g].key_end) attend_key_block(p, w, values, j0, qbs[g]);
  for (int g = 0; g < blocks; ++g)
    write_output(qbs[g], d, p.out + (b * s.lq + qbs[g].first) * s.channels + head, s.channels);
}

}  // namespace

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, int heads, float scale, bool causal,
                 Precision precision) {
  count_attention_macs(q, k);
  const AttnShape s = check_attention(q, k, v, heads);
  SDRT_CHECK(s.lk > 0, "attention: softmax over zero keys");
  Tensor out = Tensor::empty(q.shape());
  const bool bf16 = precision == Precision::bf16;
  const Problem p{s, q.data(), k.data(), v.data(), out.data(), heads, scale, causal, bf16};
  const int64_t query_blocks = (s.lq + kQueryBlock - 1) / kQueryBlock;
  const int group = blocks_per_task(s.batch * heads, query_blocks);
  const int64_t groups = (query_blocks + group - 1) / group;
  const int64_t tasks = s.batch * heads * groups;
  if (in_dry_run()) {  // this thread's allocations, as in the parallel region below
    Workspace w(s, bf16);
    return out;
  }
#pragma omp parallel
  {
    Workspace w(s, bf16);
    // Static: each thread gets a run of consecutive tasks, i.e. few heads, whose K and V it reuses.
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      int64_t bh = t / groups, first_block = t % groups * group;
      int blocks = static_cast<int>(std::min<int64_t>(group, query_blocks - first_block));
      attend_query_blocks(p, bh / heads, bh % heads, first_block, blocks, w);
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

}  // namespace sdrt::kernels::SDRT_ISA_NS
