// A planned arena for a computation that runs many times with the same shapes, such as the UNet
// call of a denoising loop. The first run records the size and lifetime of every activation
// buffer; the buffers are then placed in one block so that no two alive at the same time overlap
// (greedy, largest first, as TFLite's arena planner does); later runs take their buffers from
// that block. The block is close to the most bytes ever alive at once, where the buffer cache
// holds every size it has seen: for SD 1.5's UNet at 512x512 in fp32, 287 MB alive at most
// against 488 MB of cache.
//
// Safety does not depend on later runs repeating the recorded one. A replayed allocation gets
// its planned place only if its size matches the record and no buffer still alive (from this run
// or an earlier one) occupies any of that place; otherwise it falls back to the buffer cache.
// A run that differs from the record is slower, never wrong.
//
// Only allocations made on the thread that opened the Run go through the arena: the model code
// on that thread allocates in a fixed order, while worker threads inside a parallel kernel do not.
#pragma once

#include <cstddef>
#include <memory>

namespace sdrt {

class ActivationArena {
 public:
  ActivationArena();
  ~ActivationArena();
  ActivationArena(const ActivationArena&) = delete;
  ActivationArena& operator=(const ActivationArena&) = delete;

  // While a Run is alive, this thread's tensor allocations (of at least
  // BufferCache::kMinCachedBytes) go through the arena: the first complete Run is recorded, its
  // buffers coming from the heap and a small pool of freed ones (so that recording holds little
  // more than what is alive), and the block is planned when it ends; later Runs replay. A Run left
  // by an exception records nothing. Runs do not nest on one thread.
  class Run {
   public:
    explicit Run(ActivationArena& arena);
    ~Run();
    Run(const Run&) = delete;
    Run& operator=(const Run&) = delete;

   private:
    ActivationArena& arena_;
    int uncaught_at_start_;
  };

  bool planned() const;
  // The planned block's size (0 before planning).
  size_t block_bytes() const;
  // The most bytes alive at once in the recorded run: the least any block could be.
  size_t recorded_peak_bytes() const;
  struct Counts {
    size_t recorded = 0;   // allocations in the recorded run
    size_t served = 0;     // replayed allocations given their planned place
    size_t fallbacks = 0;  // replayed allocations sent to the buffer cache instead
  };
  Counts counts() const;

  // For BufferCache::allocate: a buffer of `bytes` (a multiple of 64) from the arena of the Run
  // open on this thread, or null when there is none or the arena passes this one on.
  static std::shared_ptr<float> allocate_if_active(size_t bytes);

  struct State;

 private:
  std::shared_ptr<State> state_;  // shared with the buffers handed out, which may outlive the arena
};

}  // namespace sdrt
