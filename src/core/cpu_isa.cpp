#include "core/cpu_isa.h"

#include <cpuid.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>

#include "core/error.h"

namespace sdrt {

namespace {

constexpr const char* kNames[] = {"scalar", "avx2", "avx512", "avx512_bf16"};

struct CpuidRegs {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
};

CpuidRegs cpuid(unsigned leaf, unsigned subleaf) {
  CpuidRegs r;
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
  return r;
}

bool bit(unsigned reg, int n) { return (reg >> n) & 1u; }

// The register state the operating system saves across context switches (XCR0): a feature whose
// registers it does not save cannot be used, whatever CPUID says.
uint64_t os_saved_state() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

// From CPUID directly (Intel SDM vol. 2, CPUID; the same bits for AMD), rather than
// __builtin_cpu_supports, whose feature names differ between GCC and Clang.
Isa detect() {
  if (cpuid(0, 0).eax < 7) return Isa::scalar;
  const CpuidRegs leaf1 = cpuid(1, 0), leaf7 = cpuid(7, 0);
  const bool osxsave = bit(leaf1.ecx, 27);
  const uint64_t xcr0 = osxsave ? os_saved_state() : 0;
  const bool os_ymm = (xcr0 & 0x6) == 0x6, os_zmm = (xcr0 & 0xE6) == 0xE6;
  const bool avx2 = os_ymm && bit(leaf1.ecx, 28) /* AVX */ && bit(leaf1.ecx, 12) /* FMA */ &&
                    bit(leaf1.ecx, 29) /* F16C */ && bit(leaf7.ebx, 5) /* AVX2 */ && bit(leaf7.ebx, 8) /* BMI2 */;
  if (!avx2) return Isa::scalar;
  const bool avx512 = os_zmm && bit(leaf7.ebx, 16) /* F */ && bit(leaf7.ebx, 17) /* DQ */ &&
                      bit(leaf7.ebx, 28) /* CD */ && bit(leaf7.ebx, 30) /* BW */ && bit(leaf7.ebx, 31) /* VL */;
  if (!avx512) return Isa::avx2;
  const bool bf16 = bit(leaf7.ecx, 11) /* AVX512_VNNI */ && bit(cpuid(7, 1).eax, 5) /* AVX512_BF16 */;
  return bf16 ? Isa::avx512_bf16 : Isa::avx512;
}

}  // namespace

const char* isa_name(Isa isa) { return kNames[static_cast<int>(isa)]; }

std::optional<Isa> isa_from_name(std::string_view name) {
  for (size_t i = 0; i < std::size(kNames); ++i)
    if (name == kNames[i]) return static_cast<Isa>(i);
  return std::nullopt;
}

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

std::optional<Isa> isa_cap_from_environment() {
  const char* value = std::getenv("SDRT_MAX_ISA");
  if (value == nullptr || *value == '\0') return std::nullopt;
  std::optional<Isa> cap = isa_from_name(value);
  SDRT_CHECK(cap.has_value(), "SDRT_MAX_ISA='", value, "' is not an instruction set sdrt knows (expected scalar, avx2, ",
             "avx512 or avx512_bf16)");
  return cap;
}

Isa active_isa() {
  static const Isa isa = [] {
    std::optional<Isa> cap = isa_cap_from_environment();
    return cap ? std::min(*cap, detected_isa()) : detected_isa();
  }();
  return isa;
}

std::string isa_summary() {
  std::string s = isa_name(active_isa());
  if (active_isa() != detected_isa())
    s += std::string(" (CPU: ") + isa_name(detected_isa()) + ", capped by SDRT_MAX_ISA=" + std::getenv("SDRT_MAX_ISA") +
         ")";
  return s;
}

std::string cpu_model_name() {
  unsigned max_leaf = __get_cpuid_max(0x80000000u, nullptr);
  if (max_leaf < 0x80000004u) return "unknown CPU";
  char brand[49] = {};
  for (unsigned leaf = 0; leaf < 3; ++leaf) {
    unsigned regs[4];
    __get_cpuid(0x80000002u + leaf, &regs[0], &regs[1], &regs[2], &regs[3]);
    std::memcpy(brand + 16 * leaf, regs, sizeof regs);
  }
  std::string s(brand);
  s.erase(0, s.find_first_not_of(' '));
  s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

}  // namespace sdrt
