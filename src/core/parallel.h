// All parallel work in sdrt runs on the OpenMP pool, the same pool oneDNN (built with its
// OpenMP runtime on Debian) uses, so the two never oversubscribe the cores.
#pragma once

#include <cstdint>

namespace sdrt {

int num_threads();
// n <= 0 selects the number of physical cores.
void set_num_threads(int n);
int physical_cores();

template <typename F>
void parallel_for(int64_t n, F&& f) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) f(i);
}

}  // namespace sdrt
