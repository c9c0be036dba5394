// The integer layers' row quantizer and epilogues on NEON (arm64), with the bits of
// int_layer_scalar.h.
#include "int_layer_scalar.h"
#include "kernels_internal.h"

#if defined(__aarch64__)
#include <arm_neon.h>

void quantize_span_neon(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    const float32x4_t vinv = vdupq_n_f32(inv);
    const int32x4_t hi = vdupq_n_s32(qmax), lo = vdupq_n_s32(-qmax);
    const size_t kv = n & ~(size_t)7;
    for (size_t i = 0; i < kv; i += 8) {
        // One float multiply, then FCVTNS: round half to even, as lrintf in the default mode.
        // FCVTNS turns NaN into 0; §4.1 wants −qmax there (round_q), so NaN lanes take lo.
        const float32x4_t p0 = vmulq_f32(vld1q_f32(x + i), vinv), p1 = vmulq_f32(vld1q_f32(x + i + 4), vinv);
        int32x4_t v0 = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(p0), hi), lo);
        int32x4_t v1 = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(p1), hi), lo);
        v0 = vbslq_s32(vceqq_f32(p0, p0), v0, lo);
        v1 = vbslq_s32(vceqq_f32(p1, p1), v1, lo);
        // |v| ≤ qmax ≤ 32767 (127 for int8): the narrowings are exact.
        const int16x8_t p16 = vcombine_s16(vmovn_s32(v0), vmovn_s32(v1));
        if (bits == 8) vst1_s8((int8_t *)q + i, vmovn_s16(p16));
        else vst1q_s16((int16_t *)q + i, p16);
    }
    quantize_from(bits, kv, n, n, qmax, inv, x, q);
}

float pixel_amax_neon(size_t n, const float *x) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    uint32x4_t nan = vdupq_n_u32(0);
    const size_t nv = n & ~(size_t)3;
    for (size_t i = 0; i < nv; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        vmax = vmaxnmq_f32(vmax, vabsq_f32(v));
        nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(v, v)));
    }
    if (vmaxvq_u32(nan)) return NAN;
    const float amax = vmaxnmvq_f32(vmax), rest = pixel_amax_scalar(n - nv, x + nv);
    if (rest != rest) return NAN;
    return rest > amax ? rest : amax;
}

float quantize_row_neon(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
    // max|x|: FMAXNM, like the scalar comparison, passes over a quiet NaN; for finite values the
    // maximum does not depend on the order.
    float32x4_t vmax = vdupq_n_f32(0.0f);
    const size_t kv = k & ~(size_t)7;
    for (size_t i = 0; i < kv; i += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    const float amax = absmax_from(x, kv, k, vmaxnmvq_f32(vmax));
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * (bits == 8 ? 1 : 2));
        return 0;
    }
    const float inv = (float)qmax / amax;
    quantize_span_neon(bits, k, qmax, inv, x, q);
    quantize_from(bits, k, k, kp, qmax, inv, x, q);  // the zero tail
    return amax / (float)qmax;
}

// Conv: out[j·plane + p + r] = fma((float)acc[r][j], sa[r]·sw[j], bias[j]). Blocks of 4 rows × 4
// channels: four loads of acc rows, a 4×4 transpose (TRN1/TRN2), then per channel one FMLA over 4
// consecutive output pixels. SCVTF rounds to nearest even like the C conversion; sa·sw is the
// same float product as the scalar one (multiplication commutes exactly).
void epilogue_conv_neon(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                               const float *bias, float *out, size_t plane, size_t p) {
    const size_t r4 = rows & ~(size_t)3, n4 = n & ~(size_t)3;
    for (size_t j = 0; j < n4; j += 4) {
        for (size_t r = 0; r < r4; r += 4) {
            const int32x4_t a0 = vld1q_s32(acc + r * n + j), a1 = vld1q_s32(acc + (r + 1) * n + j);
            const int32x4_t a2 = vld1q_s32(acc + (r + 2) * n + j), a3 = vld1q_s32(acc + (r + 3) * n + j);
            const int32x4_t t0 = vtrn1q_s32(a0, a1), t1 = vtrn2q_s32(a0, a1);
            const int32x4_t t2 = vtrn1q_s32(a2, a3), t3 = vtrn2q_s32(a2, a3);
            const int32x4_t col[4] = {
                vreinterpretq_s32_s64(vtrn1q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2))),
                vreinterpretq_s32_s64(vtrn1q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3))),
                vreinterpretq_s32_s64(vtrn2q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2))),
                vreinterpretq_s32_s64(vtrn2q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3))),
            };  // col[c] = acc[r … r+3][j + c]
            const float32x4_t vsa = vld1q_f32(sa + r);
            for (size_t c = 0; c < 4; c++) {
                const float32x4_t b = vdupq_n_f32(bias ? bias[j + c] : 0.0f);
                const float32x4_t scale = vmulq_n_f32(vsa, sw[j + c]);
                vst1q_f32(out + (j + c) * plane + p + r, vfmaq_f32(b, vcvtq_f32_s32(col[c]), scale));
            }
        }
        for (size_t c = j; c < j + 4; c++) {  // the last rows mod 4
            float b = bias ? bias[c] : 0.0f, s = sw[c];
            float *o = out + c * plane + p;
            for (size_t r = r4; r < rows; r++) o[r] = fmaf((float)acc[r * n + c], sa[r] * s, b);
        }
    }
    for (size_t j = n4; j < n; j++) {  // the last channels mod 4
        float b = bias ? bias[j] : 0.0f, s = sw[j];
        float *o = out + j * plane + p;
        for (size_t r = 0; r < rows; r++) o[r] = fmaf((float)acc[r * n + j], sa[r] * s, b);
    }
}

// Linear: y[r][j] = fma((float)acc[r][j], sa[r]·sw[j], bias[j]), 4 channels per FMLA.
void epilogue_linear_neon(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                 const float *bias, float *y, size_t ldy) {
    const float32x4_t zero = vdupq_n_f32(0.0f);
    for (size_t r = 0; r < rows; r++) {
        float *o = y + r * ldy;
        const int32_t *a = acc + r * n;
        size_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float32x4_t scale = vmulq_n_f32(vld1q_f32(sw + j), sa[r]);
            const float32x4_t b = bias ? vld1q_f32(bias + j) : zero;
            vst1q_f32(o + j, vfmaq_f32(b, vcvtq_f32_s32(vld1q_s32(a + j)), scale));
        }
        for (; j < n; j++) o[j] = fmaf((float)a[j], sa[r] * sw[j], bias ? bias[j] : 0.0f);
    }
}
#endif
