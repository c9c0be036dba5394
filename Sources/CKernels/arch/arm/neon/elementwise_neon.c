// arm64 NEON paths (compiled on arm64 only).
#if defined(__aarch64__)
#include "kernels_internal.h"

#include <arm_neon.h>

// Products and sums stay separate roundings (as in generic/elementwise_scalar.c): the only fused
// operations are the explicit vfmaq / fmaf. (clang honours this pragma; GCC ignores it and must be
// given -ffp-contract=off, as Tests/KernelCheck/run.sh does, or it may fuse the double products
// and sums of the energies below.)
#pragma STDC FP_CONTRACT OFF

void axpy_f32_neon(size_t n, float a, const float *x, float *y) {
    const float32x4_t av = vdupq_n_f32(a);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_f32(vld1q_f32(y + i), av, vld1q_f32(x + i)));
    for (; i < n; i++) y[i] = __builtin_fmaf(a, x[i], y[i]);
}

void f32_to_f16_neon(size_t n, const float *src, uint16_t *dst) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1_u16(dst + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(src + i))));
    for (; i < n; i++) dst[i] = f32_to_f16_one(src[i]);
}

void f16_to_f32_neon(size_t n, const uint16_t *src, float *dst) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
    for (; i < n; i++) dst[i] = f16_to_f32_one(src[i]);
}

void f32_to_bf16_neon(size_t n, const float *src, uint16_t *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_one(src[i]);
}

// Adds x² and (x − y)² of 8 floats (as doubles) to the lane-ordered accumulators s[0..3] (lanes
// 0-1, 2-3, 4-5, 6-7) and e[0..3]: one double product and one double sum each, rounded
// separately, as the scalar loop does.
static inline void energy8(float32x4_t x_lo, float32x4_t x_hi, float32x4_t y_lo, float32x4_t y_hi, float64x2_t s[4],
                           float64x2_t e[4]) {
    const float64x2_t x[4] = {vcvt_f64_f32(vget_low_f32(x_lo)), vcvt_high_f64_f32(x_lo), vcvt_f64_f32(vget_low_f32(x_hi)),
                              vcvt_high_f64_f32(x_hi)};
    const float64x2_t y[4] = {vcvt_f64_f32(vget_low_f32(y_lo)), vcvt_high_f64_f32(y_lo), vcvt_f64_f32(vget_low_f32(y_hi)),
                              vcvt_high_f64_f32(y_hi)};
    for (int l = 0; l < 4; l++) {
        const float64x2_t d = vsubq_f64(x[l], y[l]);
        s[l] = vaddq_f64(s[l], vmulq_f64(x[l], x[l]));
        e[l] = vaddq_f64(e[l], vmulq_f64(d, d));
    }
}

static inline void energy_store(const float64x2_t s[4], const float64x2_t e[4], double sig[8], double noi[8]) {
    for (int l = 0; l < 4; l++) {
        vst1q_f64(sig + 2 * l, s[l]);
        vst1q_f64(noi + 2 * l, e[l]);
    }
}

void quantize_i8_neon(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]) {
    // group_size is a multiple of 32 (Formats/dlrt.md §4), so element i of a group of 8 is in
    // energy lane i, as (g·group_size + i) & 7 in the scalar loop.
    const float32x4_t hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
    float64x2_t s[4], e[4];
    for (int l = 0; l < 4; l++) s[l] = e[l] = vdupq_n_f64(0.0);
    for (size_t g = 0; g < groups; g++) {
        const float *x = src + g * group_size;
        // max|x| (FMAXNM skips a quiet NaN as the scalar comparison does; the maximum of finite
        // values does not depend on the order).
        float32x4_t m = vdupq_n_f32(0.0f);
        for (size_t i = 0; i < group_size; i += 4) m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
        const float max_abs = vmaxnmvq_f32(m);
        const float sc = max_abs == 0 ? 1.0f : max_abs / 127.0f;
        scales[g] = sc;
        const float32x4_t sv = vdupq_n_f32(sc);
        for (size_t i = 0; i < group_size; i += 8) {
            const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
            // rint(x / s): correctly rounded division, FRINTN rounds half to even like rintf.
            float32x4_t r0 = vrndnq_f32(vdivq_f32(v0, sv)), r1 = vrndnq_f32(vdivq_f32(v1, sv));
            r0 = vminq_f32(vmaxq_f32(r0, lo), hi);
            r1 = vminq_f32(vmaxq_f32(r1, lo), hi);
            energy8(v0, v1, vmulq_f32(r0, sv), vmulq_f32(r1, sv), s, e);
            // Integral values in [−127, 127]: the conversion and both narrowings are exact.
            const int16x8_t r16 = vcombine_s16(vmovn_s32(vcvtq_s32_f32(r0)), vmovn_s32(vcvtq_s32_f32(r1)));
            vst1_s8(q + g * group_size + i, vmovn_s16(r16));
        }
    }
    double sig[8], noi[8];
    energy_store(s, e, sig, noi);
    energy_lanes_finish(0, 0, NULL, NULL, sig, noi, energy);
}

void error_energy_neon(size_t n, const float *ref, const float *approx, double energy[2]) {
    float64x2_t s[4], e[4];
    for (int l = 0; l < 4; l++) s[l] = e[l] = vdupq_n_f64(0.0);
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        energy8(vld1q_f32(ref + i), vld1q_f32(ref + i + 4), vld1q_f32(approx + i), vld1q_f32(approx + i + 4), s, e);
    double sig[8], noi[8];
    energy_store(s, e, sig, noi);
    energy_lanes_finish(i, n, ref, approx, sig, noi, energy);  // the tail continues the same lanes
}
#endif
