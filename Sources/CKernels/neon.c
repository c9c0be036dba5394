// arm64 NEON paths (compiled on arm64 only).
#if defined(__aarch64__)
#include "kernels_internal.h"

#include <arm_neon.h>

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
#endif
