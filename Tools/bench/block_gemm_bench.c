// Block-scale GEMM micro-benchmark (Formats/dlrt.md §4.3): GMAC/s of the int8 × int8
// GEMM with one scale per row and block of 32 columns on both sides, kernel by kernel, next to the
// per-row int8 GEMM of the same level on the same rows, at SD shapes, 1 thread. The kernels run
// in turn within each of --runs rounds; medians.
//
//   dot     gemm_i8i8_blocks_avx2: 1 × 4 dot-product tiles, one horizontal sum per block
//   panels  gemm_i8i8_blocks_avx2_panels: outputs in lanes on int16 weight panels (packed
//           beforehand, as a layer call shares them), the kernel below level amx
//   amx     gemm_i8i8_blocks_amx_packed on the tiles (weights packed beforehand), level amx
//   i8 avx2 / i8 amx  the per-row int8 GEMM (dloral_gemm_i8i8_i32 at avx2; the AMX kernel on
//           prepacked weights), for the cost of block scales
//
// Every kernel's output is compared with the dot kernel's (bits) before timing.
//
// Build at -O2 from the repository root:
//   cc -O2 -pthread -ISources/CKernels -ISources/CKernels/include -ISources/CThreadPool/include Tools/bench/block_gemm_bench.c
//      $(find Sources/CKernels Sources/CThreadPool -name '*.c') -lm -o /tmp/block_gemm_bench && /tmp/block_gemm_bench --runs 7
// (one line).
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include "kernels_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// The level the calls below run at (set before each measurement).
static const dloral_kernels *kernels;

// The level `name`, or the automatic one for NULL or a level this CPU cannot run.
static const dloral_kernels *kernels_at(const char *name) {
    const dloral_kernels *k = dloral_kernels_for_level(name);
    return k ? k : dloral_kernels_auto();
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, n, sizeof *v, cmp); return v[n / 2]; }
static void *aligned64(size_t bytes) { return aligned_alloc(64, (bytes + 63) / 64 * 64); }

// SD 2.1 layers (rows: the block-scale driver's rows per block, 512 KiB of int8 rows, whole tiles).
static const struct { const char *name; size_t n, k; } shapes[] = {
    {"UNet conv 3x3 320->320", 320, 2880},   {"UNet conv 3x3 640->640", 640, 5760},
    {"UNet conv 3x3 1280->1280", 1280, 11520}, {"UNet linear 320->320", 320, 320},
    {"UNet GEGLU 320->2560", 2560, 320},      {"UNet linear 1280->1280", 1280, 1280},
    {"VAE conv 3x3 128->128", 128, 1152},
};

enum { KERNELS = 5 };
static const char *const names[KERNELS] = {"dot", "panels", "amx", "i8 avx2", "i8 amx"};

int main(int argc, char **argv) {
    kernels = dloral_kernels_auto();
    int runs = 7;
    for (int i = 1; i + 1 < argc; i++) if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (runs < 1 || runs > 64) runs = 7;
    dloral_threads_force(1);
    kernels = kernels_at("amx");
    const int amx = !strcmp(dloral_kernels_name(kernels), "amx");
    kernels = kernels_at(NULL);
    printf("1 thread, block 32, %d rounds, medians, GMAC/s%s\n", runs, amx ? "" : " (no AMX: its columns -)");
    printf("%-26s %6s %9s %9s %9s %9s %9s %8s %8s %5s\n", "shape (n x K)", "rows", names[0], names[1], names[2],
           names[3], names[4], "pan/dot", "amx/i8", "bits");
    srand(1);
    const size_t block = 32;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const size_t n = shapes[si].n, kp = shapes[si].k, nb = kp / block;
        const size_t m = int_layer_block_scale_rows(kp);
        // 64-byte aligned, as the layer driver's scratch is: from malloc's 16-byte alignment every
        // tile row that loads a or stores c would cross a cache line and time a slower kernel than the
        // product runs.
        int8_t *a = aligned64(m * kp), *w = aligned64(n * kp);
        float *sa = malloc(m * nb * 4), *sw = malloc(n * nb * 4), *bias = malloc(n * 4);
        float *y[3] = {aligned64(m * n * 4), aligned64(m * n * 4), aligned64(m * n * 4)};
        int32_t *c = aligned64(m * n * 4);
        for (size_t i = 0; i < m * kp; i++) a[i] = (int8_t)(rand() % 255 - 127);
        for (size_t i = 0; i < n * kp; i++) w[i] = (int8_t)(rand() % 255 - 127);
        for (size_t i = 0; i < m * nb; i++) sa[i] = (float)(rand() % 1000 + 1) * 1e-5f;
        for (size_t i = 0; i < n * nb; i++) sw[i] = (float)(rand() % 1000 + 1) * 1e-5f;
        for (size_t i = 0; i < n; i++) bias[i] = (float)(rand() % 100) * 0.01f;
        int16_t *panels = aligned_alloc(64, (block_panels_bytes(n, kp) + 63) / 64 * 64);
        pack_block_panels(n, kp, w, panels, 0, (n + 7) / 8);
        int8_t *tiles = NULL;
        if (amx) {
            kernels = kernels_at("amx");
            tiles = amx_pack_weights(8, n, kp, w);
        }
        // Same bits first.
        gemm_i8i8_blocks_avx2(m, n, kp, block, a, sa, w, sw, bias, y[0], n, 1);
        gemm_i8i8_blocks_avx2_panels(m, n, kp, block, a, sa, w, panels, sw, bias, y[1], n, 1);
        int same = !memcmp(y[0], y[1], m * n * 4);
        if (tiles) {
            gemm_i8i8_blocks_amx_packed(m, n, kp, block, a, sa, w, tiles, sw, bias, y[2], n, 1);
            same &= !memcmp(y[0], y[2], m * n * 4);
        }
        const double macs = (double)m * n * kp;
        const size_t reps = 1 + (size_t)(1e9 / macs);
        double t[KERNELS][64];
        for (int r = 0; r < runs; r++)
            for (int kk = 0; kk < KERNELS; kk++) {
                if ((kk == 2 || kk == 4) && !tiles) {
                    t[kk][r] = 0;
                    continue;
                }
                if (kk == 3) kernels = kernels_at("avx2");
                double t0 = now();
                for (size_t q = 0; q < reps; q++) {
                    switch (kk) {
                    case 0: gemm_i8i8_blocks_avx2(m, n, kp, block, a, sa, w, sw, bias, y[0], n, 1); break;
                    case 1: gemm_i8i8_blocks_avx2_panels(m, n, kp, block, a, sa, w, panels, sw, bias, y[1], n, 1); break;
                    case 2: gemm_i8i8_blocks_amx_packed(m, n, kp, block, a, sa, w, tiles, sw, bias, y[2], n, 1); break;
                    case 3: dloral_gemm_i8i8_i32(kernels, m, n, kp, a, w, c); break;
                    case 4: gemm_i8i8_i32_amx_packed(m, n, kp, a, w, tiles, c); break;
                    }
                }
                t[kk][r] = (now() - t0) / reps;
                if (kk == 3) kernels = kernels_at(amx ? "amx" : NULL);
            }
        double g[KERNELS];
        for (int kk = 0; kk < KERNELS; kk++) g[kk] = t[kk][0] > 0 || (kk != 2 && kk != 4) ? macs / median(t[kk], runs) / 1e9 : 0;
        printf("%-26s %6zu", shapes[si].name, m);
        for (int kk = 0; kk < KERNELS; kk++) {
            if (g[kk] > 0) printf(" %9.1f", g[kk]);
            else printf(" %9s", "-");
        }
        printf(" %7.2fx", g[1] / g[0]);
        if (g[2] > 0) printf(" %7.2fx", g[2] / g[4]);
        else printf(" %8s", "-");
        printf(" %5s\n", same ? "same" : "DIFF");
        kernels = kernels_at(NULL);
        free(a), free(w), free(sa), free(sw), free(bias), free(y[0]), free(y[1]), free(y[2]), free(c), free(panels), free(tiles);
    }
    return 0;
}
