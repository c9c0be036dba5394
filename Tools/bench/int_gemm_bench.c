// Seed of the integer-kernel micro-benchmark (issue 6): GMAC/s of the AVX2 and scalar paths at one SD-like shape.
// Build at -O2 (the debug SwiftPM build compiles C at -O0) from Tools/bench:
// cc -O2 -I../../Sources/CKernels -I../../Sources/CKernels/include int_gemm_bench.c \
//    ../../Sources/CKernels/int8_gemm.c ../../Sources/CKernels/dispatch.c ../../Sources/CKernels/scalar.c ../../Sources/CKernels/avx2.c -lm
#include "dloral_kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

int main(void) {
    size_t m = 256, n = 320, kp = 2880;
    int8_t *a8 = malloc(m * kp), *w = malloc(n * kp);
    int16_t *a16 = malloc(m * kp * 2);
    int32_t *c = malloc(m * n * 4);
    srand(1);
    for (size_t i = 0; i < m * kp; i++) { a8[i] = (int8_t)(rand() % 255 - 127); a16[i] = (int16_t)(rand() % 2049 - 1024); }
    for (size_t i = 0; i < n * kp; i++) w[i] = (int8_t)(rand() % 255 - 127);
    const char *paths[] = {"scalar", "avx2"};
    for (int p = 0; p < 2; p++) {
        dloral_kernels_force(paths[p]);
        double best8 = 1e9, best16 = 1e9;
        for (int r = 0; r < 5; r++) {
            double t0 = now(); dloral_gemm_i8i8_i32(m, n, kp, a8, w, c);
            double t1 = now(); dloral_gemm_i16i8_i32(m, n, kp, a16, w, c);
            double t2 = now();
            if (t1 - t0 < best8) best8 = t1 - t0;
            if (t2 - t1 < best16) best16 = t2 - t1;
        }
        double macs = (double)m * n * kp;
        printf("%-6s i8i8 %.2f GMAC/s  i16i8 %.2f GMAC/s (1 thread)\n", dloral_kernels_isa(), macs / best8 / 1e9, macs / best16 / 1e9);
    }
    return 0;
}
