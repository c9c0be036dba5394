// GELU and GEGLU on NEON (arm64), gelu_scalar (activation_scalar.h) on 4 lanes.
#include "activation_scalar.h"
#include "kernels_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

// Table entry i of each lane: TBL on the 8 floats' 32 bytes with byte indices 4i, 4i + 1, ….
static inline float32x4_t lookup_neon(const float *table, uint8x16_t bytes) {
    const uint8x16x2_t t = {{vld1q_u8((const uint8_t *)table), vld1q_u8((const uint8_t *)(table + 4))}};
    return vreinterpretq_f32_u8(vqtbl2q_u8(t, bytes));
}

// gelu_scalar on 4 lanes. The clamp is a compare and a bit select (FMIN would return NaN for a
// NaN operand); vcvtq_s32_f32 truncates like the (int) cast; vfmaq_f32(c, a, b) = fma(a, b, c).
static inline float32x4_t gelu_neon(float32x4_t x) {
    const float32x4_t magnitude = vabsq_f32(x), t_max = vdupq_n_f32(T_MAX);
    const float32x4_t t = vbslq_f32(vcltq_f32(magnitude, t_max), magnitude, t_max);
    const float32x4_t s = vmulq_f32(t, t);
    const float32x4_t e = vfmaq_f32(vnegq_f32(s), t, t);  // fma(t, t, −s)
    const float32x4_t a = vmulq_f32(vdupq_n_f32(-0.5f), s);
    const float32x4_t n = vrndnq_f32(vmulq_f32(a, vdupq_n_f32(LOG2E)));
    const float32x4_t r = vaddq_f32(vfmaq_f32(a, n, vdupq_n_f32(-LN2_HI)),
                                    vfmaq_f32(vmulq_f32(vdupq_n_f32(-0.5f), e), n, vdupq_n_f32(-LN2_LO)));
    const float32x4_t p = exp_poly_neon(r);
    const float32x4_t one = vdupq_n_f32(1.0f);
    const float32x4_t u = vaddq_f32(t, vbslq_f32(vcltq_f32(t, one), t, one));
    const uint32x4_t i = vreinterpretq_u32_s32(vminq_s32(vcvtq_s32_f32(u), vdupq_n_s32(G_INTERVALS - 1)));
    const uint8x16_t bytes = vreinterpretq_u8_u32(vmlaq_u32(vdupq_n_u32(0x03020100u), i, vdupq_n_u32(0x04040404u)));
    const float32x4_t d = vsubq_f32(t, lookup_neon(g_centre, bytes));
    float32x4_t g = lookup_neon(g_coef[G_DEGREE], bytes);
    for (int k = G_DEGREE - 1; k >= 0; k--) g = vfmaq_f32(lookup_neon(g_coef[k], bytes), g, d);
    const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    const uint32x4_t direct = vcltq_u32(i, vdupq_n_u32(Q_INTERVALS));
    const float32x4_t v = vmulq_f32(vfmaq_f32(g, g, vbslq_f32(direct, vdupq_n_f32(0.0f), p)),
                                    vbslq_f32(direct, t, vreinterpretq_f32_s32(bits)));
    const float32x4_t negative = vbslq_f32(vcltq_f32(x, vdupq_n_f32(-T_MAX)), vdupq_n_f32(-0.0f), vnegq_f32(v));
    return vbslq_f32(vcltq_f32(x, vdupq_n_f32(0.0f)), negative, vsubq_f32(x, v));
}

void gelu_run_neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, gelu_neon(vld1q_f32(x + i)));
    gelu_run_scalar(n - i, x + i, y + i);
}

void geglu_neon(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * half, *g = h + half;
        float *out = y + r * half;
        size_t j = 0;
        for (; j + 4 <= half; j += 4) vst1q_f32(out + j, vmulq_f32(vld1q_f32(h + j), gelu_neon(vld1q_f32(g + j))));
        geglu_row_scalar(half - j, h + j, g + j, out + j);
    }
}
#endif
