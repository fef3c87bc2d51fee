#include "core/parallel.h"

#include <omp.h>

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace sdrt {

int num_threads() { return omp_get_max_threads(); }

int physical_cores() {
  // Count distinct (physical id, core id) pairs; SMT siblings share a core's FMA units,
  // so running one thread per core is what compute-bound kernels want.
  std::ifstream in("/proc/cpuinfo");
  std::set<std::pair<std::string, std::string>> cores;
  std::string line, phys = "0";
  while (std::getline(in, line)) {
    auto value = [&] { return line.substr(line.find(':') + 1); };
    if (line.rfind("physical id", 0) == 0) phys = value();
    if (line.rfind("core id", 0) == 0) cores.emplace(phys, value());
  }
  if (!cores.empty()) return static_cast<int>(cores.size());
  unsigned hw = std::thread::hardware_concurrency();
  return hw ? static_cast<int>(hw) : 1;
}

void set_num_threads(int n) { omp_set_num_threads(n > 0 ? n : physical_cores()); }

}  // namespace sdrt
