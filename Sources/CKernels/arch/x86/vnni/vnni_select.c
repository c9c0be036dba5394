#include "kernels_internal.h"

#if defined(__x86_64__)
//
// The kernels of vnni_kernels.h in the encoding this CPU and level have: EVEX (AVX512-VNNI) at
// levels avx512 and amx, whose CPUs have it (dispatch.c asks for it there), and at level avxvnni
// on a CPU without AVX-VNNI; VEX (AVX-VNNI) otherwise. Both give the same bits, and pack the
// same panels.
int kernels_vnni_evex(void) { return kernels_level() >= LEVEL_AVX512 || !__builtin_cpu_supports("avxvnni"); }

void gemm_i8i8_i32_avxvnni(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    if (kernels_vnni_evex()) gemm_i8i8_i32_vnni_evex(m, n, kp, a, w, c);
    else gemm_i8i8_i32_vnni_vex(m, n, kp, a, w, c);
}

void gemm_i16i8_i32_avxvnni(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    if (kernels_vnni_evex()) gemm_i16i8_i32_vnni_evex(m, n, kp, a, w, c);
    else gemm_i16i8_i32_vnni_vex(m, n, kp, a, w, c);
}

size_t vnni_panels_bytes(size_t n, size_t kp) {
    const size_t panels = (n + 7) / 8, groups = (kp + 3) / 4;
    return panels * groups * 32 + panels * 8 * sizeof(uint32_t) + 64;
}

void pack_vnni_panels(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t p0, size_t p1) {
    if (kernels_vnni_evex()) pack_panels_vnni_evex(n, kp, w, wp, p0, p1);
    else pack_panels_vnni_vex(n, kp, w, wp, p0, p1);
}

void gemm_i8i8_i32_avxvnni_panels(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, const int8_t *wp,
                                  int32_t *c) {
    if (kernels_vnni_evex()) gemm_i8i8_i32_panels_vnni_evex(m, n, kp, a, w, wp, c);
    else gemm_i8i8_i32_panels_vnni_vex(m, n, kp, a, w, wp, c);
}
#endif
