// Integer-kernel micro-benchmark: GMAC/s of the int8 × int8 and int16 × int8 GEMM kernels
// at SD shapes, next to the fp32 GEMMs (ours and OpenBLAS cblas_sgemm) at the same shapes and to the
// measured peak of each instruction sequence in a register-only loop. Medians of --runs.
//
// Build with clang at -O2, as SwiftPM builds the kernels for the product (gcc keeps some of the
// register-blocked tiles' accumulators in memory, so it would time code the product never runs), from
// the repository root:
//   clang -O2 -pthread -ISources/CKernels -ISources/CKernels/include -ISources/CThreadPool/include Tools/bench/int_gemm_bench.c \
//      $(find Sources/CKernels Sources/CThreadPool -name '*.c') -lopenblas -lm -o /tmp/int_gemm_bench
//   /tmp/int_gemm_bench [--runs 7]
//
// Shapes: a block of activation rows (as the integer layer driver feeds the int8 kernel: at most
// 256 rows, ≤ 512 KiB of quantized activations and ≤ 512 KiB of int32 results) against all weight
// rows of an SD layer; "layer" rows run the whole integer layer (quantization + GEMM +
// dequantizing epilogue) on every row of the activation matrix, on 1 and 2 threads.
//
// The int8 GEMM runs once per kernel level the CPU has (avx2: vpmaddubsw; avxvnni: vpdpbusd;
// amx: TDPBSSD tiles, which packs the weights on every call), each through its context
// (dloral_kernels_for_level); "vnni pre" and "amx pre" are the AVX-VNNI outputs-in-lanes kernel and the
// AMX kernel on weights packed beforehand, as a layer call (which packs them once, shared by its
// threads) runs them on each row block. The int16 GEMM, the sgemm and the
// layers run at the automatic level, and the int8 layer also at avxvnni.
#define _GNU_SOURCE
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include "kernel_table.h"
#include "kernels_internal.h"
#include "amx_tiles.h"
#include <cblas.h>
#include <immintrin.h>
#include <pthread.h>
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

// MARK: - Register-only peaks

#define AVX2 __attribute__((target("avx2,fma")))
#define PEAK_ITERS 20000000L

// Register-only loops in inline assembly, so the compiler can neither merge nor spill them.

// The int8 sequence of the kernel's 1×4 tile (per 32 products: vpsignb, vpmaddubsw, vpmaddwd,
// vpaddd): |a| and a, four weight registers, four accumulators.
static void *peak_i8_loop(void *out) {
    static const int8_t init[32 * 2] = {3, -5, 7, -9, 11, -13, 15, -17, 3, -5, 7, -9, 11, -13, 15, -17,
                                        3, -5, 7, -9, 11, -13, 15, -17, 3, -5, 7, -9, 11, -13, 15, -17,
                                        -2, 4, -6, 8, -10, 12, -14, 16, -2, 4, -6, 8, -10, 12, -14, 16,
                                        -2, 4, -6, 8, -10, 12, -14, 16, -2, 4, -6, 8, -10, 12, -14, 16};
    long n = PEAK_ITERS;
    double t0 = now();
    __asm__ volatile(
        "vmovdqu (%[p]), %%ymm0\n\t"          // a
        "vpabsb %%ymm0, %%ymm1\n\t"           // |a|
        "vpcmpeqw %%ymm2, %%ymm2, %%ymm2\n\t"
        "vpsrlw $15, %%ymm2, %%ymm2\n\t"      // ones (int16)
        "vmovdqu 32(%[p]), %%ymm3\n\t"        // four weights
        "vpaddb %%ymm2, %%ymm3, %%ymm4\n\t"
        "vpsubb %%ymm2, %%ymm3, %%ymm5\n\t"
        "vpxor %%ymm2, %%ymm3, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"    // accumulators 7..10
        "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
        "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
        "1:\n\t"
        "vpsignb %%ymm0, %%ymm3, %%ymm11\n\t"
        "vpsignb %%ymm0, %%ymm4, %%ymm12\n\t"
        "vpsignb %%ymm0, %%ymm5, %%ymm13\n\t"
        "vpsignb %%ymm0, %%ymm6, %%ymm14\n\t"
        "vpmaddubsw %%ymm11, %%ymm1, %%ymm11\n\t"
        "vpmaddubsw %%ymm12, %%ymm1, %%ymm12\n\t"
        "vpmaddubsw %%ymm13, %%ymm1, %%ymm13\n\t"
        "vpmaddubsw %%ymm14, %%ymm1, %%ymm14\n\t"
        "vpmaddwd %%ymm2, %%ymm11, %%ymm11\n\t"
        "vpmaddwd %%ymm2, %%ymm12, %%ymm12\n\t"
        "vpmaddwd %%ymm2, %%ymm13, %%ymm13\n\t"
        "vpmaddwd %%ymm2, %%ymm14, %%ymm14\n\t"
        "vpaddd %%ymm11, %%ymm7, %%ymm7\n\t"
        "vpaddd %%ymm12, %%ymm8, %%ymm8\n\t"
        "vpaddd %%ymm13, %%ymm9, %%ymm9\n\t"
        "vpaddd %%ymm14, %%ymm10, %%ymm10\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(n)
        : [p] "r"(init)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "cc", "memory");
    double t = now() - t0;
    *(double *)out = PEAK_ITERS * 4.0 * 32 / t / 1e9;
    return NULL;
}

// The int16 sequence of the kernel's 4×2 tile (per 16-column step: two vpmovsxbw from memory, eight
// vpmaddwd, eight vpaddd): four activation registers, two widened weights, eight accumulators.
static void *peak_i16_loop(void *out) {
    static const int16_t x[16 * 4] = {3, -5, 7, -9, 11, -13, 15, -17, 3, -5, 7, -9, 11, -13, 15, -17,
                                      1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                      -1, -2, -3, -4, -5, -6, -7, -8, -9, -10, -11, -12, -13, -14, -15, -16,
                                      100, -200, 300, -400, 500, -600, 700, -800, 100, -200, 300, -400, 500, -600, 700, -800};
    static const int8_t w[32] = {1, -2, 3, -4, 5, -6, 7, -8, 9, -10, 11, -12, 13, -14, 15, -16,
                                 -1, 2, -3, 4, -5, 6, -7, 8, -9, 10, -11, 12, -13, 14, -15, 16};
    long n = PEAK_ITERS;
    double t0 = now();
    __asm__ volatile(
        "vmovdqu (%[x]), %%ymm0\n\t"
        "vmovdqu 32(%[x]), %%ymm1\n\t"
        "vmovdqu 64(%[x]), %%ymm2\n\t"
        "vmovdqu 96(%[x]), %%ymm3\n\t"
        "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
        "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
        "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
        "vpxor %%ymm12, %%ymm12, %%ymm12\n\t"
        "vpxor %%ymm13, %%ymm13, %%ymm13\n\t"
        "vpxor %%ymm14, %%ymm14, %%ymm14\n\t"
        "vpxor %%ymm15, %%ymm15, %%ymm15\n\t"
        "1:\n\t"
        "vpmovsxbw (%[w]), %%ymm4\n\t"
        "vpmovsxbw 16(%[w]), %%ymm5\n\t"
        "vpmaddwd %%ymm4, %%ymm0, %%ymm6\n\t"
        "vpmaddwd %%ymm5, %%ymm0, %%ymm7\n\t"
        "vpaddd %%ymm6, %%ymm8, %%ymm8\n\t"
        "vpaddd %%ymm7, %%ymm9, %%ymm9\n\t"
        "vpmaddwd %%ymm4, %%ymm1, %%ymm6\n\t"
        "vpmaddwd %%ymm5, %%ymm1, %%ymm7\n\t"
        "vpaddd %%ymm6, %%ymm10, %%ymm10\n\t"
        "vpaddd %%ymm7, %%ymm11, %%ymm11\n\t"
        "vpmaddwd %%ymm4, %%ymm2, %%ymm6\n\t"
        "vpmaddwd %%ymm5, %%ymm2, %%ymm7\n\t"
        "vpaddd %%ymm6, %%ymm12, %%ymm12\n\t"
        "vpaddd %%ymm7, %%ymm13, %%ymm13\n\t"
        "vpmaddwd %%ymm4, %%ymm3, %%ymm6\n\t"
        "vpmaddwd %%ymm5, %%ymm3, %%ymm7\n\t"
        "vpaddd %%ymm6, %%ymm14, %%ymm14\n\t"
        "vpaddd %%ymm7, %%ymm15, %%ymm15\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(n)
        : [x] "r"(x), [w] "r"(w)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    double t = now() - t0;
    *(double *)out = PEAK_ITERS * 8.0 * 16 / t / 1e9;
    return NULL;
}

// The AVX-VNNI int8 sequence of the kernel's 4×3 tile (per 32 bytes of k: 12 vpdpbusd), register
// only: twelve accumulators, three weight registers and one activation register.
static void *peak_vnni_loop(void *out) {
    static const int8_t init[32 * 2] = {3, -5, 7, -9, 11, -13, 15, -17, 3, -5, 7, -9, 11, -13, 15, -17,
                                        3, -5, 7, -9, 11, -13, 15, -17, 3, -5, 7, -9, 11, -13, 15, -17,
                                        -2, 4, -6, 8, -10, 12, -14, 16, -2, 4, -6, 8, -10, 12, -14, 16,
                                        -2, 4, -6, 8, -10, 12, -14, 16, -2, 4, -6, 8, -10, 12, -14, 16};
    long n = PEAK_ITERS;
    double t0 = now();
    __asm__ volatile(
        "vmovdqu (%[p]), %%ymm15\n\t"        // a (as unsigned bytes)
        "vmovdqu 32(%[p]), %%ymm12\n\t"      // three weights
        "vpabsb %%ymm12, %%ymm13\n\t"
        "vpxor %%ymm15, %%ymm12, %%ymm14\n\t"
        "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"   // accumulators 0..11
        "vpxor %%ymm1, %%ymm1, %%ymm1\n\t" "vpxor %%ymm2, %%ymm2, %%ymm2\n\t" "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
        "vpxor %%ymm4, %%ymm4, %%ymm4\n\t" "vpxor %%ymm5, %%ymm5, %%ymm5\n\t" "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
        "vpxor %%ymm7, %%ymm7, %%ymm7\n\t" "vpxor %%ymm8, %%ymm8, %%ymm8\n\t" "vpxor %%ymm9, %%ymm9, %%ymm9\n\t"
        "vpxor %%ymm10, %%ymm10, %%ymm10\n\t" "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
        "1:\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm15, %%ymm0\n\t" "%{vex%} vpdpbusd %%ymm13, %%ymm15, %%ymm1\n\t"
        "%{vex%} vpdpbusd %%ymm14, %%ymm15, %%ymm2\n\t" "%{vex%} vpdpbusd %%ymm12, %%ymm15, %%ymm3\n\t"
        "%{vex%} vpdpbusd %%ymm13, %%ymm15, %%ymm4\n\t" "%{vex%} vpdpbusd %%ymm14, %%ymm15, %%ymm5\n\t"
        "%{vex%} vpdpbusd %%ymm12, %%ymm15, %%ymm6\n\t" "%{vex%} vpdpbusd %%ymm13, %%ymm15, %%ymm7\n\t"
        "%{vex%} vpdpbusd %%ymm14, %%ymm15, %%ymm8\n\t" "%{vex%} vpdpbusd %%ymm12, %%ymm15, %%ymm9\n\t"
        "%{vex%} vpdpbusd %%ymm13, %%ymm15, %%ymm10\n\t" "%{vex%} vpdpbusd %%ymm14, %%ymm15, %%ymm11\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(n)
        : [p] "r"(init)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    double t = now() - t0;
    *(double *)out = PEAK_ITERS * 12.0 * 32 / t / 1e9;
    return NULL;
}

// AMX: the kernel's 2 × 2 block of TDPBSSD (16 × 16 int32 += 16 × 64 int8 · 64 × 16 int8, 16384
// multiply-adds each) on resident tiles: four accumulators, two A and two B tiles, no loads. The
// tile intrinsics are volatile builtins, so the compiler keeps every one. Needs the process's AMX
// permission (choosing level amx asks for it).
#define AMX __attribute__((target("amx-int8,amx-tile")))
#define AMX_PEAK_ITERS 4000000L
AMX static void *peak_amx_loop(void *out) {
    int8_t src[1024] __attribute__((aligned(64)));
    for (int i = 0; i < 1024; i++) src[i] = (int8_t)(i * 7 + 3);
    // GCC's tile intrinsics are inline assembly that does not declare all the memory they read:
    // the stores above must happen first.
    __asm__ volatile("" : : "r"(src) : "memory");
    bench_configure_tiles();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, src, 64);
    _tile_loadd(5, src, 64);
    _tile_loadd(6, src, 64);
    _tile_loadd(7, src, 64);
    double t0 = now();
    for (long i = 0; i < AMX_PEAK_ITERS; i++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    double t = now() - t0;
    _tile_release();
    *(double *)out = AMX_PEAK_ITERS * 4.0 * 16384 / t / 1e9;
    return NULL;
}

// fp32: ten independent vfmadd231ps chains (8 multiply-adds each).
static void *peak_f32_loop(void *out) {
    static const float init[8] = {1.0001f, 0.9999f, 1, 1, 1, 1, 1, 1};
    long n = PEAK_ITERS;
    double t0 = now();
    __asm__ volatile(
        "vbroadcastss (%[p]), %%ymm0\n\t"
        "vbroadcastss 4(%[p]), %%ymm1\n\t"
        "vxorps %%ymm2, %%ymm2, %%ymm2\n\t" "vxorps %%ymm3, %%ymm3, %%ymm3\n\t"
        "vxorps %%ymm4, %%ymm4, %%ymm4\n\t" "vxorps %%ymm5, %%ymm5, %%ymm5\n\t"
        "vxorps %%ymm6, %%ymm6, %%ymm6\n\t" "vxorps %%ymm7, %%ymm7, %%ymm7\n\t"
        "vxorps %%ymm8, %%ymm8, %%ymm8\n\t" "vxorps %%ymm9, %%ymm9, %%ymm9\n\t"
        "vxorps %%ymm10, %%ymm10, %%ymm10\n\t" "vxorps %%ymm11, %%ymm11, %%ymm11\n\t"
        "1:\n\t"
        "vfmadd231ps %%ymm0, %%ymm1, %%ymm2\n\t" "vfmadd231ps %%ymm0, %%ymm1, %%ymm3\n\t"
        "vfmadd231ps %%ymm0, %%ymm1, %%ymm4\n\t" "vfmadd231ps %%ymm0, %%ymm1, %%ymm5\n\t"
        "vfmadd231ps %%ymm0, %%ymm1, %%ymm6\n\t" "vfmadd231ps %%ymm0, %%ymm1, %%ymm7\n\t"
        "vfmadd231ps %%ymm0, %%ymm1, %%ymm8\n\t" "vfmadd231ps %%ymm0, %%ymm1, %%ymm9\n\t"
        "vfmadd231ps %%ymm0, %%ymm1, %%ymm10\n\t" "vfmadd231ps %%ymm0, %%ymm1, %%ymm11\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vzeroupper\n\t"
        : [n] "+r"(n)
        : [p] "r"(init)
        : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "cc", "memory");
    double t = now() - t0;
    *(double *)out = PEAK_ITERS * 10.0 * 8 / t / 1e9;
    return NULL;
}

// The 1-thread peaks of the int8, int16, vpdpbusd and TDPBSSD sequences measured beside one
// shape's kernels (`runs` times each before and after them; medians): this VM's clock moves over
// seconds, so a peak measured once at the start is not the one the kernels ran against.
struct peaks {
    double i8, i16, vnni, amx;
};

static void sample_peaks(int runs, int vnni, int amx, double *samples[4], int *count) {
    for (int r = 0; r < runs; r++, (*count)++) {
        peak_i8_loop(&samples[0][*count]);
        peak_i16_loop(&samples[1][*count]);
        samples[2][*count] = samples[3][*count] = 0;
        if (vnni) peak_vnni_loop(&samples[2][*count]);
        if (amx) peak_amx_loop(&samples[3][*count]);
    }
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
    const dloral_int_layer_weights weights = {.n = j->s->n, .kp = kp, .rows = j->w, .scales = j->scales, .bias = j->bias};
    dloral_int_linear(kernels, j->bits, j->s->k, j->x, j->s->k, &weights, j->y, j->s->n, j->r0, j->r1, NULL);
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

// Whether the CPU has kernel level `isa` (forcing it then names it); back to automatic after.
static int has_level(const char *isa) {
    kernels = kernels_at(isa);
    int ok = strcmp(dloral_kernels_name(kernels), isa) == 0;
    kernels = kernels_at(NULL);
    return ok;
}

// The GEMM's GMAC/s at level `isa` (median of runs), int8 × int8 (bits 8, a int8_t) or int16 ×
// int8 (bits 16, a int16_t), or 0 when the CPU lacks the level.
static double gemm_rate(int bits, const char *isa, int runs, size_t reps, size_t block, size_t n, size_t kp,
                        const void *a, const int8_t *w, int32_t *c) {
    if (!has_level(isa)) return 0;
    double t[64];
    kernels = kernels_at(isa);
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        for (size_t q = 0; q < reps; q++) {
            if (bits == 8) dloral_gemm_i8i8_i32(kernels, block, n, kp, a, w, c);
            else dloral_gemm_i16i8_i32(kernels, block, n, kp, a, w, c);
        }
        t[r] = (now() - t0) / reps;
    }
    kernels = kernels_at(NULL);
    return (double)block * n * kp / median(t, runs) / 1e9;
}

// A percentage of a peak: "-" when either is unknown.
static void percent(double v, double of) {
    if (v > 0 && of > 0) printf(" %4.0f%%", 100 * v / of);
    else printf(" %5s", "-");
}

// A GMAC/s column: "-" for a level the CPU lacks.
static void column(double v, int width) {
    if (v > 0) printf(" %*.1f", width, v);
    else printf(" %*s", width, "-");
}

int main(int argc, char **argv) {
    kernels = dloral_kernels_auto();
    int runs = 7;
    for (int i = 1; i + 1 < argc; i++) if (!strcmp(argv[i], "--runs")) runs = atoi(argv[i + 1]);
    if (runs < 1 || runs > 64) runs = 7;
    // The engine's allocator setting (DLoRALEngine's Allocator): scratch buffers of a few hundred
    // KiB come from the heap instead of a fresh mapping per call, as in the engine.
    dloral_keep_freed_memory();
    // Kernels on one thread (the GEMM columns and OpenBLAS too); the layer columns run 1 and 2.
    dloral_threads_force(1);
    openblas_set_num_threads(1);
    printf("kernel path %s; %d runs, medians; GEMM columns 1 thread\n", dloral_kernels_name(kernels), runs);
    const int vnni = has_level("avxvnni"), amx = has_level("amx");
    double p8 = peak(peak_i8_loop, 1), p16 = peak(peak_i16_loop, 1), pf = peak(peak_f32_loop, 1);
    double pv = vnni ? peak(peak_vnni_loop, 1) : 0, pa = amx ? peak(peak_amx_loop, 1) : 0;
    printf("register-only peak, 1 thread:  int8 sequence %.1f GMAC/s, int16 sequence %.1f GMAC/s, fp32 FMA %.1f GMAC/s",
           p8, p16, pf);
    if (vnni) printf(", AVX-VNNI vpdpbusd %.1f GMAC/s", pv);
    if (amx) printf(", AMX TDPBSSD %.1f GMAC/s", pa);
    printf("\nregister-only peak, 2 threads: int8 sequence %.1f GMAC/s, int16 sequence %.1f GMAC/s, fp32 FMA %.1f GMAC/s",
           peak(peak_i8_loop, 2), peak(peak_i16_loop, 2), peak(peak_f32_loop, 2));
    if (vnni) printf(", AVX-VNNI vpdpbusd %.1f GMAC/s", peak(peak_vnni_loop, 2));
    if (amx) printf(", AMX TDPBSSD %.1f GMAC/s", peak(peak_amx_loop, 2));
    printf("\n\nGEMM on one block of rows, 1 thread, at each level; %% of the register-only peak of that level's "
           "instructions measured beside the shape (int16 on VNNI: vpdpwssd, half vpdpbusd's products; on AMX: two int8 tile products):\n");
    printf("%-34s %9s %5s %9s %5s %9s %5s %9s %9s %5s %9s %5s %9s %5s %9s %5s %9s %6s\n", "shape (rows x n x K)",
           "i8 avx2", "%", "i8 vnni", "%", "vnni pre", "%", "i8 amx", "amx pre", "%", "i16 avx2", "%", "i16 vnni", "%",
           "i16 amx", "%", "sgemm", "rows");
    double rates[sizeof shapes / sizeof *shapes][5];
    struct peaks shape_peaks[sizeof shapes / sizeof *shapes];
    srand(1);
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const struct shape *s = &shapes[si];
        size_t kp = (s->k + 31) / 32 * 32;
        // The kernel block: as many rows as the driver gives the int8 kernel (≤ 256, ≤ 512 KiB of
        // int8 activations, ≤ 512 KiB of int32 results).
        const size_t block = int_layer_block_rows(8, kp, s->n);
        int8_t *w = aligned_alloc(64, s->n * kp), *a8 = aligned_alloc(64, block * kp);
        int16_t *a16 = aligned_alloc(64, block * kp * 2);
        int32_t *c = aligned_alloc(64, block * s->n * 4 + 64);
        float *x = aligned_alloc(64, s->rows * s->k * 4 + 64), *y = aligned_alloc(64, s->rows * s->n * 4 + 64);
        float *wf = aligned_alloc(64, s->n * s->k * 4 + 64), *scales = malloc(s->n * 4), *bias = malloc(s->n * 4);
        for (size_t i = 0; i < s->n * kp; i++) w[i] = (int8_t)(rand() % 255 - 127);
        for (size_t i = 0; i < block * kp; i++) { a8[i] = (int8_t)(rand() % 255 - 127); a16[i] = (int16_t)(rand() % 2935 - 1467); }
        for (size_t i = 0; i < s->rows * s->k; i++) x[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
        for (size_t i = 0; i < s->n * s->k; i++) wf[i] = (float)((double)rand() / RAND_MAX) - 0.5f;
        for (size_t i = 0; i < s->n; i++) { scales[i] = 0.01f; bias[i] = 0.1f; }
        double tp[64], tf[64], l8a[64], l8b[64], l8v[64], l16a[64], l16b[64];
        double ps[4][128], *psp[4] = {ps[0], ps[1], ps[2], ps[3]};
        int npeaks = 0;
        sample_peaks(runs, vnni, amx, psp, &npeaks);
        // The fp32 GEMM of one block's rows too, so they all compare the same work.
        size_t reps = 1 + (size_t)(2e9 / ((double)block * s->n * s->k));
        const double macs_block = (double)block * s->n * kp;
        double g8[3];
        static const char *const levels[3] = {"avx2", "avxvnni", "amx"};
        for (int l = 0; l < 3; l++)
            g8[l] = gemm_rate(8, levels[l], runs, l == 2 ? 4 * reps : reps, block, s->n, kp, a8, w, c);
        double gp = 0;
        if (amx) {  // the AMX kernel on prepacked weights
            kernels = kernels_at("amx");
            int8_t *wp = amx_pack_weights(8, s->n, kp, w);
            for (int r = 0; r < runs && wp; r++) {
                double t0 = now();
                for (size_t q = 0; q < 4 * reps; q++) gemm_i8i8_i32_amx_packed(block, s->n, kp, a8, w, wp, c);
                tp[r] = (now() - t0) / (4 * reps);
            }
            if (wp) gp = macs_block / median(tp, runs) / 1e9;
            free(wp);
            kernels = kernels_at(NULL);
        }
        double gv = 0;
        if (vnni) {  // the AVX-VNNI outputs-in-lanes kernel on weights prepared beforehand, as a layer call shares them
            kernels = kernels_at("avxvnni");
            const kernel_table *T = kernels;
            int8_t *vp = aligned_alloc(64, (T->pack_i8.bytes(s->n, kp) + 63) / 64 * 64);
            if (vp) T->pack_i8.pack(s->n, kp, w, vp, 0, (s->n + 7) / 8);
            for (int r = 0; r < runs && vp; r++) {
                double t0 = now();
                for (size_t q = 0; q < reps; q++) T->gemm_i8i8_packed(block, s->n, kp, a8, w, vp, c);
                tp[r] = (now() - t0) / reps;
            }
            if (vp) gv = macs_block / median(tp, runs) / 1e9;
            free(vp);
            kernels = kernels_at(NULL);
        }
        double g16l[3];
        for (int l = 0; l < 3; l++)
            g16l[l] = gemm_rate(16, levels[l], runs, l == 2 ? 2 * reps : reps, block, s->n, kp, a16, w, c);
        for (int r = 0; r < runs; r++) {
            double t0 = now();
            for (size_t q = 0; q < reps; q++)
                dloral_sgemm(kernels, 0, 1, block, s->n, s->k, 1.0f, x, s->k, wf, s->k, 0.0f, y, s->n);
            tf[r] = (now() - t0) / reps;
            l8a[r] = layer(8, s, x, w, scales, bias, y, 1);
            l8b[r] = layer(8, s, x, w, scales, bias, y, 2);
            if (vnni) {
                kernels = kernels_at("avxvnni");
                l8v[r] = layer(8, s, x, w, scales, bias, y, 2);
                kernels = kernels_at(NULL);
            }
            l16a[r] = layer(16, s, x, w, scales, bias, y, 1);
            l16b[r] = layer(16, s, x, w, scales, bias, y, 2);
        }
        sample_peaks(runs, vnni, amx, psp, &npeaks);
        const struct peaks pk = {median(ps[0], npeaks), median(ps[1], npeaks), median(ps[2], npeaks), median(ps[3], npeaks)};
        shape_peaks[si] = pk;
        const double macs = (double)s->rows * s->n * s->k;
        double gf = (double)block * s->n * s->k / median(tf, runs) / 1e9;
        printf("%-34s", s->name);
        column(g8[0], 9), percent(g8[0], pk.i8);
        column(g8[1], 9), percent(g8[1], pk.vnni);
        column(gv, 9), percent(gv, pk.vnni);
        column(g8[2], 9), column(gp, 9), percent(gp, pk.amx);
        column(g16l[0], 9), percent(g16l[0], pk.i16);
        column(g16l[1], 9), percent(g16l[1], pk.vnni / 2);
        column(g16l[2], 9), percent(g16l[2], pk.amx / 2);
        column(gf, 9);
        printf(" %6zu\n", block);
        rates[si][0] = macs / median(l8a, runs) / 1e9, rates[si][1] = macs / median(l8b, runs) / 1e9;
        rates[si][2] = vnni ? macs / median(l8v, runs) / 1e9 : 0;
        rates[si][3] = macs / median(l16a, runs) / 1e9, rates[si][4] = macs / median(l16b, runs) / 1e9;
        free(w), free(a8), free(a16), free(c), free(x), free(y), free(wf), free(scales), free(bias);
    }
    printf("\nThe peaks each shape's percentages use (1 thread, GMAC/s, medians of %d samples before and %d after "
           "its kernels):\n%-34s %9s %9s %9s %9s\n", runs, runs, "shape", "int8", "int16", "vpdpbusd", "TDPBSSD");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        printf("%-34s", shapes[si].name);
        column(shape_peaks[si].i8, 9), column(shape_peaks[si].i16, 9), column(shape_peaks[si].vnni, 9), column(shape_peaks[si].amx, 9);
        printf("\n");
    }
    printf("\nWhole layers (quantization + GEMM + epilogue, all rows), GMAC/s at level %s, 1 / 2 threads; int8 on 2 "
           "threads also at avxvnni:\n", dloral_kernels_name(kernels));
    printf("%-34s %9s %9s %9s %9s %9s\n", "shape (rows x n x K)", "i8 lay/1", "i8 lay/2", "vnni /2", "i16 lay/1",
           "i16 lay/2");
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        printf("%-34s", shapes[si].name);
        for (int q = 0; q < 5; q++) column(rates[si][q], 9);
        printf("\n");
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
            dloral_sgemm(kernels, 0, 1, s->rows, s->n, s->k, 1.0f, x, s->k, wf, s->k, 0.0f, y, s->n);
            td[r] = now() - t0;
        }
        double macs = (double)s->rows * s->n * s->k;
        printf("  %-34s OpenBLAS %7.1f   dloral_sgemm %7.1f\n", s->name, macs / median(tb, runs) / 1e9, macs / median(td, runs) / 1e9);
        free(x), free(y), free(wf);
    }
    return 0;
}
