// The CPU features the kernel levels need, as bits (backend/cpu_features.c probes them once; the
// kernel tables in backend/kernel_table.c say which each level requires).
#ifndef DLORAL_CPU_FEATURES_H
#define DLORAL_CPU_FEATURES_H

enum {
    // x86-64. CPU_X86_AMX: AMX-INT8 and AMX-TILE, with the OS's grant of tile data to the process.
    CPU_X86_AVX2 = 1u << 0,
    CPU_X86_FMA = 1u << 1,
    CPU_X86_F16C = 1u << 2,
    CPU_X86_AVXVNNI = 1u << 3,
    CPU_X86_AVX512F = 1u << 4,
    CPU_X86_AVX512BW = 1u << 5,
    CPU_X86_AVX512VL = 1u << 6,
    CPU_X86_AVX512DQ = 1u << 7,
    CPU_X86_AVX512VNNI = 1u << 8,
    CPU_X86_AVX512VBMI = 1u << 9,
    CPU_X86_AMX = 1u << 10,
    // arm64: Advanced SIMD (every arm64 CPU) and the SDOT instructions (FEAT_DotProd).
    CPU_ARM_NEON = 1u << 16,
    CPU_ARM_DOTPROD = 1u << 17,
};

// The AVX2/FMA/F16C base of every x86-64 vector level, and the AVX-512 subset the 512-bit kernels
// use (F, BW, VL, DQ; VNNI for the EVEX integer kernels).
#define CPU_X86_BASE (CPU_X86_AVX2 | CPU_X86_FMA | CPU_X86_F16C)
#define CPU_X86_AVX512 (CPU_X86_AVX512F | CPU_X86_AVX512BW | CPU_X86_AVX512VL | CPU_X86_AVX512DQ | CPU_X86_AVX512VNNI)

// This CPU's features, probed on first use (thread-safe; the same value every call).
unsigned cpu_features(void);

#endif
