// The VNNI kernels of vnni_kernels.h in the EVEX encoding (AVX512-VNNI on ymm, with AVX512VL):
// levels avx512 and amx, and level avxvnni on a CPU without AVX-VNNI.
#if defined(__x86_64__)
#define VNNI __attribute__((target("avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))
#define DPBUSD _mm256_dpbusd_epi32
#define DPWSSD _mm256_dpwssd_epi32
#define VNNI_FN(name) name##_vnni_evex
#include "vnni_kernels.h"
#endif
