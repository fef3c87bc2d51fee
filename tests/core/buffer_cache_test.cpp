#include "core/buffer_cache.h"

#include <gtest/gtest.h>

#include <cstdint>

#include "core/tensor.h"

namespace sdrt {
namespace {

TEST(BufferCache, ReusesFreedBuffersOfTheSameSize) {
  auto& cache = BufferCache::instance();
  cache.release();
  const float* first;
  {
    Tensor t({1024, 1024});
    first = t.data();
  }
  EXPECT_GE(cache.cached_bytes(), size_t{4} << 20);
  Tensor again = Tensor::empty({1024, 1024});
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(again.data()) % 64, 0u);
  Tensor zeroed({1024, 1024});  // a fresh buffer from the cache is still cleared by Tensor(Shape)
  for (int64_t i = 0; i < zeroed.numel(); i += 4099) EXPECT_EQ(zeroed[i], 0.0f);
}

TEST(BufferCache, RespectsCapacityAndRelease) {
  auto& cache = BufferCache::instance();
  cache.release();
  cache.set_capacity(1 << 20);
  { Tensor big({1024, 1024}); }  // 4 MB > 1 MB cap: freed, not cached
  EXPECT_EQ(cache.cached_bytes(), 0u);
  cache.set_capacity(size_t{2} << 30);
  { Tensor big({1024, 1024}); }
  EXPECT_GT(cache.cached_bytes(), 0u);
  cache.release();
  EXPECT_EQ(cache.cached_bytes(), 0u);
}

TEST(BufferCache, ServesASmallerRequestFromABufferUpToFourTimesItsSize) {
  auto& cache = BufferCache::instance();
  cache.release();
  const float* freed;
  {
    Tensor t = Tensor::empty({1400, 1024});
    freed = t.data();
  }
  auto before = cache.counts();
  Tensor fits = Tensor::empty({1000, 1024});  // 1.4x: reused
  EXPECT_EQ(fits.data(), freed);
  fits = Tensor();
  fits = Tensor::empty({400, 1024});  // 3.5x: reused
  EXPECT_EQ(fits.data(), freed);
  EXPECT_EQ(cache.counts().hits, before.hits + 2);
  {
    Tensor t = Tensor::empty({5000, 1024});
    freed = t.data();
  }
  before = cache.counts();
  Tensor too_small = Tensor::empty({1000, 1024});  // 5x: a fresh buffer, the big one stays cached
  EXPECT_NE(too_small.data(), freed);
  EXPECT_EQ(cache.counts().misses, before.misses + 1);
  EXPECT_GE(cache.cached_bytes(), size_t{5000} * 1024 * sizeof(float));
  cache.release();
}

TEST(BufferCache, SmallBuffersBypassTheCache) {
  auto& cache = BufferCache::instance();
  cache.release();
  { Tensor small({16}); }
  EXPECT_EQ(cache.cached_bytes(), 0u);
}

}  // namespace
}  // namespace sdrt
