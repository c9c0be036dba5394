// The VNNI kernels of vnni_kernels.h in the VEX encoding (AVX-VNNI): level avxvnni on a CPU that
// has it.
#if defined(__x86_64__)
#define VNNI __attribute__((target("avx2,fma,f16c,avxvnni")))
#define DPBUSD _mm256_dpbusd_avx_epi32
#define DPWSSD _mm256_dpwssd_avx_epi32
#define VNNI_FN(name) name##_vnni_vex
#include "vnni_kernels.h"
#endif
