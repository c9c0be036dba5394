// Run-time choice of kernel path.
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

// The path in use, as a level (kernels_internal.h): -1 until chosen.
static int chosen = -1;

// Levels by name, lowest first. The x86-64 levels are cumulative: each adds to the one before,
// and is usable when the CPU has all of them.
static const char *const level_names[] = {"scalar", "avx2", "neon", "avxvnni", "avx512", "amx"};

#if defined(__x86_64__)
// AMX tile data is off for a process until it asks the kernel (Linux ≥ 5.16) for it; the grant is
// for the whole process.
static int amx_permitted(void) {
#if defined(__linux__)
    const long arch_req_xcomp_perm = 0x1023, xfeature_xtiledata = 18;
    return syscall(SYS_arch_prctl, arch_req_xcomp_perm, xfeature_xtiledata) == 0;
#else
    return 0;
#endif
}

int x86_level_for(unsigned features) {
    const unsigned base = X86_AVX2 | X86_FMA | X86_F16C;
    // The 512-bit kernels (sgemm's tile, norms, AMX's packing and int16 split) use F, BW, VL and
    // DQ; from level avx512 up the VNNI kernels are the EVEX ones (int8_gemm.c), which need
    // AVX512-VNNI.
    const unsigned avx512 = X86_AVX512F | X86_AVX512BW | X86_AVX512VL | X86_AVX512DQ | X86_AVX512VNNI;
    if ((features & base) != base) return LEVEL_SCALAR;
    // VNNI in either encoding: AVX-VNNI (Alder Lake and later) or AVX512-VNNI (Cascade Lake, Ice
    // Lake, Zen 4: none of them has AVX-VNNI).
    const int has_avx512 = (features & avx512) == avx512;
    if (!(features & X86_AVXVNNI) && !has_avx512) return LEVEL_AVX2;
    if (!has_avx512) return LEVEL_AVXVNNI;
    // amx.c's int16 split uses VBMI's byte permutes (every AMX CPU has them).
    if ((features & (X86_AMX | X86_AVX512VBMI)) != (X86_AMX | X86_AVX512VBMI)) return LEVEL_AVX512;
    return LEVEL_AMX;
}

// The highest level this CPU supports.
static int best_x86_level(void) {
    __builtin_cpu_init();
    const struct {
        int has;
        unsigned bit;
    } features[] = {
        {__builtin_cpu_supports("avx2"), X86_AVX2},
        {__builtin_cpu_supports("fma"), X86_FMA},
        {__builtin_cpu_supports("f16c"), X86_F16C},
        {__builtin_cpu_supports("avxvnni"), X86_AVXVNNI},
        {__builtin_cpu_supports("avx512f"), X86_AVX512F},
        {__builtin_cpu_supports("avx512bw"), X86_AVX512BW},
        {__builtin_cpu_supports("avx512vl"), X86_AVX512VL},
        {__builtin_cpu_supports("avx512dq"), X86_AVX512DQ},
        {__builtin_cpu_supports("avx512vnni"), X86_AVX512VNNI},
        {__builtin_cpu_supports("avx512vbmi"), X86_AVX512VBMI},
    };
    unsigned have = 0;
    for (size_t i = 0; i < sizeof features / sizeof features[0]; i++)
        if (features[i].has) have |= features[i].bit;
    // Asked for only when everything else for level amx is there (the grant is for the process).
    if (x86_level_for(have | X86_AMX) == LEVEL_AMX && __builtin_cpu_supports("amx-int8") &&
        __builtin_cpu_supports("amx-tile") && amx_permitted())
        have |= X86_AMX;
    return x86_level_for(have);
}
#endif

// The level `name` means on this CPU, or -1 when the name is unknown or the CPU lacks it.
static int level_named(const char *name) {
    if (!name) return -1;
    int level = -1;
    for (int l = 0; l < (int)(sizeof level_names / sizeof level_names[0]); l++)
        if (strcasecmp(name, level_names[l]) == 0) level = l;
    if (level == LEVEL_SCALAR) return level;
#if defined(__x86_64__)
    if (level == LEVEL_NEON || level < 0) return -1;
    return level <= best_x86_level() ? level : -1;
#elif defined(__aarch64__)
    return level == LEVEL_NEON ? level : -1;
#else
    return -1;
#endif
}

static int choose(void) {
    int forced = level_named(getenv("DLORAL_KERNELS"));
    if (forced >= 0) return forced;
#if defined(__x86_64__)
    return best_x86_level();
#elif defined(__aarch64__)
    return LEVEL_NEON;
#else
    return LEVEL_SCALAR;
#endif
}

int kernels_level(void) {
    int p = __atomic_load_n(&chosen, __ATOMIC_RELAXED);
    if (p < 0) {
        p = choose();
        __atomic_store_n(&chosen, p, __ATOMIC_RELAXED);
    }
    return p;
}

int kernels_path(void) {
    int level = kernels_level();
    return level >= LEVEL_AVX2 && level != LEVEL_NEON ? PATH_AVX2 : level;
}

static inline int path(void) { return kernels_path(); }

const char *dloral_kernels_isa(void) { return level_names[kernels_level()]; }

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

// On x86-64 the int8 kernel is the AMX one at level amx, the AVX-VNNI one at avxvnni and avx512;
// on arm64 it is the SDOT one when the CPU has dotprod, else the SMULL one.
void dloral_gemm_i8i8_i32(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
#if defined(__x86_64__)
    if (kernels_level() >= LEVEL_AMX) {
        gemm_i8i8_i32_amx(m, n, kp, a, w, c);
        return;
    }
    if (kernels_level() >= LEVEL_AVXVNNI) {
        gemm_i8i8_i32_avxvnni(m, n, kp, a, w, c);
        return;
    }
#endif
    DISPATCH(gemm_i8i8_i32, (m, n, kp, a, w, c));
}

void dloral_gemm_i16i8_i32(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
#if defined(__x86_64__)
    if (kernels_level() >= LEVEL_AMX) {
        gemm_i16i8_i32_amx(m, n, kp, a, w, c);
        return;
    }
    if (kernels_level() >= LEVEL_AVXVNNI) {
        gemm_i16i8_i32_avxvnni(m, n, kp, a, w, c);
        return;
    }
#endif
    DISPATCH(gemm_i16i8_i32, (m, n, kp, a, w, c));
}

// MARK: - Single-precision GEMM (sgemm.c)

// The 8×32 zmm tile from the avx512 level up, else the path's 6×16 tile.
static void sgemm_dispatch(const sgemm_operands *operands) {
#if defined(__x86_64__)
    if (kernels_level() >= LEVEL_AVX512) {
        sgemm_avx512(operands);
        return;
    }
#endif
    DISPATCH(sgemm, (operands));
}

void dloral_sgemm(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    dloral_sgemm_typed(trans_a, trans_b, 0, 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dloral_sgemm_typed(int trans_a, int trans_b, int a_half, int b_half, size_t m, size_t n, size_t k, float alpha,
                        const void *a, size_t lda, const void *b, size_t ldb, float beta, float *c, size_t ldc) {
    const sgemm_operands operands = {trans_a, trans_b, a_half, b_half, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL};
    sgemm_dispatch(&operands);
}

void sgemm_serial(int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    const sgemm_operands operands = {trans_a, trans_b, 0, 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, NULL, 1};
    sgemm_dispatch(&operands);
}

sgemm_packed *sgemm_pack_b(int trans_b, size_t n, size_t k, const float *b, size_t ldb) {
    sgemm_packed *packed = NULL;
    const sgemm_operands operands = {0, trans_b, 0, 0, 0, n, k, 1.0f, NULL, 0, b, ldb, 0.0f, NULL, 0, NULL, 1, NULL,
                                     &packed};
    sgemm_dispatch(&operands);
    return packed;
}

void dloral_sconv2d(int w_half, size_t o, const void *weight, const dloral_conv_geometry *g, const float *image,
                    float beta, float *out) {
    const size_t n = g->ho * g->wo, k = g->c * g->kh * g->kw;
    const sgemm_operands operands = {0, 0, w_half, 0, o, n, k, 1.0f, weight, k, image, n, beta, out, n, g};
    sgemm_dispatch(&operands);
}

void dloral_kernels_force(const char *isa) {
    // A name this CPU cannot run means automatic: chosen again on the next call.
    __atomic_store_n(&chosen, level_named(isa), __ATOMIC_RELAXED);
}
