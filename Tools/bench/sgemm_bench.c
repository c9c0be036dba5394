// fp32 GEMM micro-benchmark: median GFLOP/s of dloral_sgemm on the avx2 level (6×16 ymm tile) and
// the avx512 level (8×32 zmm tile), 1 and 2 threads, against OpenBLAS cblas_sgemm at the Stable
// Diffusion shapes the engine runs, next to register-only FMA peaks.
// Build at -O2 (the debug SwiftPM build compiles C at -O0) from Tools/bench:
//   cc -O2 -mavx2 -mfma -pthread -I../../Sources/CKernels -I../../Sources/CKernels/include -I../../Sources/CThreadPool/include
//      $(pkg-config --cflags openblas) sgemm_bench.c $(find ../../Sources/CKernels ../../Sources/CThreadPool -name '*.c')
//      $(pkg-config --libs openblas) -lm -o sgemm_bench
// (-mavx2 -mfma are not needed for the kernels, which are compiled for AVX2 / AVX-512 per
// function; the driver and packing are plain C, as in the SwiftPM build. cc is GCC here; SwiftPM
// uses clang.)
// Run: ./sgemm_bench                              (OpenBLAS with the kernel it picks itself)
//      OPENBLAS_CORETYPE=Haswell ./sgemm_bench    (OpenBLAS forced to its AVX2 kernels)
//      OPENBLAS_CORETYPE=SkylakeX ./sgemm_bench   (its AVX-512 kernels; OpenBLAS 0.3.21 does not
//                                                  know Emerald Rapids and picks Prescott, SSE3)
// Options: -r N repetitions per measurement (default 7), -q only the first two shapes.
// A level the CPU lacks is skipped (shown as -). "bits" says whether the avx2 and avx512 results
// are bit-identical (they must be); "max rel" is max |dloral − OpenBLAS| / max |OpenBLAS| over C
// (a sanity check, not a test).
#include "dloral_kernels.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
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

// The same with zmm registers (16 floats per FMA): the peak the AVX-512 tile aims at.
__attribute__((target("avx512f"), noinline)) static float fma512_peak_loop(long iters, float seed) {
    const __m512 y = _mm512_set1_ps(0.999999f), x = _mm512_set1_ps(1e-3f);
    __m512 c0 = _mm512_set1_ps(seed), c1 = _mm512_set1_ps(seed + 1), c2 = _mm512_set1_ps(seed + 2);
    __m512 c3 = _mm512_set1_ps(seed + 3), c4 = _mm512_set1_ps(seed + 4), c5 = _mm512_set1_ps(seed + 5);
    __m512 c6 = _mm512_set1_ps(seed + 6), c7 = _mm512_set1_ps(seed + 7), c8 = _mm512_set1_ps(seed + 8);
    __m512 c9 = _mm512_set1_ps(seed + 9), c10 = _mm512_set1_ps(seed + 10), c11 = _mm512_set1_ps(seed + 11);
    for (long i = 0; i < iters; i++) {
        c0 = _mm512_fmadd_ps(c0, y, x); c1 = _mm512_fmadd_ps(c1, y, x); c2 = _mm512_fmadd_ps(c2, y, x);
        c3 = _mm512_fmadd_ps(c3, y, x); c4 = _mm512_fmadd_ps(c4, y, x); c5 = _mm512_fmadd_ps(c5, y, x);
        c6 = _mm512_fmadd_ps(c6, y, x); c7 = _mm512_fmadd_ps(c7, y, x); c8 = _mm512_fmadd_ps(c8, y, x);
        c9 = _mm512_fmadd_ps(c9, y, x); c10 = _mm512_fmadd_ps(c10, y, x); c11 = _mm512_fmadd_ps(c11, y, x);
        __asm__("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
        __asm__("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
    }
    __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                             _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
    s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
    float out[16];
    _mm512_storeu_ps(out, s);
    return out[0];
}

// Median 1-thread GFLOP/s of 12 chains of `lanes`-wide FMAs.
static double fma_peak(int reps, int lanes) {
    const long iters = 10000000;  // 120 M FMAs
    float (*loop)(long, float) = lanes == 16 ? fma512_peak_loop : fma_peak_loop;
    double g[64];
    volatile float sink = 0;
    sink += loop(iters / 10, 1.0f);
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        sink += loop(iters, 1.0f + r);
        g[r] = 12.0 * 2.0 * lanes * iters / (now() - t0) * 1e-9;
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
    dloral_sgemm(kernels, s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, s->ta ? s->m : s->k, b, s->tb ? s->k : s->n, 0.0f, c, s->n);
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

// Median GFLOP/s of dloral_sgemm on `level` (or -1 when the CPU lacks it) on `threads` threads.
static double measure_dloral(const char *level, const shape *s, const float *a, const float *b, float *c, int threads,
                             int reps) {
    kernels = kernels_at(level);
    if (strcmp(dloral_kernels_name(kernels), level) != 0) {
        kernels = kernels_at(NULL);
        return -1;
    }
    dloral_threads_force(threads);
    double g = median_gflops(run_dloral, s, a, b, c, reps);
    kernels = kernels_at(NULL);
    dloral_threads_force(0);
    return g;
}

// Median GFLOP/s of cblas_sgemm on `threads` threads. (Measured after ours, not interleaved:
// OpenBLAS workers spin for a while after a call and would take the core from ours.)
static double measure_openblas(const shape *s, const float *a, const float *b, float *c, int threads, int reps) {
    openblas_set_num_threads(threads);
    double g = median_gflops(run_openblas, s, a, b, c, reps);
    struct timespec pause = {0, 200000000};  // let OpenBLAS's workers go to sleep
    nanosleep(&pause, NULL);
    return g;
}

static void print_gflops(double g) {
    if (g < 0) printf(" %8s", "-");
    else printf(" %8.1f", g);
}

int main(int argc, char **argv) {
    kernels = dloral_kernels_auto();
    int reps = 7, nshapes = (int)(sizeof shapes / sizeof *shapes);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-r") == 0 && i + 1 < argc) reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "-q") == 0) nshapes = 2;
    }
    if (reps < 1) reps = 1;
    if (reps > 64) reps = 64;
    printf("dloral automatic level %s, OpenBLAS %s (%s)\n", dloral_kernels_name(kernels), openblas_get_corename(),
           openblas_get_config());
    printf("GFLOP/s, median of %d; peak = 1-thread FMA peak with ymm / zmm (12 register chains), measured just "
           "before each shape\n\n", reps);
    printf("%-30s %6s %6s %8s %8s %8s %8s %8s %8s %5s %8s\n", "shape (m x n x k)", "ymm", "zmm", "avx2/1", "avx2/2",
           "avx512/1", "avx512/2", "oblas/1", "oblas/2", "bits", "max rel");
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f");
    for (int i = 0; i < nshapes; i++) {
        const shape *s = &shapes[i];
        size_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
        float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
        float *c2 = malloc(nc * sizeof(float)), *c5 = malloc(nc * sizeof(float)), *cref = malloc(nc * sizeof(float));
        srand(1);
        for (size_t j = 0; j < na; j++) a[j] = (float)rand() / (float)RAND_MAX - 0.5f;
        for (size_t j = 0; j < nb; j++) b[j] = (float)rand() / (float)RAND_MAX - 0.5f;
        const int peak_reps = reps < 3 ? reps : 3;
        double peak256 = fma_peak(peak_reps, 8), peak512 = has512 ? fma_peak(peak_reps, 16) : -1;
        double g[2][3];  // [threads − 1][avx2, avx512, OpenBLAS]
        for (int t = 1; t <= 2; t++) {
            g[t - 1][0] = measure_dloral("avx2", s, a, b, c2, t, reps);
            g[t - 1][1] = measure_dloral("avx512", s, a, b, c5, t, reps);
            g[t - 1][2] = measure_openblas(s, a, b, cref, t, reps);
        }
        double worst = 0, scale = 0;
        for (size_t j = 0; j < nc; j++) scale = fmax(scale, fabs(cref[j]));
        for (size_t j = 0; j < nc; j++) worst = fmax(worst, fabs(c2[j] - cref[j]) / scale);
        const char *bits = g[0][1] < 0 ? "-" : memcmp(c2, c5, nc * sizeof(float)) == 0 ? "same" : "DIFF";
        printf("%-30s %6.1f", s->name, peak256);
        if (peak512 < 0) printf(" %6s", "-");
        else printf(" %6.1f", peak512);
        print_gflops(g[0][0]), print_gflops(g[1][0]), print_gflops(g[0][1]), print_gflops(g[1][1]);
        print_gflops(g[0][2]), print_gflops(g[1][2]);
        printf(" %5s %8.1e\n", bits, worst);
        fflush(stdout);
        free(a), free(b), free(c2), free(c5), free(cref);
    }
    return 0;
}
