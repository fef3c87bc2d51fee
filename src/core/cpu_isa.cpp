#include "core/cpu_isa.h"

#include <cpuid.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace sdrt {

namespace {

constexpr const char* kNames[] = {"scalar", "avx2", "avx512", "avx512_bf16"};

// __builtin_cpu_supports checks the OS's XSAVE state too (XCR0), so a feature the kernel does not
// save across context switches counts as absent.
Isa detect() {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
                    __builtin_cpu_supports("bmi2");
  if (!avx2) return Isa::scalar;
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
                      __builtin_cpu_supports("avx512cd");
  if (!avx512) return Isa::avx2;
  const bool bf16 = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vnni");
  return bf16 ? Isa::avx512_bf16 : Isa::avx512;
}

}  // namespace

const char* isa_name(Isa isa) { return kNames[static_cast<int>(isa)]; }

std::optional<Isa> isa_from_name(std::string_view name) {
  for (int i = 0; i < 4; ++i)
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
