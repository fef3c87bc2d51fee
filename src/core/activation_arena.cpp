#include "core/activation_arena.h"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "core/buffer_cache.h"
#include "core/error.h"

namespace sdrt {

namespace {

constexpr size_t kNever = std::numeric_limits<size_t>::max();
// The recording run reuses freed buffers of up to 4x the size asked for, as the buffer cache does,
// but holds at most 32 MB of them: on SD 1.5's UNet at 512x512 (bf16) this made the recording step
// 2.2 s faster than fresh pages for every buffer, for 20 MB more peak (64 MB: 0.4 s and 50 MB more).
constexpr size_t kRecyclingBytes = size_t{32} << 20;
constexpr size_t kRecyclingSlack = 4;

// One recorded buffer: its size and its lifetime [allocated, freed) in allocation/free events.
// A buffer still alive when the recording ends is taken to live to the end.
struct Lifetime {
  size_t bytes = 0;
  size_t allocated = 0, freed = kNever;
  bool overlaps_in_time(const Lifetime& o) const { return allocated < o.freed && o.allocated < freed; }
};

// A placed byte range of the block.
struct Range {
  size_t offset = 0, bytes = 0;
  bool overlaps(const Range& o) const { return offset < o.offset + o.bytes && o.offset < offset + bytes; }
};

// Greedy placement, largest buffer first: each goes to the lowest offset where it overlaps no
// already placed buffer whose lifetime overlaps its own.
std::vector<size_t> plan_offsets(const std::vector<Lifetime>& buffers, size_t& block_bytes) {
  std::vector<size_t> order(buffers.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return buffers[a].bytes > buffers[b].bytes; });
  std::vector<size_t> offsets(buffers.size(), 0);
  std::vector<size_t> placed;
  std::vector<Range> taken;
  block_bytes = 0;
  for (size_t i : order) {
    taken.clear();
    for (size_t j : placed)
      if (buffers[i].overlaps_in_time(buffers[j])) taken.push_back({offsets[j], buffers[j].bytes});
    std::sort(taken.begin(), taken.end(), [](const Range& a, const Range& b) { return a.offset < b.offset; });
    size_t offset = 0;
    for (const Range& r : taken) {
      if (offset + buffers[i].bytes <= r.offset) break;
      offset = std::max(offset, r.offset + r.bytes);
    }
    offsets[i] = offset;
    block_bytes = std::max(block_bytes, offset + buffers[i].bytes);
    placed.push_back(i);
  }
  return offsets;
}

size_t most_bytes_alive(const std::vector<Lifetime>& buffers) {
  // Allocation and free events in order; +bytes at allocation, -bytes at free.
  std::vector<std::pair<size_t, long long>> events;
  for (const Lifetime& b : buffers) {
    events.emplace_back(b.allocated, static_cast<long long>(b.bytes));
    if (b.freed != kNever) events.emplace_back(b.freed, -static_cast<long long>(b.bytes));
  }
  std::sort(events.begin(), events.end());
  long long alive = 0, most = 0;
  for (const auto& e : events) most = std::max(most, alive += e.second);
  return static_cast<size_t>(most);
}

}  // namespace

struct ActivationArena::State {
  mutable std::mutex mutex;
  // Recording. `generation` tells a late free from an abandoned recording apart from the current one.
  bool recording = false;
  size_t generation = 0;
  size_t next_event = 0;
  std::vector<Lifetime> record;
  // Buffers freed during the recording, for its later allocations (as the buffer cache does, but
  // capped: what it holds adds to the recording run's peak).
  std::multimap<size_t, void*> recycled;
  size_t recycled_bytes = 0;
  // The plan; a block exists once it is made.
  std::vector<size_t> offsets;
  size_t block_bytes = 0, recorded_peak = 0;
  std::unique_ptr<char, decltype(&std::free)> block{nullptr, &std::free};
  std::vector<Range> alive;  // replayed buffers not yet freed
  Counts counts;

  std::shared_ptr<float> record_allocation(const std::shared_ptr<State>& self, size_t bytes) {
    void* p = nullptr;
    size_t id, gen, held = bytes;
    {
      std::lock_guard lock(mutex);
      auto it = recycled.lower_bound(bytes);
      if (it != recycled.end() && it->first <= bytes * kRecyclingSlack) {
        held = it->first;
        p = it->second;
        recycled_bytes -= held;
        recycled.erase(it);
      }
      id = record.size();
      gen = generation;
      record.push_back({bytes, next_event++, kNever});
    }
    if (!p) p = BufferCache::allocate_aligned(bytes);
    return std::shared_ptr<float>(static_cast<float*>(p), [self, id, gen, held](float* q) {
      {
        std::lock_guard lock(self->mutex);
        if (self->recording && self->generation == gen) {
          self->record[id].freed = self->next_event++;
          if (self->recycled_bytes + held <= kRecyclingBytes) {
            self->recycled.emplace(held, q);
            self->recycled_bytes += held;
            return;
          }
        }
      }
      std::free(q);
    });
  }

  std::shared_ptr<float> replay_allocation(const std::shared_ptr<State>& self, size_t index, size_t bytes) {
    std::lock_guard lock(mutex);
    if (index >= record.size() || record[index].bytes != bytes) {
      ++counts.fallbacks;
      return nullptr;
    }
    const Range range{offsets[index], bytes};
    for (const Range& r : alive) {
      if (r.overlaps(range)) {
        ++counts.fallbacks;
        return nullptr;
      }
    }
    alive.push_back(range);
    ++counts.served;
    return std::shared_ptr<float>(reinterpret_cast<float*>(block.get() + range.offset), [self, range](float*) {
      std::lock_guard lock(self->mutex);
      auto& a = self->alive;
      a.erase(std::find_if(a.begin(), a.end(), [&](const Range& r) { return r.offset == range.offset; }));
    });
  }

  void finish_recording(bool completed) {
    std::lock_guard lock(mutex);
    recording = false;
    for (auto& [bytes, p] : recycled) std::free(p);
    recycled.clear();
    recycled_bytes = 0;
    if (!completed) {
      record.clear();
      return;
    }
    counts.recorded = record.size();
    recorded_peak = most_bytes_alive(record);
    offsets = plan_offsets(record, block_bytes);
    // Sizes are BufferCache's multiples of 64, and so is their sum.
    block.reset(static_cast<char*>(BufferCache::allocate_aligned(std::max<size_t>(block_bytes, 64))));
  }
};

namespace {

// The Run open on this thread: which arena, what it does with allocations, and how many it has made.
struct OpenRun {
  enum class Mode { record, replay, pass_through };
  std::shared_ptr<ActivationArena::State> state;
  Mode mode = Mode::pass_through;
  size_t next_index = 0;
};
// state is null when none is open.
thread_local OpenRun open_run;

}  // namespace

ActivationArena::ActivationArena() : state_(std::make_shared<State>()) {}
ActivationArena::~ActivationArena() = default;

ActivationArena::Run::Run(ActivationArena& arena) : arena_(arena), uncaught_at_start_(std::uncaught_exceptions()) {
  SDRT_CHECK(!open_run.state, "ActivationArena: a Run is already open on this thread");
  State& state = *arena_.state_;
  OpenRun::Mode mode = OpenRun::Mode::replay;
  {
    std::lock_guard lock(state.mutex);
    if (state.recording) {
      mode = OpenRun::Mode::pass_through;  // another thread's Run is recording
    } else if (!state.block) {
      mode = OpenRun::Mode::record;
      state.recording = true;
      ++state.generation;
      state.record.clear();
      state.next_event = 0;
    }
  }
  open_run = OpenRun{arena_.state_, mode, 0};
}

ActivationArena::Run::~Run() {
  const bool recorded = open_run.mode == OpenRun::Mode::record;
  open_run = OpenRun{};
  if (!recorded) return;
  try {
    arena_.state_->finish_recording(std::uncaught_exceptions() == uncaught_at_start_);
  } catch (const std::bad_alloc&) {
    // No room for the block: stay unplanned, and the next Run records again.
  }
}

std::shared_ptr<float> ActivationArena::allocate_if_active(size_t bytes) {
  if (!open_run.state) return nullptr;
  const std::shared_ptr<State>& state = open_run.state;
  const size_t index = open_run.next_index++;
  switch (open_run.mode) {
    case OpenRun::Mode::record:
      return state->record_allocation(state, bytes);
    case OpenRun::Mode::replay:
      return state->replay_allocation(state, index, bytes);
    case OpenRun::Mode::pass_through:
      break;
  }
  return nullptr;
}

bool ActivationArena::planned() const {
  std::lock_guard lock(state_->mutex);
  return state_->block != nullptr;
}

size_t ActivationArena::block_bytes() const {
  std::lock_guard lock(state_->mutex);
  return state_->block_bytes;
}

size_t ActivationArena::recorded_peak_bytes() const {
  std::lock_guard lock(state_->mutex);
  return state_->recorded_peak;
}

ActivationArena::Counts ActivationArena::counts() const {
  std::lock_guard lock(state_->mutex);
  return state_->counts;
}

}  // namespace sdrt
