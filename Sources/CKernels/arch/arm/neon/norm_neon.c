// GroupNorm, SiLU and softmax steps on NEON (arm64); the same operations in the same order as
// norm_scalar.h (generic/norm.c describes the arithmetic).
#include "kernels_internal.h"
#include "norm_scalar.h"

#if defined(__aarch64__)
#include <arm_neon.h>

// exp_scalar on 4 lanes, operation for operation. The clamps are a compare and a bit select,
// not FMIN/FMAX: those return NaN when either operand is NaN (and FMINNM/FMAXNM the number),
// whereas the scalar `a < b ? a : b` returns b when the comparison is false, which includes a
// NaN operand; with the select a NaN input passes through both clamps unchanged, as in the
// scalar code. vfmaq_f32(c, a, b) = fma(a, b, c) rounds once like fmaf; vrndnq_f32 rounds to
// nearest even like rintf in the default rounding mode; vmulq / vaddq round on their own.
static inline float32x4_t exp_neon(float32x4_t input) {
    const float32x4_t hi = vdupq_n_f32(EXP_HI), lo = vdupq_n_f32(EXP_LO);
    float32x4_t x = vbslq_f32(vcltq_f32(hi, input), hi, input);  // EXP_HI < input ? EXP_HI : input
    x = vbslq_f32(vcgtq_f32(lo, x), lo, x);                       // EXP_LO > x ? EXP_LO : x
    const float32x4_t n = vrndnq_f32(vmulq_f32(x, vdupq_n_f32(LOG2E)));
    float32x4_t r = vfmaq_f32(x, n, vdupq_n_f32(-LN2_HI));  // fmaf(n, −LN2_HI, x)
    r = vfmaq_f32(r, n, vdupq_n_f32(-LN2_LO));              // fmaf(n, −LN2_LO, r)
    const float32x4_t y = vaddq_f32(exp_poly_neon(r), vdupq_n_f32(1.0f));
    // n is an integer in [−126, 128], so the conversion (toward zero) is exact; a NaN lane gives
    // 0 (FCVTZS), as the scalar (int32_t) cast does on arm64, and y is NaN there anyway.
    const int32x4_t ni = vcvtq_s32_f32(n), half = vshrq_n_s32(ni, 1), bias = vdupq_n_s32(127);
    const float32x4_t scale1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(half, bias), 23));
    const float32x4_t scale2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vsubq_s32(ni, half), bias), 23));
    const float32x4_t result = vmulq_f32(vmulq_f32(y, scale1), scale2);
    const float32x4_t high = vbslq_f32(vcgtq_f32(input, hi), vdupq_n_f32(INFINITY), result);  // input > EXP_HI ? +inf : result
    return vbslq_f32(vcltq_f32(input, lo), vdupq_n_f32(0.0f), high);                          // input < EXP_LO ? +0 : high
}

// silu_scalar: t / (1 + exp(−t)), the negation a sign flip (FNEG, as C's unary minus, NaN too).
static inline float32x4_t silu_neon(float32x4_t t) {
    return vdivq_f32(t, vaddq_f32(vdupq_n_f32(1.0f), exp_neon(vnegq_f32(t))));
}

// The 8 lanes are l01 = (l0, l1), l23, l45, l67; ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
static inline double lanes_sum_neon(float64x2_t l01, float64x2_t l23, float64x2_t l45, float64x2_t l67) {
    const float64x2_t a = vaddq_f64(l01, l45);  // l0 + l4, l1 + l5
    const float64x2_t b = vaddq_f64(l23, l67);  // l2 + l6, l3 + l7
    return (vgetq_lane_f64(a, 0) + vgetq_lane_f64(a, 1)) + (vgetq_lane_f64(b, 0) + vgetq_lane_f64(b, 1));
}

// moments_scalar with element i of each full block of 8 in lane i mod 8. The squares are a double
// product and a double sum, rounded separately (clang: the FP_CONTRACT pragma above; GCC ignores
// the pragma and needs -ffp-contract=off, as for the scalar code).
void moments_neon(size_t count, const float *x, double *mean, double *variance) {
    const size_t full = count / 8 * 8;
    float64x2_t l01 = vdupq_n_f64(0), l23 = l01, l45 = l01, l67 = l01;
    for (size_t i = 0; i < full; i += 8) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        l01 = vaddq_f64(l01, vcvt_f64_f32(vget_low_f32(v0)));
        l23 = vaddq_f64(l23, vcvt_high_f64_f32(v0));
        l45 = vaddq_f64(l45, vcvt_f64_f32(vget_low_f32(v1)));
        l67 = vaddq_f64(l67, vcvt_high_f64_f32(v1));
    }
    double sum = lanes_sum_neon(l01, l23, l45, l67);
    for (size_t i = full; i < count; i++) sum = sum + (double)x[i];
    const double m = sum / (double)count;
    const float64x2_t vm = vdupq_n_f64(m);
    l01 = l23 = l45 = l67 = vdupq_n_f64(0);
    for (size_t i = 0; i < full; i += 8) {
        const float32x4_t v0 = vld1q_f32(x + i), v1 = vld1q_f32(x + i + 4);
        const float64x2_t d0 = vsubq_f64(vcvt_f64_f32(vget_low_f32(v0)), vm);
        const float64x2_t d1 = vsubq_f64(vcvt_high_f64_f32(v0), vm);
        const float64x2_t d2 = vsubq_f64(vcvt_f64_f32(vget_low_f32(v1)), vm);
        const float64x2_t d3 = vsubq_f64(vcvt_high_f64_f32(v1), vm);
        l01 = vaddq_f64(l01, vmulq_f64(d0, d0));
        l23 = vaddq_f64(l23, vmulq_f64(d1, d1));
        l45 = vaddq_f64(l45, vmulq_f64(d2, d2));
        l67 = vaddq_f64(l67, vmulq_f64(d3, d3));
    }
    double squares = lanes_sum_neon(l01, l23, l45, l67);
    for (size_t i = full; i < count; i++) {
        const double d = (double)x[i] - m;
        squares = squares + d * d;
    }
    *mean = m;
    *variance = squares / (double)count;
}

// normalize_scalar on 4 lanes: ((x − mean)·rstd)·scale + shift, each operation rounded on its own.
static inline float32x4_t normalize4_neon(float32x4_t x, float32x4_t vm, float32x4_t vr, float32x4_t vs,
                                          float32x4_t vb, int silu) {
    float32x4_t t = vmulq_f32(vsubq_f32(x, vm), vr);
    t = vaddq_f32(vmulq_f32(t, vs), vb);
    return silu ? silu_neon(t) : t;
}

void normalize_neon(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
                           float *y) {
    const float32x4_t vm = vdupq_n_f32(mean), vr = vdupq_n_f32(rstd);
    const float32x4_t vs = vdupq_n_f32(scale), vb = vdupq_n_f32(shift);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {  // two independent vectors per step (x may be y: both loaded first)
        const float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + i + 4);
        vst1q_f32(y + i, normalize4_neon(x0, vm, vr, vs, vb, silu));
        vst1q_f32(y + i + 4, normalize4_neon(x1, vm, vr, vs, vb, silu));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, normalize4_neon(vld1q_f32(x + i), vm, vr, vs, vb, silu));
    normalize_scalar(n - i, x + i, mean, rstd, scale, shift, silu, y + i);
}

void silu_run_neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + i + 4);
        vst1q_f32(y + i, silu_neon(x0));
        vst1q_f32(y + i + 4, silu_neon(x1));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, silu_neon(vld1q_f32(x + i)));
    silu_run_scalar(n - i, x + i, y + i);
}

void exp_run_neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, exp_neon(vld1q_f32(x + i)));
    exp_run_scalar(n - i, x + i, y + i);
}

// vmaxq_f32 would return NaN for a NaN lane: compare and select as the scalar code does.
float peak_neon(size_t n, const float *p) {
    const size_t full = n / 4 * 4;
    float32x4_t m = vdupq_n_f32(-INFINITY);
    for (size_t i = 0; i < full; i += 4) {
        const float32x4_t x = vld1q_f32(p + i);
        m = vbslq_f32(vcgtq_f32(x, m), x, m);
    }
    float peak = peak_scalar(n - full, p + full);
    for (int l = 0; l < 4; l++) peak = m[l] > peak ? m[l] : peak;
    return peak;
}

// Lanes 0–3, 4–7, 8–11 and 12–15 of the scalar code's 16 as four vectors.
float exp_sum_neon(size_t n, float *p, float shift) {
    const size_t full = n / 16 * 16;
    const float32x4_t vs = vdupq_n_f32(shift);
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (size_t i = 0; i < full; i += 16) {
        for (int v = 0; v < 4; v++) {
            const float32x4_t e = exp_neon(vsubq_f32(vld1q_f32(p + i + 4 * v), vs));
            vst1q_f32(p + i + 4 * v, e);
            acc[v] = vaddq_f32(acc[v], e);
        }
    }
    float lane[16];
    for (int v = 0; v < 4; v++) vst1q_f32(lane + 4 * v, acc[v]);
    return exp_sum_tail(full, n, p, shift, lanes16_sum(lane));
}
#endif
