// Process memory as the kernel accounts it, for the timing summaries and benchmarks.
#pragma once

#include <cstdint>

namespace sdrt {

// Peak resident set size of this process so far (VmHWM), in bytes; 0 where unavailable.
int64_t peak_rss_bytes();
// Current resident set size (VmRSS), in bytes.
int64_t current_rss_bytes();

}  // namespace sdrt
