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

// Makes every allocation of 1 MB or more its own mapping, returned to the kernel when freed. By
// default glibc raises that threshold to the size of any freed mapping (up to 32 MB), after which
// such buffers come from the heap and freed ones stay in the RSS: freeing the UNet's packed weights
// did that, and the VAE stage then held ~840 MB it had already freed. Activation reuse is the
// BufferCache's job, so nothing is lost. Process-wide: for a program's main(), before any work.
void return_large_frees_to_the_kernel();

}  // namespace sdrt
