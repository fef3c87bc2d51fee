#include "core/half.h"

#include <algorithm>

#include <immintrin.h>

#include "core/cpu_isa.h"

namespace sdrt {

namespace {

// Large enough that a thread's share amortises the fork, small enough to balance two cores.
constexpr int64_t kBlock = int64_t{1} << 16;

// F16C's vcvtph2ps, compiled for it alone and called only where the CPU has it (every CPU of
// the avx2 tier does). Returns how many values it converted: a multiple of 8.
[[gnu::target("avx,f16c")]] int64_t f16_block_f16c(const uint8_t* src, float* dst, int64_t n) {
  int64_t k = 0;
  for (; k + 8 <= n; k += 8)
    _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * k))));
  return k;
}

void f16_block(const uint8_t* src, float* dst, int64_t n) {
  int64_t k = active_isa() >= Isa::avx2 ? f16_block_f16c(src, dst, n) : 0;
  for (; k < n; ++k) {
    uint16_t h;
    std::memcpy(&h, src + 2 * k, 2);
    dst[k] = f16_to_float(h);
  }
}

void bf16_block(const uint8_t* src, float* dst, int64_t n) {
  for (int64_t k = 0; k < n; ++k) {
    uint16_t h;
    std::memcpy(&h, src + 2 * k, 2);
    dst[k] = bf16_to_float(h);  // a shift: the compiler vectorises it
  }
}

template <class Block>
void convert_in_blocks(const uint8_t* src, float* dst, int64_t n, Block block) {
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) {
    int64_t begin = b * kBlock, count = std::min(kBlock, n - begin);
    block(src + 2 * begin, dst + begin, count);
  }
}

}  // namespace

void f16_to_float_n(const uint8_t* src, float* dst, int64_t n) { convert_in_blocks(src, dst, n, f16_block); }

void bf16_to_float_n(const uint8_t* src, float* dst, int64_t n) { convert_in_blocks(src, dst, n, bf16_block); }

}  // namespace sdrt
