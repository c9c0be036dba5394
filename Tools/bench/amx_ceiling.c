// How fast the AMX 2 × 2 tile block can run when its tiles come from memory: the int8
// GEMM kernel's inner loop (per 64-wide step of k: 2 A and 2 B tile loads, 4 TDPBSSD), on
// operands of increasing size, against the register-only TDPBSSD loop measured beside each. The
// operands are whole tiles in a row (1 KiB per load), A: 32 rows × K, B: 32 columns × K; K sets
// where they live: 2 × 16 KiB (L1), 2 × 128 KiB and 2 × 512 KiB (L2), 2 × 4 MiB (beyond). The
// same 32 × 32 block of C is computed again and again, so nothing but the two operands moves.
//
// Run from the repository root (needs level amx):
//   clang -O2 -pthread -ISources/CKernels -ISources/CKernels/include -ISources/CThreadPool/include Tools/bench/amx_ceiling.c
//      $(find Sources/CKernels Sources/CThreadPool -name '*.c') -lm -o /tmp/amx_ceiling && /tmp/amx_ceiling
// (one line).
#include "amx_tiles.h"
#include "dloral_kernels.h"
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AMX __attribute__((target("amx-int8,amx-tile")))

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// GMAC/s of `passes` passes of the 2 × 2 block over `steps` steps of the tile operands a (two A
// tile sequences) and b (two B tile sequences); steps = 0: the loop on resident tiles only.
AMX static double block_rate(const int8_t *a, const int8_t *b, size_t steps, long passes) {
    bench_configure_tiles();
    _tile_zero(0), _tile_zero(1), _tile_zero(2), _tile_zero(3);
    double t0, t;
    if (steps == 0) {
        _tile_loadd(4, a, 64), _tile_loadd(5, a, 64), _tile_loadd(6, b, 64), _tile_loadd(7, b, 64);
        t0 = now();
        for (long i = 0; i < passes; i++) {
            _tile_dpbssd(0, 4, 6), _tile_dpbssd(1, 4, 7), _tile_dpbssd(2, 5, 6), _tile_dpbssd(3, 5, 7);
        }
        t = now() - t0;
        steps = 1;
    } else {
        const int8_t *a1 = a + steps * 1024, *b1 = b + steps * 1024;
        t0 = now();
        for (long p = 0; p < passes; p++)
            for (size_t s = 0; s < steps; s++) {
                _tile_loadd(6, b + s * 1024, 64);
                _tile_loadd(7, b1 + s * 1024, 64);
                _tile_loadd(4, a + s * 1024, 64);
                _tile_dpbssd(0, 4, 6);
                _tile_dpbssd(1, 4, 7);
                _tile_loadd(5, a1 + s * 1024, 64);
                _tile_dpbssd(2, 5, 6);
                _tile_dpbssd(3, 5, 7);
            }
        t = now() - t0;
    }
    _tile_release();
    return (double)passes * steps * 4 * 16384 / t / 1e9;
}

int main(void) {
    if (!dloral_kernels_for_level("amx")) {  // asks the OS for tile data
        fprintf(stderr, "amx_ceiling: this CPU (or OS) has no level amx\n");
        return 2;
    }
    static const struct { const char *where; size_t steps; } sizes[] = {
        {"2 x 16 KiB (L1)", 8}, {"2 x 128 KiB (L2)", 64}, {"2 x 512 KiB (L2)", 256}, {"2 x 4 MiB (L3, memory)", 2048},
    };
    enum { SAMPLES = 7 };
    printf("AMX 2 x 2 block, 1 thread, medians of %d samples; %% of the register-only TDPBSSD loop measured beside\n", SAMPLES);
    printf("%-24s %10s %10s %6s\n", "operands A and B", "GMAC/s", "peak", "%");
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t steps = sizes[i].steps, bytes = 2 * steps * 1024;
        int8_t *a = aligned_alloc(64, bytes), *b = aligned_alloc(64, bytes);
        if (!a || !b) return 2;
        for (size_t k = 0; k < bytes; k++) a[k] = (int8_t)(k * 7 + 1), b[k] = (int8_t)(k * 13 + 5);
        const long passes = (long)(4e10 / (steps * 4 * 16384.0)) + 1;  // ≈ 20–40 ms per sample
        double rate[SAMPLES], peak[SAMPLES];
        for (int r = 0; r < SAMPLES; r++) {
            peak[r] = block_rate(a, b, 0, 600000);
            rate[r] = block_rate(a, b, steps, passes);
        }
        qsort(rate, SAMPLES, sizeof(double), cmp);
        qsort(peak, SAMPLES, sizeof(double), cmp);
        printf("%-24s %10.1f %10.1f %5.0f%%\n", sizes[i].where, rate[SAMPLES / 2], peak[SAMPLES / 2],
               100 * rate[SAMPLES / 2] / peak[SAMPLES / 2]);
        free(a), free(b);
    }
    return 0;
}
