// The 6 × 16 sgemm tile on NEON (arm64).
#include "sgemm_loops.h"

#pragma STDC FP_CONTRACT OFF

#if defined(__aarch64__)
#include <arm_neon.h>

// 24 q-register accumulators (6 rows × 4 quarters of 16 columns); fmla by element is fused.
static void sgemm_tile_neon(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha, float beta) {
    float32x4_t acc[MR6][4];
    for (int r = 0; r < MR6; r++) {
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_f32(0.0f);
    }
    for (size_t p = 0; p < kc; p++, a += MR6, b += NR16) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
        const float32x4_t a0 = vld1q_f32(a);
        const float32x2_t a4 = vld1_f32(a + 4);
#define SGEMM_NEON_ROW(R, FMA, V, L)              \
        acc[R][0] = FMA(acc[R][0], b0, V, L);      \
        acc[R][1] = FMA(acc[R][1], b1, V, L);      \
        acc[R][2] = FMA(acc[R][2], b2, V, L);      \
        acc[R][3] = FMA(acc[R][3], b3, V, L);
        SGEMM_NEON_ROW(0, vfmaq_laneq_f32, a0, 0)
        SGEMM_NEON_ROW(1, vfmaq_laneq_f32, a0, 1)
        SGEMM_NEON_ROW(2, vfmaq_laneq_f32, a0, 2)
        SGEMM_NEON_ROW(3, vfmaq_laneq_f32, a0, 3)
        SGEMM_NEON_ROW(4, vfmaq_lane_f32, a4, 0)
        SGEMM_NEON_ROW(5, vfmaq_lane_f32, a4, 1)
#undef SGEMM_NEON_ROW
    }
    for (int r = 0; r < MR6; r++) {  // C = alpha·S, or fma(alpha, S, beta·C)
        float *row = c + r * ldc;
        for (int q = 0; q < 4; q++) {
            float32x4_t out = beta == 0 ? vmulq_n_f32(acc[r][q], alpha)
                                        : vfmaq_n_f32(vmulq_n_f32(vld1q_f32(row + 4 * q), beta), acc[r][q], alpha);
            vst1q_f32(row + 4 * q, out);
        }
    }
}

const sgemm_kernel sgemm_kernel_neon = {.mr = MR6, .nr = NR16, .tile = sgemm_tile_neon,
                                        .widen = f16_to_f32_neon, .region = sgemm_region_6x16, .nc = SGEMM_NC};

#endif
