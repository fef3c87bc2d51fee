#include "core/memory_stats.h"

#include <malloc.h>

#include <fstream>
#include <string>

namespace sdrt {

namespace {

int64_t status_field_kb(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == field) {
      int64_t kb = 0;
      in >> kb;
      return kb;
    }
    in.ignore(1 << 12, '\n');
  }
  return 0;
}

}  // namespace

int64_t peak_rss_bytes() { return status_field_kb("VmHWM:") * 1024; }
int64_t current_rss_bytes() { return status_field_kb("VmRSS:") * 1024; }

bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";  // Linux: "reset the peak resident set size ("high water mark") to the current value"
  out.flush();
  return static_cast<bool>(out);
}

void return_large_frees_to_the_kernel() { mallopt(M_MMAP_THRESHOLD, 1 << 20); }

}  // namespace sdrt
