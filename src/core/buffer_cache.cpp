#include "core/buffer_cache.h"

#include <cstdlib>
#include <new>

#include "core/activation_arena.h"

namespace sdrt {

namespace {

constexpr size_t kAlignment = 64;

size_t rounded(size_t bytes) { return std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment); }

}  // namespace

void* BufferCache::allocate_aligned(size_t bytes) {
  void* p = std::aligned_alloc(kAlignment, bytes);
  if (!p) throw std::bad_alloc();
  return p;
}

BufferCache& BufferCache::instance() {
  // Never destroyed: tensors with static storage may release buffers during exit.
  static BufferCache* cache = new BufferCache();
  return *cache;
}

std::shared_ptr<float> BufferCache::allocate(size_t bytes) {
  size_t size = rounded(bytes);
  if (size < kMinCachedBytes) {
    return std::shared_ptr<float>(static_cast<float*>(allocate_aligned(size)), [](float* p) { std::free(p); });
  }
  if (auto planned = ActivationArena::allocate_if_active(size)) return planned;
  void* p = nullptr;
  {
    std::lock_guard lock(mutex_);
    auto it = free_.lower_bound(size);
    if (it != free_.end() && it->first <= size * 4) {
      size = it->first;
      p = it->second;
      free_.erase(it);
      cached_ -= size;
      ++counts_.hits;
    } else {
      ++counts_.misses;
    }
  }
  if (!p) p = allocate_aligned(size);
  return std::shared_ptr<float>(static_cast<float*>(p), [this, size](float* q) { give_back(q, size); });
}

void BufferCache::give_back(void* p, size_t bytes) {
  {
    std::lock_guard lock(mutex_);
    if (cached_ + bytes <= capacity_) {
      free_.emplace(bytes, p);
      cached_ += bytes;
      return;
    }
  }
  std::free(p);
}

void BufferCache::release() {
  std::multimap<size_t, void*> victims;
  {
    std::lock_guard lock(mutex_);
    victims.swap(free_);
    cached_ = 0;
  }
  for (auto& [size, p] : victims) std::free(p);
}

size_t BufferCache::cached_bytes() const {
  std::lock_guard lock(mutex_);
  return cached_;
}

BufferCache::Counts BufferCache::counts() const {
  std::lock_guard lock(mutex_);
  return counts_;
}

void BufferCache::set_capacity(size_t bytes) {
  {
    std::lock_guard lock(mutex_);
    capacity_ = bytes;
  }
  if (cached_bytes() > bytes) release();
}

}  // namespace sdrt
