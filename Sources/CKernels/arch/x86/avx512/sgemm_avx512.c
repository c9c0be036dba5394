// The 8 × 32 sgemm tile on AVX-512F (levels avx512 and up), and the loop nest compiled for it.
#include "sgemm_loops.h"

#pragma STDC FP_CONTRACT OFF

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))

// Runs only where the AVX-512 tile does, so it is compiled for AVX-512 too: the packing copies
// move whole zmm registers (a few percent on the SD shapes). It only moves data; no arithmetic.
AVX512 static void run_region_8x32(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    run_region_tiled(P, i0, i1, j0, j1, MR8, NR32, SGEMM512_MC, SGEMM512_NC);
}

// MARK: - AVX-512 tile

// 8 rows × 32 columns: 16 zmm accumulators, row r in zmm(2r) (columns 0–15) and zmm(2r+1)
// (16–31); per p two loads of B (zmm16, zmm17) and eight broadcasts of A (zmm18 and zmm19 in
// turn). vfmadd231ps rounds once, as fmaf does. The whole tile, write-back included, is inline
// assembly: for the reason given at the AVX2 tile, and because 16 read-write accumulator operands
// would count as 32 of the 30 GCC allows in one statement.
//
// 8 rows rather than 12 (24 accumulators, the most that fit with B and the broadcasts): both run
// the k loop at the FMA peak from L1/L2, but the channel counts of the networks (128 … 1280) are
// multiples of 8 and not of 12, and 8 × 32 measured a few percent faster on the SD shapes.
//
// X(P, R, LO, HI, T): row R's accumulators and its broadcast register.
#define SGEMM_512_ROWS(X, P)                                                                         \
    X(P, 0, 0, 1, 18) X(P, 1, 2, 3, 19) X(P, 2, 4, 5, 18) X(P, 3, 6, 7, 19) X(P, 4, 8, 9, 18)         \
    X(P, 5, 10, 11, 19) X(P, 6, 12, 13, 18) X(P, 7, 14, 15, 19)
#define SGEMM_512_ZERO(P, R, LO, HI, T)                   \
    "vpxord %%zmm" #LO ", %%zmm" #LO ", %%zmm" #LO "\n\t" \
    "vpxord %%zmm" #HI ", %%zmm" #HI ", %%zmm" #HI "\n\t"
// Step p + P: S[R] += A[p + P][R] · B[p + P].
#define SGEMM_512_FMA(P, R, LO, HI, T)                       \
    "vbroadcastss " #P "*32+" #R "*4(%[a]), %%zmm" #T "\n\t" \
    "vfmadd231ps %%zmm16, %%zmm" #T ", %%zmm" #LO "\n\t"     \
    "vfmadd231ps %%zmm17, %%zmm" #T ", %%zmm" #HI "\n\t"
#define SGEMM_512_STEP(P)                      \
    "vmovaps " #P "*128(%[b]), %%zmm16\n\t"    \
    "vmovaps " #P "*128+64(%[b]), %%zmm17\n\t" \
    SGEMM_512_ROWS(SGEMM_512_FMA, P)
// Write-back of row R (alpha in zmm16, beta in zmm17), then c moves to the next row:
// C = alpha·S when beta is 0 (C not read), else fma(alpha, S, beta·C).
#define SGEMM_512_OUT0(P, R, LO, HI, T)              \
    "vmulps %%zmm16, %%zmm" #LO ", %%zmm" #LO "\n\t" \
    "vmulps %%zmm16, %%zmm" #HI ", %%zmm" #HI "\n\t" \
    "vmovups %%zmm" #LO ", (%[c])\n\t"               \
    "vmovups %%zmm" #HI ", 64(%[c])\n\t"             \
    "add %[ldc], %[c]\n\t"
#define SGEMM_512_OUT(P, R, LO, HI, T)                \
    "vmulps (%[c]), %%zmm17, %%zmm18\n\t"            \
    "vmulps 64(%[c]), %%zmm17, %%zmm19\n\t"          \
    "vfmadd231ps %%zmm16, %%zmm" #LO ", %%zmm18\n\t" \
    "vfmadd231ps %%zmm16, %%zmm" #HI ", %%zmm19\n\t" \
    "vmovups %%zmm18, (%[c])\n\t"                    \
    "vmovups %%zmm19, 64(%[c])\n\t"                  \
    "add %[ldc], %[c]\n\t"

AVX512 static void sgemm_tile_avx512(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha,
                                     float beta) {
    const size_t ldc_bytes = ldc * sizeof(float);
    const int beta_zero = beta == 0;
    // rax holds kc mod 4 for the tail loop.
    __asm__ volatile(
        SGEMM_512_ROWS(SGEMM_512_ZERO, 0)
        "mov %[kc], %%rax\n\t"
        "and $3, %%eax\n\t"
        "shr $2, %[kc]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        SGEMM_512_STEP(0)
        SGEMM_512_STEP(1)
        SGEMM_512_STEP(2)
        SGEMM_512_STEP(3)
        "add $128, %[a]\n\t"
        "add $512, %[b]\n\t"
        "dec %[kc]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %%rax, %%rax\n\t"
        "jz 4f\n"
        "3:\n\t"
        SGEMM_512_STEP(0)
        "add $32, %[a]\n\t"
        "add $128, %[b]\n\t"
        "dec %%rax\n\t"
        "jnz 3b\n"
        "4:\n\t"
        "vbroadcastss %[alpha], %%zmm16\n\t"
        "vbroadcastss %[beta], %%zmm17\n\t"
        "test %[beta_zero], %[beta_zero]\n\t"
        "jz 5f\n\t"
        SGEMM_512_ROWS(SGEMM_512_OUT0, 0)
        "jmp 6f\n"
        "5:\n\t"
        SGEMM_512_ROWS(SGEMM_512_OUT, 0)
        "6:\n\t"
        "vzeroupper\n\t"
        : [a] "+r"(a), [b] "+r"(b), [kc] "+r"(kc), [c] "+r"(c)
        : [ldc] "r"(ldc_bytes), [alpha] "m"(alpha), [beta] "m"(beta), [beta_zero] "r"(beta_zero)
        : "rax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "cc", "memory");
}
#undef SGEMM_512_ROWS
#undef SGEMM_512_ZERO
#undef SGEMM_512_FMA
#undef SGEMM_512_STEP
#undef SGEMM_512_OUT0
#undef SGEMM_512_OUT

const sgemm_kernel sgemm_kernel_avx512 = {.mr = MR8, .nr = NR32, .tile = sgemm_tile_avx512,
                                        .widen = f16_to_f32_avx2, .region = run_region_8x32, .nc = SGEMM512_NC};

#endif
