#include "core/activation_arena.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

#include "core/buffer_cache.h"
#include "core/error.h"
#include "core/tensor.h"

namespace sdrt {
namespace {

// Floats per buffer large enough for the arena (small buffers bypass it, as they bypass the cache).
constexpr int64_t kUnit = BufferCache::kMinCachedBytes / sizeof(float);

bool disjoint(const Tensor& a, const Tensor& b) {
  return a.data() + a.numel() <= b.data() || b.data() + b.numel() <= a.data();
}

// A toy forward pass with a UNet's allocation pattern: a chain of activations of varying sizes, two
// "skip" tensors held across the chain, and an output. Every tensor alive at once is checked to
// own its memory (its fill survives until its last use), so overlapping buffers fail the test.
Tensor toy_forward(float input, const std::vector<int64_t>& units) {
  Tensor skip_a = Tensor::full({2 * kUnit}, input + 1000.0f);
  Tensor h = Tensor::full({units.front() * kUnit}, input);
  Tensor skip_b;
  for (size_t i = 1; i < units.size(); ++i) {
    Tensor next = Tensor::empty({units[i] * kUnit});
    const float v = h[h.numel() - 1] + 1.0f;
    for (int64_t j = 0; j < next.numel(); ++j) next[j] = v;
    EXPECT_TRUE(disjoint(next, h));
    EXPECT_TRUE(disjoint(next, skip_a));
    if (skip_b.defined()) {
      EXPECT_TRUE(disjoint(next, skip_b));
    }
    if (i == units.size() / 2) skip_b = next.clone();
    h = std::move(next);
  }
  Tensor out = Tensor::empty({kUnit});
  for (int64_t j = 0; j < out.numel(); ++j) out[j] = h[0] + skip_a[j] + (skip_b.defined() ? skip_b[0] : 0.0f);
  return out;
}

const std::vector<int64_t> kUnits = {4, 8, 3, 16, 1, 5, 9, 2, 7};

float expected_output(float input) {
  // h ends at input + (n - 1); skip_a is input + 1000; skip_b is the value at step n/2.
  const auto n = static_cast<float>(kUnits.size());
  return (input + n - 1) + (input + 1000.0f) + (input + static_cast<float>(kUnits.size() / 2));
}

TEST(ActivationArena, RecordsOneRunThenServesLaterRunsFromOneBlock) {
  ActivationArena arena;
  EXPECT_FALSE(arena.planned());
  Tensor first;
  {
    ActivationArena::Run run(arena);
    first = toy_forward(1.0f, kUnits);
  }
  EXPECT_EQ(first[0], expected_output(1.0f));
  ASSERT_TRUE(arena.planned());
  const auto recorded = arena.counts().recorded;
  // toy_forward's allocations: skip_a, the chain, skip_b's clone and the output.
  EXPECT_EQ(recorded, kUnits.size() + 3);
  size_t total = 0;
  for (int64_t u : kUnits) total += static_cast<size_t>(u * kUnit) * sizeof(float);
  EXPECT_GE(arena.block_bytes(), arena.recorded_peak_bytes());
  EXPECT_LT(arena.block_bytes(), total) << "buffers whose lifetimes do not overlap should share memory";
  first = Tensor();

  for (float input : {2.0f, 3.0f}) {
    ActivationArena::Run run(arena);
    Tensor out = toy_forward(input, kUnits);
    EXPECT_EQ(out[0], expected_output(input));
  }
  EXPECT_EQ(arena.counts().served, 2 * recorded);
  EXPECT_EQ(arena.counts().fallbacks, 0u);
}

TEST(ActivationArena, ARunThatDiffersFromTheRecordFallsBackAndStaysCorrect) {
  ActivationArena arena;
  {
    ActivationArena::Run run(arena);
    toy_forward(1.0f, kUnits);
  }
  std::vector<int64_t> other = kUnits;
  other[3] = 17;  // one size differs
  other.push_back(6);  // and there is one allocation more
  ActivationArena::Run run(arena);
  EXPECT_EQ(toy_forward(5.0f, other)[0], (5.0f + static_cast<float>(other.size()) - 1) + 1005.0f +
                                             (5.0f + static_cast<float>(other.size() / 2)));
  EXPECT_GT(arena.counts().fallbacks, 0u);
}

TEST(ActivationArena, ABufferStillAliveFromAnEarlierRunKeepsItsMemory) {
  ActivationArena arena;
  {
    ActivationArena::Run run(arena);
    toy_forward(1.0f, kUnits);
  }
  Tensor kept;
  {
    ActivationArena::Run run(arena);
    kept = toy_forward(2.0f, kUnits);
  }
  {
    ActivationArena::Run run(arena);
    Tensor out = toy_forward(3.0f, kUnits);
    EXPECT_TRUE(disjoint(out, kept));
    EXPECT_EQ(out[0], expected_output(3.0f));
  }
  for (int64_t j = 0; j < kept.numel(); ++j) ASSERT_EQ(kept[j], expected_output(2.0f));
  EXPECT_GE(arena.counts().fallbacks, 1u);
}

TEST(ActivationArena, ARunLeftByAnExceptionRecordsNothing) {
  ActivationArena arena;
  try {
    ActivationArena::Run run(arena);
    toy_forward(1.0f, kUnits);
    throw Error("interrupted");
  } catch (const Error&) {
  }
  EXPECT_FALSE(arena.planned());
  {
    ActivationArena::Run run(arena);
    toy_forward(1.0f, kUnits);
  }
  EXPECT_TRUE(arena.planned());
}

TEST(ActivationArena, OnlyTheRunsThreadAndLargeBuffersUseIt) {
  ActivationArena arena;
  {
    ActivationArena::Run run(arena);
    EXPECT_THROW(ActivationArena::Run nested(arena), Error);
    Tensor small = Tensor::empty({16});
    std::thread([] { Tensor elsewhere = Tensor::empty({4 * kUnit}); }).join();
    Tensor large = Tensor::empty({kUnit});
  }
  EXPECT_EQ(arena.counts().recorded, 1u);
}

}  // namespace
}  // namespace sdrt
