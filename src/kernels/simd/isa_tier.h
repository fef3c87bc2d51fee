// The ISA tier a vectorised kernel file is being compiled for. CMake compiles each file of
// SDRT_ISA_KERNELS once per tier with SDRT_ISA_NS (the tier's name, used as the namespace
// sdrt::kernels::<tier>) and SDRT_ISA_LEVEL (its core/cpu_isa.h Isa value), next to the tier's
// -march flags; this header stops a build whose flags and tier disagree.
#pragma once

#if !defined(SDRT_ISA_NS) || !defined(SDRT_ISA_LEVEL)
#error "vectorised kernels are compiled once per ISA tier: SDRT_ISA_NS and SDRT_ISA_LEVEL must be defined (CMakeLists.txt)"
#endif
#if SDRT_ISA_LEVEL >= 1 && !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__))
#error "ISA tier avx2 and up need -march=x86-64-v3 (AVX2, FMA, F16C)"
#endif
#if SDRT_ISA_LEVEL >= 2 && !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__))
#error "ISA tier avx512 and up need -march=x86-64-v4 (AVX-512 F/BW/DQ/VL)"
#endif
#if SDRT_ISA_LEVEL >= 3 && !defined(__AVX512BF16__)
#error "ISA tier avx512_bf16 needs -mavx512bf16"
#endif
#if SDRT_ISA_LEVEL < 1 && defined(__AVX__)
#error "the scalar ISA tier is compiled with AVX enabled: its code would not run on the CPUs it is for"
#endif
#if SDRT_ISA_LEVEL < 2 && defined(__AVX512F__)
#error "an ISA tier below avx512 is compiled with AVX-512 enabled: its code would not run on the CPUs it is for"
#endif

#define SDRT_ISA_STRINGIFY_(x) #x
#define SDRT_ISA_STRINGIFY(x) SDRT_ISA_STRINGIFY_(x)
// The tier's name as a string literal, e.g. "avx2".
#define SDRT_ISA_NAME SDRT_ISA_STRINGIFY(SDRT_ISA_NS)
