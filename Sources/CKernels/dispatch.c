// Run-time choice of kernel path.
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

static int chosen = -1;  // 0 scalar, 1 avx2, 2 neon

static int choose(void) {
    const char *forced = getenv("DLORAL_KERNELS");
    if (forced && strcmp(forced, "scalar") == 0) return 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) return 1;
    return 0;
#elif defined(__aarch64__)
    return 2;
#else
    return 0;
#endif
}

static inline int path(void) {
    int p = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (p < 0) {
        p = choose();
        __atomic_store_n(&chosen, p, __ATOMIC_RELAXED);
    }
    return p;
}

const char *dloral_kernels_isa(void) {
    switch (path()) {
    case 1: return "avx2";
    case 2: return "neon";
    default: return "scalar";
    }
}

#if defined(__x86_64__)
#define DISPATCH(name, args) \
    do { if (path() == 1) { name##_avx2 args; return; } name##_scalar args; } while (0)
#elif defined(__aarch64__)
#define DISPATCH(name, args) \
    do { if (path() == 2) { name##_neon args; return; } name##_scalar args; } while (0)
#else
#define DISPATCH(name, args) name##_scalar args
#endif

void dloral_axpy_f32(size_t n, float a, const float *x, float *y) { DISPATCH(axpy_f32, (n, a, x, y)); }
void dloral_f32_to_f16(size_t n, const float *src, uint16_t *dst) { DISPATCH(f32_to_f16, (n, src, dst)); }
void dloral_f16_to_f32(size_t n, const uint16_t *src, float *dst) { DISPATCH(f16_to_f32, (n, src, dst)); }
void dloral_f32_to_bf16(size_t n, const float *src, uint16_t *dst) { DISPATCH(f32_to_bf16, (n, src, dst)); }

void dloral_quantize_i8(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]) {
    DISPATCH(quantize_i8, (groups, group_size, src, q, scales, energy));
}

void dloral_error_energy(size_t n, const float *ref, const float *approx, double energy[2]) {
    DISPATCH(error_energy, (n, ref, approx, energy));
}

void dloral_conv_to_rows(size_t n, size_t c, size_t kh, size_t kw, const float *src, float *dst, size_t k_padded) {
    size_t k = c * kh * kw;
    for (size_t o = 0; o < n; o++) {
        const float *w = src + o * k;
        float *row = dst + o * k_padded;
        if (kh == 1 && kw == 1) {
            memcpy(row, w, k * sizeof(float));
        } else {
            // Write the row in order; read with a stride of kh·kw (the weight of one output
            // channel is small enough to stay in cache).
            size_t taps = kh * kw;
            for (size_t t = 0; t < taps; t++) {
                float *out = row + t * c;
                const float *in = w + t;
                for (size_t ci = 0; ci < c; ci++) out[ci] = in[ci * taps];
            }
        }
        memset(row + k, 0, (k_padded - k) * sizeof(float));
    }
}

// MARK: - Integer GEMM (int8_gemm.c)

// On arm64 the int8 kernel is the SDOT one when the CPU has dotprod, else the SMULL one.
void dloral_gemm_i8i8_i32(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    DISPATCH(gemm_i8i8_i32, (m, n, kp, a, w, c));
}

void dloral_gemm_i16i8_i32(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    DISPATCH(gemm_i16i8_i32, (m, n, kp, a, w, c));
}

// MARK: - Single-precision GEMM (sgemm.c)

void dloral_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    dloral_sgemm_typed(trans_a, trans_b, 0, 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dloral_sgemm_typed(int trans_a, int trans_b, int a_half, int b_half, size_t m, size_t n, size_t k, float alpha,
                        const void *a, size_t lda, const void *b, size_t ldb, float beta, float *c, size_t ldc) {
    const sgemm_operands operands = {trans_a, trans_b, a_half, b_half, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL};
    DISPATCH(sgemm, (&operands));
}

void dloral_sconv2d(int w_half, size_t o, const void *weight, const dloral_conv_geometry *g, const float *image,
                    float beta, float *out) {
    const size_t n = g->ho * g->wo, k = g->c * g->kh * g->kw;
    const sgemm_operands operands = {0, 0, w_half, 0, o, n, k, 1.0f, weight, k, image, n, beta, out, n, g};
    DISPATCH(sgemm, (&operands));
}

void dloral_kernels_force(const char *isa) {
    int p = -1;  // automatic: chosen again on the next call
    if (isa && strcmp(isa, "scalar") == 0) p = 0;
#if defined(__x86_64__)
    if (isa && strcmp(isa, "avx2") == 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) p = 1;
    }
#elif defined(__aarch64__)
    if (isa && strcmp(isa, "neon") == 0) p = 2;
#endif
    __atomic_store_n(&chosen, p, __ATOMIC_RELAXED);
}
