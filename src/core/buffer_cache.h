// Tensor storage with reuse. A denoising loop allocates the same activation sizes at every
// step; with plain malloc/free each large buffer goes back to the kernel and returns as fresh
// zeroed pages, and page faults cost ~20% of a full-size UNet step. The cache keeps freed
// buffers by size and hands them out again, up to a byte cap.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>

namespace sdrt {

class BufferCache {
 public:
  // The cache all tensors allocate from.
  static BufferCache& instance();

  // A 64-byte aligned buffer of at least `bytes`, returned to the cache when the last owner drops it.
  // Inside an ActivationArena::Run on this thread, the arena serves it instead where it can.
  // The smallest cached buffer of up to 4x `bytes` serves the request, so the cache holds fewer
  // buffers than there are distinct shapes (UNet activations at 512x512: 450 -> 390 MB in fp32).
  std::shared_ptr<float> allocate(size_t bytes);
  // Frees every cached (unused) buffer, e.g. between pipeline stages whose sizes differ.
  void release();
  size_t cached_bytes() const;
  // Allocations served from the cache and those that had to allocate, since the process started.
  struct Counts {
    size_t hits = 0, misses = 0;
  };
  Counts counts() const;
  // A 64-byte aligned heap buffer of `bytes` (a multiple of 64), for std::free; throws std::bad_alloc.
  static void* allocate_aligned(size_t bytes);
  // Buffers smaller than this bypass the cache (malloc serves them well).
  static constexpr size_t kMinCachedBytes = 64 * 1024;

  void set_capacity(size_t bytes);

 private:
  BufferCache() = default;
  void give_back(void* p, size_t bytes);

  mutable std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0;
  Counts counts_;
  size_t capacity_ = size_t{2} << 30;
};

}  // namespace sdrt
