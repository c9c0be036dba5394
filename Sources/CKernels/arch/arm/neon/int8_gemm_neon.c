// The integer GEMM kernels on NEON (arm64): SDOT (dotprod) and SMULL for int8, SMLAL for int16.
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__)
#include <arm_neon.h>

// The SDOT kernel is compiled for the dotprod extension, the rest of the file for the baseline
// ARMv8-A NEON, so one binary runs on every arm64 CPU. GCC's arm_neon.h declares vdotq_s32 for
// armv8.2-a+dotprod, so with GCC the kernel must name that architecture (it uses no other
// v8.1/v8.2 instruction); clang takes the feature alone.
#if defined(__clang__)
#define DOTPROD __attribute__((target("dotprod")))
#else
#define DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

// Both int8 kernels and the int16 one work on 4×4 tiles: activation rows i … i+3 against weight
// rows j … j+3, sixteen int32x4 accumulators (each lane a partial sum of one c[i][j]), four
// activation and four weight vectors: 24 of the 32 q registers. A tile at the bottom or right
// edge (m or n not a multiple of 4) repeats its last valid row or column pointer, computes the
// full tile and stores only the valid part. All accumulation is lane-wise 32-bit addition, which
// wraps (SDOT, SADALP, SMLAL and ADDP are modular), so the lane sums add up to the scalar sum mod
// 2^32 in any order.

// Adds the columns k ∈ [kv, kp) (the tail past the vector loop) to the tile sums, wrapping like
// the scalar reference, and stores the valid rows × cols. sum[r] = [c[r][0], …, c[r][3]] over
// columns [0, kv).
static inline void tile_finish_i8(size_t kp, size_t kv, const int8_t *const ar[4], const int8_t *const wt[4],
                                  const int32x4_t sum[4], size_t rows, size_t cols, int32_t *c, size_t ldc) {
    for (size_t r = 0; r < rows; r++) {
        uint32_t out[4];
        vst1q_u32(out, vreinterpretq_u32_s32(sum[r]));
        for (size_t t = 0; t < cols; t++) {
            for (size_t k = kv; k < kp; k++) out[t] += (uint32_t)((int32_t)ar[r][k] * (int32_t)wt[t][k]);
            c[r * ldc + t] = (int32_t)out[t];
        }
    }
}

static inline void tile_finish_i16(size_t kp, size_t kv, const int16_t *const ar[4], const int8_t *const wt[4],
                                   const int32x4_t sum[4], size_t rows, size_t cols, int32_t *c, size_t ldc) {
    for (size_t r = 0; r < rows; r++) {
        uint32_t out[4];
        vst1q_u32(out, vreinterpretq_u32_s32(sum[r]));
        for (size_t t = 0; t < cols; t++) {
            for (size_t k = kv; k < kp; k++) out[t] += (uint32_t)((int32_t)ar[r][k] * (int32_t)wt[t][k]);
            c[r * ldc + t] = (int32_t)out[t];
        }
    }
}

// [Σ lanes of s0, Σ s1, Σ s2, Σ s3] (wrapping): ADDP of ADDPs.
static inline int32x4_t hsum4(int32x4_t s0, int32x4_t s1, int32x4_t s2, int32x4_t s3) {
    return vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
}

// Row and column pointers of a tile at (i, j), clamped to the last valid row / column.
#define TILE_POINTERS(T, a, w, kp, rows, cols)                                        \
    const T *ar[4];                                                                   \
    const int8_t *wt[4];                                                              \
    for (size_t q_ = 0; q_ < 4; q_++) {                                               \
        ar[q_] = (a) + (q_ < (rows) ? q_ : (rows) - 1) * (kp);                        \
        wt[q_] = (w) + (q_ < (cols) ? q_ : (cols) - 1) * (kp);                        \
    }                                                                                 \
    const T *a0 = ar[0], *a1 = ar[1], *a2 = ar[2], *a3 = ar[3];                       \
    const int8_t *w0 = wt[0], *w1 = wt[1], *w2 = wt[2], *w3 = wt[3]

// One activation vector against the four weight vectors, into row R's four accumulators.
#define ROW4(STEP, R, x) \
    s##R##0 = STEP(s##R##0, x, v0); s##R##1 = STEP(s##R##1, x, v1); s##R##2 = STEP(s##R##2, x, v2); s##R##3 = STEP(s##R##3, x, v3)

#define ZERO16 \
    int32x4_t s00 = vdupq_n_s32(0), s01 = s00, s02 = s00, s03 = s00, s10 = s00, s11 = s00, s12 = s00, s13 = s00, \
              s20 = s00, s21 = s00, s22 = s00, s23 = s00, s30 = s00, s31 = s00, s32 = s00, s33 = s00

#define HSUM16                                                                                 \
    const int32x4_t sum[4] = {hsum4(s00, s01, s02, s03), hsum4(s10, s11, s12, s13),            \
                              hsum4(s20, s21, s22, s23), hsum4(s30, s31, s32, s33)}

// MARK: int8 × int8 with SDOT

// SDOT: each int32 lane adds the four products of its four int8 pairs. A product is at most
// 128·128 = 2^14 in magnitude and four of them at most 2^16, so the step itself is exact for any
// int8 (−128 included) and the lanes wrap only as the scalar sum does.
#define STEP_SDOT(acc, x, w) vdotq_s32(acc, x, w)

// One 4×4 int8 tile, the same loop for both steps: per 16 columns of k, four weight rows loaded
// once and each of the four activation rows stepped against them.
#define I8_TILE(ATTRS, NAME, STEP)                                                                               \
    ATTRS static void NAME(size_t kp, const int8_t *a, size_t rows, const int8_t *w, size_t cols, int32_t *c, \
                           size_t ldc) {                                                                         \
        TILE_POINTERS(int8_t, a, w, kp, rows, cols);                                                             \
        const size_t kv = kp & ~(size_t)15;                                                                      \
        ZERO16;                                                                                                  \
        for (size_t k = 0; k < kv; k += 16) {                                                                    \
            const int8x16_t v0 = vld1q_s8(w0 + k), v1 = vld1q_s8(w1 + k), v2 = vld1q_s8(w2 + k),                 \
                            v3 = vld1q_s8(w3 + k);                                                               \
            int8x16_t x = vld1q_s8(a0 + k);                                                                      \
            ROW4(STEP, 0, x);                                                                                    \
            x = vld1q_s8(a1 + k);                                                                                \
            ROW4(STEP, 1, x);                                                                                    \
            x = vld1q_s8(a2 + k);                                                                                \
            ROW4(STEP, 2, x);                                                                                    \
            x = vld1q_s8(a3 + k);                                                                                \
            ROW4(STEP, 3, x);                                                                                    \
        }                                                                                                        \
        HSUM16;                                                                                                  \
        tile_finish_i8(kp, kv, ar, wt, sum, rows, cols, c, ldc);                                                 \
    }

I8_TILE(DOTPROD, i8_tile_sdot, STEP_SDOT)

// MARK: int8 × int8 with SMULL / SMLAL2 / SADALP (baseline NEON)

// SMULL multiplies the low eight int8 pairs into int16 lanes, SMLAL2 adds the products of the
// high eight (lane l holds x[l]·w[l] + x[l+8]·w[l+8]), and SADALP adds adjacent int16 lanes into
// the int32 accumulator. The int16 pair sum is the only place that could overflow: with weights
// in [−127, 127] (the contract) a product is at most 128·127 = 16256 in magnitude, so a pair is
// within ±32512 < 2^15, exact for activations anywhere in [−128, 127]. (Only (−128)·(−128) twice
// in one pair, 32768, would wrap; that needs a −128 weight, outside the contract, which the AVX2
// kernel does not support either.)
static inline int32x4_t step_smull(int32x4_t acc, int8x16_t x, int8x16_t w) {
    int16x8_t p = vmull_s8(vget_low_s8(x), vget_low_s8(w));
    p = vmlal_high_s8(p, x, w);
    return vpadalq_s16(acc, p);
}
#define STEP_SMULL(acc, x, w) step_smull(acc, x, w)

I8_TILE(, i8_tile_smull, STEP_SMULL)

// MARK: int8 × int8 with block scales (baseline NEON)

// gemm_i8i8_blocks_scalar with each block's sum formed by SMULL / SMLAL2 / SADALP (step_smull)
// and one ADDV: the same exact block sums, then the scalar path's product and fmaf.
void gemm_i8i8_blocks_neon(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                           const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs) {
    if (block % 16 != 0) {
        gemm_i8i8_blocks_scalar(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
        return;
    }
    const size_t nb = kp / block;
    for (size_t j = 0; j < n; j++) {
        const int8_t *wj = w + j * kp;
        const float *swj = sw + j * nb;
        for (size_t i = 0; i < m; i++) {
            const int8_t *ai = a + i * kp;
            const float *sai = sa + i * nb;
            float acc = bias ? bias[j] : 0.0f;
            for (size_t b = 0; b < nb; b++) {
                int32x4_t s = vdupq_n_s32(0);
                for (size_t k = b * block; k < (b + 1) * block; k += 16) s = step_smull(s, vld1q_s8(ai + k), vld1q_s8(wj + k));
                acc = fmaf((float)vaddvq_s32(s), sai[b] * swj[b], acc);
            }
            y[i * rs + j * cs] = acc;
        }
    }
}

// MARK: int16 × int8 with SMLAL / SMLAL2

// The weights are sign-extended to int16 (SXTL) once per tile step and used for four activation
// rows. SMLAL / SMLAL2 multiply int16 × int16 into int32 lanes: a product is at most
// 32768·128 = 2^22 in magnitude, exact; the lanes wrap only as the scalar sum does.
static inline int32x4_t step_smlal(int32x4_t acc, int16x8_t x, int16x8_t w) {
    acc = vmlal_s16(acc, vget_low_s16(x), vget_low_s16(w));
    return vmlal_high_s16(acc, x, w);
}
#define STEP_SMLAL(acc, x, w) step_smlal(acc, x, w)

static void i16_tile_smlal(size_t kp, const int16_t *a, size_t rows, const int8_t *w, size_t cols, int32_t *c,
                           size_t ldc) {
    TILE_POINTERS(int16_t, a, w, kp, rows, cols);
    const size_t kv = kp & ~(size_t)7;
    ZERO16;
    for (size_t k = 0; k < kv; k += 8) {
        const int16x8_t v0 = vmovl_s8(vld1_s8(w0 + k)), v1 = vmovl_s8(vld1_s8(w1 + k));
        const int16x8_t v2 = vmovl_s8(vld1_s8(w2 + k)), v3 = vmovl_s8(vld1_s8(w3 + k));
        int16x8_t x = vld1q_s16(a0 + k);
        ROW4(STEP_SMLAL, 0, x);
        x = vld1q_s16(a1 + k);
        ROW4(STEP_SMLAL, 1, x);
        x = vld1q_s16(a2 + k);
        ROW4(STEP_SMLAL, 2, x);
        x = vld1q_s16(a3 + k);
        ROW4(STEP_SMLAL, 3, x);
    }
    HSUM16;
    tile_finish_i16(kp, kv, ar, wt, sum, rows, cols, c, ldc);
}

// MARK: drivers

// Weight tiles outermost (four weight rows, 4·kp bytes, stay in L1 while every activation row
// block passes them), as in the AVX2 kernel.
#define TILE_LOOP(tile, a)                                                                      \
    for (size_t j = 0; j < n; j += 4) {                                                         \
        const size_t cols = n - j < 4 ? n - j : 4;                                              \
        for (size_t i = 0; i < m; i += 4)                                                       \
            tile(kp, (a) + i * kp, m - i < 4 ? m - i : 4, w + j * kp, cols, c + i * n + j, n);  \
    }

DOTPROD void gemm_i8i8_i32_neon_sdot(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    TILE_LOOP(i8_tile_sdot, a)
}

void gemm_i8i8_i32_neon_smull(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    TILE_LOOP(i8_tile_smull, a)
}

void gemm_i16i8_i32_neon(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    TILE_LOOP(i16_tile_smlal, a)
}

#undef TILE_LOOP
#undef HSUM16
#undef ZERO16
#undef ROW4
#undef TILE_POINTERS
#endif
