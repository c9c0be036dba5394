// The one probe of the CPU: which features (cpu_features.h) the kernels may use.
#include "cpu_features.h"

#include <stddef.h>

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20)
#endif
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#if defined(__x86_64__)
// AMX tile data is off for a process until it asks the kernel (Linux ≥ 5.16) for it; the grant is
// for the whole process.
static int amx_permitted(void) {
#if defined(__linux__)
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return 0;
#endif
}

static unsigned probe(void) {
    __builtin_cpu_init();
    const struct {
        int has;
        unsigned bit;
    } features[] = {
        {__builtin_cpu_supports("avx2"), CPU_X86_AVX2},
        {__builtin_cpu_supports("fma"), CPU_X86_FMA},
        {__builtin_cpu_supports("f16c"), CPU_X86_F16C},
        {__builtin_cpu_supports("avxvnni"), CPU_X86_AVXVNNI},
        {__builtin_cpu_supports("avx512f"), CPU_X86_AVX512F},
        {__builtin_cpu_supports("avx512bw"), CPU_X86_AVX512BW},
        {__builtin_cpu_supports("avx512vl"), CPU_X86_AVX512VL},
        {__builtin_cpu_supports("avx512dq"), CPU_X86_AVX512DQ},
        {__builtin_cpu_supports("avx512vnni"), CPU_X86_AVX512VNNI},
        {__builtin_cpu_supports("avx512vbmi"), CPU_X86_AVX512VBMI},
    };
    unsigned have = 0;
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (features[i].has) have |= features[i].bit;
    // Tile data is asked for only when the rest of what the amx level needs is there (the grant
    // is for the whole process).
    const unsigned amx_rest = CPU_X86_BASE | CPU_X86_AVX512 | CPU_X86_AVX512VBMI;
    if ((have & amx_rest) == amx_rest && __builtin_cpu_supports("amx-int8") && __builtin_cpu_supports("amx-tile") &&
        amx_permitted())
        have |= CPU_X86_AMX;
    return have;
}
#elif defined(__aarch64__)
// SDOT (FEAT_DotProd): known at compile time when the whole build targets it, else asked of the
// OS (Linux: the ASIMDDP hwcap; Apple: sysctl), else no.
static unsigned probe(void) {
    unsigned have = CPU_ARM_NEON;
#if defined(__ARM_FEATURE_DOTPROD)
    have |= CPU_ARM_DOTPROD;
#elif defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) have |= CPU_ARM_DOTPROD;
#elif defined(__APPLE__)
    int flag = 0;
    size_t len = sizeof flag;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &flag, &len, NULL, 0) == 0 && flag != 0) have |= CPU_ARM_DOTPROD;
#endif
    return have;
}
#else
static unsigned probe(void) { return 0; }
#endif

// Bit 31 marks a probed value (no feature uses it).
static unsigned probed;

unsigned cpu_features(void) {
    unsigned v = __atomic_load_n(&probed, __ATOMIC_ACQUIRE);
    if (!(v & (1u << 31))) {
        v = probe() | (1u << 31);
        __atomic_store_n(&probed, v, __ATOMIC_RELEASE);
    }
    return v & ~(1u << 31);
}
