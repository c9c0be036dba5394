// A/B of the AMX GEMMs (amx.c) against the same file at another revision, in one process: a
// virtual machine's speed can move more between runs minutes apart than most kernel changes do, so
// two builds timed one after the other cannot tell them apart. Here the base revision's amx.c is
// compiled beside the working tree's (its entry points renamed base_*, by amx_ab.sh), and every
// round times both on the same inputs in alternating order; medians of the rounds and their
// ratio, per SD shape, 1 thread, on weights packed beforehand as a layer call packs them, at the
// layer driver's rows per block. The outputs are compared (bits) first. Run the same file against
// itself (base HEAD, clean tree) to see the instrument's spread on a machine before reading a ratio.
//
// Run from the repository root (needs level amx):
//   Tools/bench/amx_ab.sh [base revision, default HEAD] [--runs N]
#include "kernels_internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void base_gemm_i8i8_i32_amx_packed(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, const int8_t *wp,
                                   int32_t *c);
void base_gemm_i16i8_i32_amx_packed(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w,
                                    const int8_t *wp, int32_t *c);

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

// SD 2.1 layers: name, weight rows n, K (kp).
static const struct { const char *name; size_t n, k; } shapes[] = {
    {"UNet conv 3x3 320->320", 320, 2880},     {"UNet conv 3x3 640->640", 640, 5760},
    {"UNet conv 3x3 1280->1280", 1280, 11520}, {"UNet linear 320->320", 320, 320},
    {"UNet GEGLU 320->2560", 2560, 320},       {"UNet linear 1280->1280", 1280, 1280},
    {"VAE conv 3x3 128->128", 128, 1152},      {"VAE conv 3x3 256->256", 256, 2304},
    {"VAE conv 3x3 512->512", 512, 4608},
};

static void run(int which, int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w, const int8_t *wp,
                int32_t *c) {
    if (bits == 8) (which ? gemm_i8i8_i32_amx_packed : base_gemm_i8i8_i32_amx_packed)(m, n, kp, a, w, wp, c);
    else (which ? gemm_i16i8_i32_amx_packed : base_gemm_i16i8_i32_amx_packed)(m, n, kp, a, w, wp, c);
}

int main(int argc, char **argv) {
    int runs = 15;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (runs < 1 || runs > 101) runs = 15;
    if (!dloral_kernels_for_level("amx")) {  // asks the OS for tile data
        fprintf(stderr, "amx_ab: this CPU (or OS) has no level amx\n");
        return 2;
    }
    printf("%d rounds, medians, 1 thread; GMAC/s of the base revision and of the working tree\n", runs);
    printf("%-26s %5s %5s %6s %9s %9s %7s %s\n", "shape", "bits", "rows", "K", "base", "tree", "ratio", "bits equal");
    double *t[2] = {malloc(runs * sizeof(double)), malloc(runs * sizeof(double))};
    srand(1);
    for (int bits = 8; bits <= 16; bits += 8)
        for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++) {
            const size_t n = shapes[q].n, kp = shapes[q].k, m = int_layer_block_rows(bits, kp, n);
            void *a = aligned_alloc(64, (m * kp * (bits / 8) + 63) / 64 * 64);
            int8_t *w = aligned_alloc(64, (n * kp + 63) / 64 * 64);
            int32_t *c[2] = {aligned_alloc(64, (m * n * 4 + 63) / 64 * 64), aligned_alloc(64, (m * n * 4 + 63) / 64 * 64)};
            if (!a || !w || !c[0] || !c[1]) return 2;
            for (size_t i = 0; i < m * kp; i++) {
                if (bits == 8) ((int8_t *)a)[i] = (int8_t)rand();
                else ((int16_t *)a)[i] = (int16_t)rand();
            }
            for (size_t i = 0; i < n * kp; i++) w[i] = (int8_t)rand();
            int8_t *wp = amx_pack_weights(bits, n, kp, w);
            if (!wp) return 2;
            run(0, bits, m, n, kp, a, w, wp, c[0]);
            run(1, bits, m, n, kp, a, w, wp, c[1]);
            const int same = memcmp(c[0], c[1], m * n * 4) == 0;
            const double macs = (double)m * n * kp;
            const size_t reps = (size_t)(2e9 / macs) + 1;  // ≈ 2 ms of products per sample at 1 TMAC/s
            for (int r = 0; r < runs; r++)
                for (int i = 0; i < 2; i++) {
                    const int which = (r + i) % 2;  // alternate which goes first
                    const double t0 = now();
                    for (size_t x = 0; x < reps; x++) run(which, bits, m, n, kp, a, w, wp, c[which]);
                    t[which][r] = (now() - t0) / reps;
                }
            qsort(t[0], runs, sizeof(double), cmp);
            qsort(t[1], runs, sizeof(double), cmp);
            const double g0 = macs / t[0][runs / 2] / 1e9, g1 = macs / t[1][runs / 2] / 1e9;
            printf("%-26s %5d %5zu %6zu %9.1f %9.1f %7.2f %s\n", shapes[q].name, bits, m, kp, g0, g1, g1 / g0,
                   same ? "yes" : "NO");
            free(a), free(w), free(c[0]), free(c[1]), free(wp);
        }
    free(t[0]), free(t[1]);
    return 0;
}
