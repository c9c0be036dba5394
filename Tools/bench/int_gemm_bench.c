// Integer-kernel micro-benchmark (issue 6): GMAC/s of the int8 × int8 and int16 × int8 GEMM kernels
// at SD shapes, next to the fp32 GEMMs (ours and OpenBLAS cblas_sgemm) at the same shapes and to the
// measured peak of each instruction sequence in a register-only loop. Medians of --runs.
//
// Build at -O2 (the debug SwiftPM build compiles C at -O0) from the repository root:
//   cc -O2 -pthread -ISources/CKernels -ISources/CKernels/include Tools/bench/int_gemm_bench.c \
//      Sources/CKernels/*.c -lopenblas -lm -o /tmp/int_gemm_bench
//   /tmp/int_gemm_bench [--runs 7]
//
// Shapes: a block of activation rows (as the integer layer driver feeds the kernel: at most 128
// rows, ≤ 256 KiB of quantized activations) against all weight rows of an SD layer; "layer" rows
// run the whole integer layer (quantization + GEMM + dequantizing epilogue) on every row of the
// activation matrix, on 1 and 2 threads.
#define _GNU_SOURCE
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static int cmp(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static double median(double *v, int n) { qsort(v, n, sizeof *v, cmp); return v[n / 2]; }

// MARK: - Register-only peaks

#define AVX2 __attribute__((target("avx2,fma")))
#define PEAK_ITERS 20000000L

// The int8 sequence of the kernel (per 32 products: vpsignb, vpmaddubsw, vpmaddwd, vpaddd): six
// independent accumulators against six distinct weight registers (15 ymm live, no spills).
AVX2 static void *peak_i8_loop(void *out) {
    __m256i a = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
    __m256i aa = _mm256_abs_epi8(a);
    __m256i w0 = _mm256_set1_epi8(-5), w1 = _mm256_set1_epi8(7), w2 = _mm256_set1_epi8(-9), w3 = _mm256_set1_epi8(11),
            w4 = _mm256_set1_epi8(-13), w5 = _mm256_set1_epi8(15);
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0;
    double t0 = now();
    for (long i = 0; i < PEAK_ITERS; i++) {
        __asm__ volatile("" : "+x"(w0), "+x"(w1), "+x"(w2), "+x"(w3), "+x"(w4), "+x"(w5), "+x"(aa), "+x"(a));
#define I8(s, wv) s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(aa, _mm256_sign_epi8(wv, a)), ones))
        I8(s0, w0); I8(s1, w1); I8(s2, w2); I8(s3, w3); I8(s4, w4); I8(s5, w5);
    }
    double t = now() - t0;
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3)), _mm256_add_epi32(s4, s5));
    volatile int sink = _mm256_extract_epi32(s, 0); (void)sink;
    *(double *)out = PEAK_ITERS * 6.0 * 32 / t / 1e9;
    return NULL;
}

// The int16 sequence of the kernel's 4×2 tile (per 16-column step: two vpmovsxbw, eight vpmaddwd,
// eight vpaddd), activations reloaded from two registers (14 ymm live).
AVX2 static void *peak_i16_loop(void *out) {
    __m256i x0 = _mm256_set1_epi16(3), x1 = _mm256_set1_epi16(5);
    __m128i wa = _mm_set1_epi8(-3), wb = _mm_set1_epi8(2);
    __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
    double t0 = now();
    for (long i = 0; i < PEAK_ITERS; i++) {
        __asm__ volatile("" : "+x"(wa), "+x"(wb), "+x"(x0), "+x"(x1));
        __m256i v0 = _mm256_cvtepi8_epi16(wa), v1 = _mm256_cvtepi8_epi16(wb);
        __m256i y0 = _mm256_add_epi16(x0, x1), y1 = _mm256_sub_epi16(x0, x1);
        s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(x0, v0)); s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(x0, v1));
        s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(x1, v0)); s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(x1, v1));
        s4 = _mm256_add_epi32(s4, _mm256_madd_epi16(y0, v0)); s5 = _mm256_add_epi32(s5, _mm256_madd_epi16(y0, v1));
        s6 = _mm256_add_epi32(s6, _mm256_madd_epi16(y1, v0)); s7 = _mm256_add_epi32(s7, _mm256_madd_epi16(y1, v1));
    }
    double t = now() - t0;
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3)),
                                 _mm256_add_epi32(_mm256_add_epi32(s4, s5), _mm256_add_epi32(s6, s7)));
    volatile int sink = _mm256_extract_epi32(s, 0); (void)sink;
    *(double *)out = PEAK_ITERS * 8.0 * 16 / t / 1e9;
    return NULL;
}

// fp32: ten independent vfmadd231ps chains (8 multiply-adds each; 12 ymm live).
AVX2 static void *peak_f32_loop(void *out) {
    __m256 a = _mm256_set1_ps(1.0001f), b = _mm256_set1_ps(0.9999f);
    __m256 s0 = _mm256_set1_ps(0), s1 = _mm256_set1_ps(1), s2 = _mm256_set1_ps(2), s3 = _mm256_set1_ps(3), s4 = _mm256_set1_ps(4),
           s5 = _mm256_set1_ps(5), s6 = _mm256_set1_ps(6), s7 = _mm256_set1_ps(7), s8 = _mm256_set1_ps(8), s9 = _mm256_set1_ps(9);
    double t0 = now();
    for (long i = 0; i < PEAK_ITERS; i++) {
        __asm__ volatile("" : "+x"(a), "+x"(b));
        s0 = _mm256_fmadd_ps(a, b, s0); s1 = _mm256_fmadd_ps(a, b, s1); s2 = _mm256_fmadd_ps(a, b, s2);
        s3 = _mm256_fmadd_ps(a, b, s3); s4 = _mm256_fmadd_ps(a, b, s4); s5 = _mm256_fmadd_ps(a, b, s5);
        s6 = _mm256_fmadd_ps(a, b, s6); s7 = _mm256_fmadd_ps(a, b, s7); s8 = _mm256_fmadd_ps(a, b, s8);
        s9 = _mm256_fmadd_ps(a, b, s9);
    }
    double t = now() - t0;
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)),
                             _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s4, s5), _mm256_add_ps(s6, s7)), _mm256_add_ps(s8, s9)));
    float o[8];
    _mm256_storeu_ps(o, s);
    volatile float sink = o[0]; (void)sink;
    *(double *)out = PEAK_ITERS * 10.0 * 8 / t / 1e9;
    return NULL;
}

// A peak loop on `threads` threads at once: the sum of their rates.
static double peak(void *(*loop)(void *), int threads) {
    pthread_t tid[2];
    double rate[2] = {0, 0};
    if (threads == 1) {
        loop(&rate[0]);
        return rate[0];
    }
    for (int t = 0; t < 2; t++) pthread_create(&tid[t], NULL, loop, &rate[t]);
    for (int t = 0; t < 2; t++) pthread_join(tid[t], NULL);
    return rate[0] + rate[1];
}

// MARK: - Shapes

struct shape {
    const char *name;
    size_t rows, n, k;  // activation rows (pixels / tokens) × weight rows × K
};

// SD 2.1 layers at 64×64 (4096 tokens) and 32×32 latents, and the VAE at 256×256.
static const struct shape shapes[] = {
    {"UNet conv 3x3 320->320 @64x64", 4096, 320, 2880},
    {"UNet conv 3x3 640->640 @32x32", 1024, 640, 5760},
    {"UNet conv 3x3 1280->1280 @16x16", 256, 1280, 11520},
    {"UNet linear 320->320, 4096 tok", 4096, 320, 320},
    {"UNet GEGLU 320->2560, 4096 tok", 4096, 2560, 320},
    {"UNet linear 1280->1280, 256 tok", 256, 1280, 1280},
    {"VAE conv 3x3 128->128 @256x256", 65536, 128, 1152},
};

struct job {
    int bits;
    const struct shape *s;
    const float *x;
    const int8_t *w;
    const float *scales;
    const float *bias;
    float *y;
    size_t r0, r1;
};

static void *run_job(void *arg) {
    struct job *j = arg;
    size_t kp = (j->s->k + 31) / 32 * 32;
    dloral_int_linear(j->bits, j->s->k, j->x, j->s->k, j->s->n, kp, j->w, j->scales, j->bias, j->y, j->s->n, j->r0, j->r1);
    return NULL;
}

static double layer(int bits, const struct shape *s, const float *x, const int8_t *w, const float *scales,
                    const float *bias, float *y, int threads) {
    struct job jobs[2];
    pthread_t tid[2];
    double t0 = now();
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){bits, s, x, w, scales, bias, y, s->rows * t / threads, s->rows * (t + 1) / threads};
        if (threads > 1) pthread_create(&tid[t], NULL, run_job, &jobs[t]);
        else run_job(&jobs[t]);
    }
    if (threads > 1) for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    return now() - t0;
}

int main(int argc, char **argv) {
    int runs = 7;
    for (int i = 1; i + 1 < argc; i++) if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (runs < 1 || runs > 64) runs = 7;
    // Kernels on one thread (the GEMM columns and OpenBLAS too); the layer columns run 1 and 2.
    dloral_threads_force(1);
    openblas_set_num_threads(1);
    printf("kernel path %s; %d runs, medians; GEMM columns 1 thread\n", dloral_kernels_isa(), runs);
    double p8 = peak(peak_i8_loop, 1), p16 = peak(peak_i16_loop, 1), pf = peak(peak_f32_loop, 1);
    printf("register-only peak, 1 thread:  int8 sequence %.1f GMAC/s, int16 sequence %.1f GMAC/s, fp32 FMA %.1f GMAC/s\n",
           p8, p16, pf);
    printf("register-only peak, 2 threads: int8 sequence %.1f GMAC/s, int16 sequence %.1f GMAC/s, fp32 FMA %.1f GMAC/s\n\n",
           peak(peak_i8_loop, 2), peak(peak_i16_loop, 2), peak(peak_f32_loop, 2));
    printf("%-34s %10s %10s %10s %10s %10s | %9s %9s %9s %9s\n", "shape (rows x n x K)", "i8 gemm", "%peak", "i16 gemm",
           "%peak", "sgemm", "i8 lay/1", "i8 lay/2", "i16 lay/1", "i16 lay/2");
    srand(1);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const struct shape *s = &shapes[si];
        size_t kp = (s->k + 31) / 32 * 32;
        // The kernel block: as many rows as the driver gives it (≤ 128, ≤ 256 KiB of int16).
        size_t block = (256u * 1024u) / (kp * 2);
        if (block > 128) block = 128;
        if (block < 8) block = 8;
        int8_t *w = aligned_alloc(64, s->n * kp), *a8 = aligned_alloc(64, block * kp);
        int16_t *a16 = aligned_alloc(64, block * kp * 2);
        int32_t *c = aligned_alloc(64, block * s->n * 4 + 64);
        float *x = aligned_alloc(64, s->rows * s->k * 4 + 64), *y = aligned_alloc(64, s->rows * s->n * 4 + 64);
        float *wf = aligned_alloc(64, s->n * s->k * 4 + 64), *scales = malloc(s->n * 4), *bias = malloc(s->n * 4);
        for (size_t i = 0; i < s->n * kp; i++) w[i] = (int8_t)(rand() % 255 - 127);
        for (size_t i = 0; i < block * kp; i++) { a8[i] = (int8_t)(rand() % 255 - 127); a16[i] = (int16_t)(rand() % 2935 - 1467); }
        for (size_t i = 0; i < s->rows * s->k; i++) x[i] = (float)rand() / RAND_MAX - 0.5f;
        for (size_t i = 0; i < s->n * s->k; i++) wf[i] = (float)rand() / RAND_MAX - 0.5f;
        for (size_t i = 0; i < s->n; i++) { scales[i] = 0.01f; bias[i] = 0.1f; }
        double t8[64], t16[64], tf[64], l8a[64], l8b[64], l16a[64], l16b[64];
        // The fp32 GEMM of one block's rows too, so the three compare the same work.
        size_t reps = 1 + (size_t)(2e9 / ((double)block * s->n * s->k));
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            for (size_t q = 0; q < reps; q++) dloral_gemm_i8i8_i32(block, s->n, kp, a8, w, c);
            t8[r] = (now() - t0) / reps;
            t0 = now();
            for (size_t q = 0; q < reps; q++) dloral_gemm_i16i8_i32(block, s->n, kp, a16, w, c);
            t16[r] = (now() - t0) / reps;
            t0 = now();
            for (size_t q = 0; q < reps; q++)
                dloral_sgemm(0, 1, block, s->n, s->k, 1.0f, x, s->k, wf, s->k, 0.0f, y, s->n);
            tf[r] = (now() - t0) / reps;
            l8a[r] = layer(8, s, x, w, scales, bias, y, 1);
            l8b[r] = layer(8, s, x, w, scales, bias, y, 2);
            l16a[r] = layer(16, s, x, w, scales, bias, y, 1);
            l16b[r] = layer(16, s, x, w, scales, bias, y, 2);
        }
        double macs_block = (double)block * s->n * kp, macs = (double)s->rows * s->n * s->k;
        double g8 = macs_block / median(t8, runs) / 1e9, g16 = macs_block / median(t16, runs) / 1e9;
        double gf = (double)block * s->n * s->k / median(tf, runs) / 1e9;
        printf("%-34s %10.1f %9.0f%% %10.1f %9.0f%% %10.1f | %9.1f %9.1f %9.1f %9.1f\n", s->name, g8, 100 * g8 / p8, g16,
               100 * g16 / p16, gf, macs / median(l8a, runs) / 1e9, macs / median(l8b, runs) / 1e9,
               macs / median(l16a, runs) / 1e9, macs / median(l16b, runs) / 1e9);
        free(w), free(a8), free(a16), free(c), free(x), free(y), free(wf), free(scales), free(bias);
    }
    // OpenBLAS at the full layer shapes, for reference (its kernel choice is printed by
    // openblas_get_config; on this virtual CPU it is the SSE3 Prescott kernel unless
    // OPENBLAS_CORETYPE is set).
    printf("\nOpenBLAS %s, full layer shapes, fp32 GMAC/s 1 thread:\n", openblas_get_config());
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const struct shape *s = &shapes[si];
        float *x = aligned_alloc(64, s->rows * s->k * 4 + 64), *y = aligned_alloc(64, s->rows * s->n * 4 + 64);
        float *wf = aligned_alloc(64, s->n * s->k * 4 + 64);
        for (size_t i = 0; i < s->rows * s->k; i++) x[i] = 0.001f * (float)(i % 997);
        for (size_t i = 0; i < s->n * s->k; i++) wf[i] = 0.001f * (float)(i % 991);
        double tb[64], td[64];
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)s->rows, (int)s->n, (int)s->k, 1.0f, x, (int)s->k, wf,
                        (int)s->k, 0.0f, y, (int)s->n);
            tb[r] = now() - t0;
            t0 = now();
            dloral_sgemm(0, 1, s->rows, s->n, s->k, 1.0f, x, s->k, wf, s->k, 0.0f, y, s->n);
            td[r] = now() - t0;
        }
        double macs = (double)s->rows * s->n * s->k;
        printf("  %-34s OpenBLAS %7.1f   dloral_sgemm %7.1f\n", s->name, macs / median(tb, runs) / 1e9, macs / median(td, runs) / 1e9);
        free(x), free(y), free(wf);
    }
    return 0;
}
