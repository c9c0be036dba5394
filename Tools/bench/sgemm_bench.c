// fp32 GEMM micro-benchmark: median GFLOP/s of dloral_sgemm (1 and 2 threads) against OpenBLAS
// cblas_sgemm at the Stable Diffusion shapes the engine runs, next to a register-only FMA peak.
// Build at -O2 (the debug SwiftPM build compiles C at -O0) from Tools/bench:
//   cc -O2 -mavx2 -mfma -pthread -I../../Sources/CKernels -I../../Sources/CKernels/include
//      $(pkg-config --cflags openblas) sgemm_bench.c ../../Sources/CKernels/*.c
//      $(pkg-config --libs openblas) -lm -o sgemm_bench
// (-mavx2 -mfma are not needed for the kernels, which are compiled for AVX2 per function; the
// driver and packing are plain C, as in the SwiftPM build. cc is GCC here; SwiftPM uses clang.)
// Run: ./sgemm_bench                            (OpenBLAS with the kernel it picks itself)
//      OPENBLAS_CORETYPE=Haswell ./sgemm_bench  (OpenBLAS forced to its AVX2 kernels)
// Options: -r N repetitions per measurement (default 7), -q only the first two shapes.
// "max rel" is max |dloral − OpenBLAS| / max |OpenBLAS| over C (a sanity check, not a test).
#include "dloral_kernels.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static double median(double *v, int n) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// 12 independent chains of vfmadd on registers, the shape of the 6×16 tile without memory. The
// chains start from different values and pass through empty asm statements, so that the compiler
// can neither merge nor drop any of them (GCC merges chains that start equal).
__attribute__((target("avx2,fma"), noinline)) static float fma_peak_loop(long iters, float seed) {
    const __m256 y = _mm256_set1_ps(0.999999f), x = _mm256_set1_ps(1e-3f);
    __m256 c0 = _mm256_set1_ps(seed), c1 = _mm256_set1_ps(seed + 1), c2 = _mm256_set1_ps(seed + 2);
    __m256 c3 = _mm256_set1_ps(seed + 3), c4 = _mm256_set1_ps(seed + 4), c5 = _mm256_set1_ps(seed + 5);
    __m256 c6 = _mm256_set1_ps(seed + 6), c7 = _mm256_set1_ps(seed + 7), c8 = _mm256_set1_ps(seed + 8);
    __m256 c9 = _mm256_set1_ps(seed + 9), c10 = _mm256_set1_ps(seed + 10), c11 = _mm256_set1_ps(seed + 11);
    for (long i = 0; i < iters; i++) {
        c0 = _mm256_fmadd_ps(c0, y, x); c1 = _mm256_fmadd_ps(c1, y, x); c2 = _mm256_fmadd_ps(c2, y, x);
        c3 = _mm256_fmadd_ps(c3, y, x); c4 = _mm256_fmadd_ps(c4, y, x); c5 = _mm256_fmadd_ps(c5, y, x);
        c6 = _mm256_fmadd_ps(c6, y, x); c7 = _mm256_fmadd_ps(c7, y, x); c8 = _mm256_fmadd_ps(c8, y, x);
        c9 = _mm256_fmadd_ps(c9, y, x); c10 = _mm256_fmadd_ps(c10, y, x); c11 = _mm256_fmadd_ps(c11, y, x);
        __asm__("" : "+x"(c0), "+x"(c1), "+x"(c2), "+x"(c3), "+x"(c4), "+x"(c5));
        __asm__("" : "+x"(c6), "+x"(c7), "+x"(c8), "+x"(c9), "+x"(c10), "+x"(c11));
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0];
}

static double fma_peak(int reps) {
    const long iters = 10000000;  // 120 M FMAs, 1.92 GFLOP
    double g[64];
    volatile float sink = 0;
    sink += fma_peak_loop(iters / 10, 1.0f);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        sink += fma_peak_loop(iters, 1.0f + r);
        g[r] = 12.0 * 16.0 * iters / (now() - t0) * 1e-9;
    }
    (void)sink;
    return median(g, reps);
}

typedef struct {
    const char *name;
    int ta, tb;
    size_t m, n, k;
} shape;

static const shape shapes[] = {
    {"conv 320x4096x2880", 0, 0, 320, 4096, 2880},
    {"conv 640x1024x5760", 0, 0, 640, 1024, 5760},
    {"conv 1280x256x11520", 0, 0, 1280, 256, 11520},
    {"linear 4096x320x320 (B^T)", 0, 1, 4096, 320, 320},
    {"attn QK^T 1024x4096x64 (B^T)", 0, 1, 1024, 4096, 64},
    {"attn PV 1024x64x4096", 0, 0, 1024, 64, 4096},
};

static void run_dloral(const shape *s, const float *a, const float *b, float *c) {
    dloral_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, s->ta ? s->m : s->k, b, s->tb ? s->k : s->n, 0.0f, c, s->n);
}

static void run_openblas(const shape *s, const float *a, const float *b, float *c) {
    cblas_sgemm(CblasRowMajor, s->ta ? CblasTrans : CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, (int)s->m,
                (int)s->n, (int)s->k, 1.0f, a, (int)(s->ta ? s->m : s->k), b, (int)(s->tb ? s->k : s->n), 0.0f, c,
                (int)s->n);
}

static double median_gflops(void (*f)(const shape *, const float *, const float *, float *), const shape *s,
                            const float *a, const float *b, float *c, int reps) {
    double g[64];
    f(s, a, b, c);  // warm-up (thread start, packing buffers, page faults)
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        f(s, a, b, c);
        g[r] = 2.0 * s->m * s->n * s->k / (now() - t0) * 1e-9;
    }
    return median(g, reps);
}

// Median GFLOP/s of dloral_sgemm, then of cblas_sgemm, on `threads` threads. (Not interleaved:
// OpenBLAS workers spin for a while after a call and would take the core from ours.)
static void measure(const shape *s, const float *a, const float *b, float *c, float *cref, int threads, int reps,
                    double *dloral, double *openblas) {
    dloral_threads_force(threads);
    openblas_set_num_threads(threads);
    *dloral = median_gflops(run_dloral, s, a, b, c, reps);
    *openblas = median_gflops(run_openblas, s, a, b, cref, reps);
    struct timespec pause = {0, 200000000};  // let OpenBLAS's workers go to sleep
    nanosleep(&pause, NULL);
}

int main(int argc, char **argv) {
    int reps = 7, nshapes = (int)(sizeof shapes / sizeof *shapes);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-q") == 0) nshapes = 2;
    }
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    printf("dloral path %s, OpenBLAS %s (%s)\n", dloral_kernels_isa(), openblas_get_corename(), openblas_get_config());
    printf("GFLOP/s, median of %d; peak = 1-thread FMA peak (12 register chains) measured just before each shape\n\n", reps);
    printf("%-30s %6s %9s %9s %9s %9s %7s %9s\n", "shape (m x n x k)", "peak", "dloral/1", "dloral/2", "oblas/1",
           "oblas/2", "%peak/1", "max rel");
    for (int i = 0; i < nshapes; i++) {
        const shape *s = &shapes[i];
        size_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
        float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
        float *c = malloc(nc * sizeof(float)), *cref = malloc(nc * sizeof(float));
        srand(1);
        for (size_t j = 0; j < na; j++) a[j] = (float)rand() / (float)RAND_MAX - 0.5f;
        for (size_t j = 0; j < nb; j++) b[j] = (float)rand() / (float)RAND_MAX - 0.5f;
        double peak = fma_peak(reps < 3 ? reps : 3), d1, d2, o1, o2;
        measure(s, a, b, c, cref, 1, reps, &d1, &o1);
        measure(s, a, b, c, cref, 2, reps, &d2, &o2);
        double worst = 0, scale = 0;
        for (size_t j = 0; j < nc; j++) scale = fmax(scale, fabs(cref[j]));
        for (size_t j = 0; j < nc; j++) worst = fmax(worst, fabs(c[j] - cref[j]) / scale);
        printf("%-30s %6.1f %9.1f %9.1f %9.1f %9.1f %6.0f%% %9.1e\n", s->name, peak, d1, d2, o1, o2, 100 * d1 / peak,
               worst);
        fflush(stdout);
        free(a);
        free(b);
        free(c);
        free(cref);
    }
    dloral_threads_force(0);
    return 0;
}
