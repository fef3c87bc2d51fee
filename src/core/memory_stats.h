// Process memory as the kernel accounts it, for the timing summaries and benchmarks.
#pragma once

#include <cstdint>

namespace sdrt {

// Peak resident set size of this process so far (VmHWM), in bytes; 0 where unavailable.
int64_t peak_rss_bytes();
// Current resident set size (VmRSS), in bytes.
int64_t current_rss_bytes();
// Resets the peak (VmHWM) to the current RSS, so that a later peak_rss_bytes() is the peak since
// this call: how the benchmark attributes the peak to a stage. Process-wide; false where the
// kernel does not allow it (then peak_rss_bytes() keeps counting from the start).
bool reset_peak_rss();

}  // namespace sdrt
