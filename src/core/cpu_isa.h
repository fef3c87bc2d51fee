// The instruction sets sdrt's own vectorised kernels are compiled for, detected once from CPUID.
// Each vectorised kernel file is compiled once per ISA tier (CMakeLists.txt: SDRT_ISA_KERNELS)
// and kernels/isa_dispatch.cpp calls the tier active_isa() names; the rest of the build targets
// baseline x86-64, so one binary runs on any x86-64 CPU.
//
// SDRT_MAX_ISA=scalar|avx2|avx512|avx512_bf16 caps the tier (and oneDNN's, see
// kernels::apply_isa_cap_to_onednn), so a machine with AVX-512 can run the AVX2 and scalar paths.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sdrt {

// Ordered: each tier includes the ones below it.
enum class Isa {
  scalar = 0,       // baseline x86-64 (SSE2); the kernels' portable lane loops
  avx2 = 1,         // AVX2 + FMA + F16C (x86-64-v3): Haswell and later, Zen 1 and later
  avx512 = 2,       // AVX-512 F/CD/BW/DQ/VL (x86-64-v4): Skylake-SP and later, Zen 4 and later
  avx512_bf16 = 3,  // avx512 + AVX512_BF16 + AVX512_VNNI: Cooper Lake, Sapphire Rapids, Zen 4 and later
};

const char* isa_name(Isa isa);
std::optional<Isa> isa_from_name(std::string_view name);  // the names isa_name gives

// The highest tier the CPU and the operating system support.
Isa detected_isa();
// The cap from SDRT_MAX_ISA, if set (an unknown name is an error naming the accepted ones).
std::optional<Isa> isa_cap_from_environment();
// min(detected_isa(), cap): the tier every vectorised kernel runs. Fixed for the process's life.
Isa active_isa();
// One line for --version and benchmark reports, e.g. "avx2 (CPU: avx512_bf16, capped by SDRT_MAX_ISA=avx2)".
std::string isa_summary();
// The CPU's brand string from CPUID, e.g. "AMD EPYC 7B13 64-Core Processor".
std::string cpu_model_name();

}  // namespace sdrt
