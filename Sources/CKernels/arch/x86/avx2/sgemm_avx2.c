// The 6 × 16 sgemm tile on AVX2/FMA (levels avx2 and up).
#include "sgemm_loops.h"

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

// 12 ymm accumulators (6 rows × 2 halves of 8 columns); per p two loads of B and six broadcasts
// of A. vfmadd231ps rounds once, as fmaf does.
//
// The k loop is inline assembly with the accumulators in registers: SwiftPM compiles C at -O0 in
// debug builds, where the same loop written with intrinsics keeps every vector on the stack and
// runs at 3% of the FMA peak. The assembly is what clang -O2 makes of that intrinsics loop.
#define SGEMM_AVX2_STEP(P)                                          \
    "vmovaps " #P "*64(%[b]), %%ymm12\n\t"                          \
    "vmovaps " #P "*64+32(%[b]), %%ymm13\n\t"                       \
    "vbroadcastss " #P "*24(%[a]), %%ymm14\n\t"                     \
    "vfmadd231ps %%ymm12, %%ymm14, %[c00]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm14, %[c01]\n\t"                      \
    "vbroadcastss " #P "*24+4(%[a]), %%ymm15\n\t"                   \
    "vfmadd231ps %%ymm12, %%ymm15, %[c10]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm15, %[c11]\n\t"                      \
    "vbroadcastss " #P "*24+8(%[a]), %%ymm14\n\t"                   \
    "vfmadd231ps %%ymm12, %%ymm14, %[c20]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm14, %[c21]\n\t"                      \
    "vbroadcastss " #P "*24+12(%[a]), %%ymm15\n\t"                  \
    "vfmadd231ps %%ymm12, %%ymm15, %[c30]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm15, %[c31]\n\t"                      \
    "vbroadcastss " #P "*24+16(%[a]), %%ymm14\n\t"                  \
    "vfmadd231ps %%ymm12, %%ymm14, %[c40]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm14, %[c41]\n\t"                      \
    "vbroadcastss " #P "*24+20(%[a]), %%ymm15\n\t"                  \
    "vfmadd231ps %%ymm12, %%ymm15, %[c50]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm15, %[c51]\n\t"

AVX2 static void sgemm_tile_avx2(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha, float beta) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    // rax holds kc mod 4 for the tail loop (GCC allows 30 operands, and "+" counts twice).
    __asm__ volatile(
        "mov %[kc], %%rax\n\t"
        "and $3, %%eax\n\t"
        "shr $2, %[kc]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        SGEMM_AVX2_STEP(0)
        SGEMM_AVX2_STEP(1)
        SGEMM_AVX2_STEP(2)
        SGEMM_AVX2_STEP(3)
        "add $96, %[a]\n\t"
        "add $256, %[b]\n\t"
        "dec %[kc]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %%rax, %%rax\n\t"
        "jz 4f\n"
        "3:\n\t"
        SGEMM_AVX2_STEP(0)
        "add $24, %[a]\n\t"
        "add $64, %[b]\n\t"
        "dec %%rax\n\t"
        "jnz 3b\n"
        "4:\n\t"
        : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20), [c21] "+x"(c21),
          [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41), [c50] "+x"(c50), [c51] "+x"(c51),
          [a] "+r"(a), [b] "+r"(b), [kc] "+r"(kc)
        :
        : "rax", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    // Write-back: C = alpha·S, or fma(alpha, S, beta·C).
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#define SGEMM_AVX2_OUT(R, LO, HI)                                                                  \
    do {                                                                                          \
        float *row = c + (R) * ldc;                                                               \
        if (beta == 0) {                                                                          \
            _mm256_storeu_ps(row, _mm256_mul_ps(va, LO));                                         \
            _mm256_storeu_ps(row + 8, _mm256_mul_ps(va, HI));                                     \
        } else {                                                                                  \
            _mm256_storeu_ps(row, _mm256_fmadd_ps(va, LO, _mm256_mul_ps(vb, _mm256_loadu_ps(row))));         \
            _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(va, HI, _mm256_mul_ps(vb, _mm256_loadu_ps(row + 8)))); \
        }                                                                                         \
    } while (0)
    SGEMM_AVX2_OUT(0, c00, c01);
    SGEMM_AVX2_OUT(1, c10, c11);
    SGEMM_AVX2_OUT(2, c20, c21);
    SGEMM_AVX2_OUT(3, c30, c31);
    SGEMM_AVX2_OUT(4, c40, c41);
    SGEMM_AVX2_OUT(5, c50, c51);
#undef SGEMM_AVX2_OUT
}
#undef SGEMM_AVX2_STEP

const sgemm_kernel sgemm_kernel_avx2 = {.mr = MR6, .nr = NR16, .tile = sgemm_tile_avx2,
                                        .widen = f16_to_f32_avx2, .region = sgemm_region_6x16, .nc = SGEMM_NC};

#endif
