// GroupNorm, SiLU, softmax and LayerNorm steps on AVX2/FMA (levels avx2 and up); the same
// operations in the same order as norm_scalar.h (generic/norm.c describes the arithmetic).
#include "kernels_internal.h"
#include "norm_scalar.h"

#if defined(__x86_64__)
#include "../transpose_avx2.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline __m256 exp_avx2(__m256 input) {
    __m256 x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), input);  // second operand when either is NaN
    x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    const __m256 y = _mm256_add_ps(exp_poly_avx2(r), _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1), bias = _mm256_set1_epi32(127);
    const __m256 scale1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    const __m256 scale2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23));
    const __m256 result = _mm256_mul_ps(_mm256_mul_ps(y, scale1), scale2);
    const __m256 over = _mm256_cmp_ps(input, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ);
    const __m256 under = _mm256_cmp_ps(input, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ);
    const __m256 high = _mm256_blendv_ps(result, _mm256_set1_ps(INFINITY), over);
    return _mm256_blendv_ps(high, _mm256_setzero_ps(), under);
}

AVX2 static inline __m256 silu_avx2(__m256 t) {
    const __m256 e = exp_avx2(_mm256_sub_ps(_mm256_setzero_ps(), t));
    return _mm256_div_ps(t, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

AVX2 static double lanes_sum_avx2(__m256d lo, __m256d hi) {
    const __m256d s = _mm256_add_pd(lo, hi);  // l0+l4, l1+l5, l2+l6, l3+l7
    double v[4];
    _mm256_storeu_pd(v, s);
    return (v[0] + v[1]) + (v[2] + v[3]);
}

AVX2 void moments_avx2(size_t count, const float *x, double *mean, double *variance) {
    const size_t full = count / 8 * 8;
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (size_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double sum = lanes_sum_avx2(lo, hi);
    for (size_t i = full; i < count; i++) sum = sum + (double)x[i];
    const double m = sum / (double)count;
    const __m256d vm = _mm256_set1_pd(m);
    lo = _mm256_setzero_pd();
    hi = _mm256_setzero_pd();
    for (size_t i = 0; i < full; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm);
        const __m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm);
        lo = _mm256_add_pd(lo, _mm256_mul_pd(d0, d0));
        hi = _mm256_add_pd(hi, _mm256_mul_pd(d1, d1));
    }
    double squares = lanes_sum_avx2(lo, hi);
    for (size_t i = full; i < count; i++) {
        const double d = (double)x[i] - m;
        squares = squares + d * d;
    }
    *mean = m;
    *variance = squares / (double)count;
}

AVX2 void normalize_avx2(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
                                float *y) {
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    const __m256 vs = _mm256_set1_ps(scale), vb = _mm256_set1_ps(shift);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm), vr);
        t = _mm256_add_ps(_mm256_mul_ps(t, vs), vb);
        _mm256_storeu_ps(y + i, silu ? silu_avx2(t) : t);
    }
    normalize_scalar(n - i, x + i, mean, rstd, scale, shift, silu, y + i);
}

AVX2 void silu_run_avx2(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu_avx2(_mm256_loadu_ps(x + i)));
    silu_run_scalar(n - i, x + i, y + i);
}

AVX2 void exp_run_avx2(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp_avx2(_mm256_loadu_ps(x + i)));
    exp_run_scalar(n - i, x + i, y + i);
}

// max_ps(x, m) is x > m ? x : m, NaN x included, as the scalar compare.
AVX2 float peak_avx2(size_t n, const float *p) {
    const size_t full = n / 32 * 32;
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    for (size_t i = 0; i < full; i += 32) {
        m0 = _mm256_max_ps(_mm256_loadu_ps(p + i), m0);
        m1 = _mm256_max_ps(_mm256_loadu_ps(p + i + 8), m1);
        m2 = _mm256_max_ps(_mm256_loadu_ps(p + i + 16), m2);
        m3 = _mm256_max_ps(_mm256_loadu_ps(p + i + 24), m3);
    }
    float lane[8];
    _mm256_storeu_ps(lane, _mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
    float peak = peak_scalar(n - full, p + full);
    for (int l = 0; l < 8; l++) peak = lane[l] > peak ? lane[l] : peak;
    return peak;
}

// Lanes 0–7 and 8–15 of the scalar code's 16 as two vectors.
AVX2 float exp_sum_avx2(size_t n, float *p, float shift) {
    const size_t full = n / 16 * 16;
    const __m256 vs = _mm256_set1_ps(shift);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (size_t i = 0; i < full; i += 16) {
        const __m256 e0 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(p + i), vs));
        const __m256 e1 = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(p + i + 8), vs));
        _mm256_storeu_ps(p + i, e0);
        _mm256_storeu_ps(p + i + 8, e1);
        lo = _mm256_add_ps(lo, e0);
        hi = _mm256_add_ps(hi, e1);
    }
    float lane[16];
    _mm256_storeu_ps(lane, lo);
    _mm256_storeu_ps(lane + 8, hi);
    return exp_sum_tail(full, n, p, shift, lanes16_sum(lane));
}

AVX2 void layer_affine_avx2(size_t n, const float *x, float mean, float rstd, const float *w, const float *b,
                                   float *y) {
    const __m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
    size_t j = 0;
    for (; j + 8 <= n; j += 8) {
        __m256 t = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + j), vm), vr);
        if (w) t = _mm256_mul_ps(t, _mm256_loadu_ps(w + j));
        if (b) t = _mm256_add_ps(t, _mm256_loadu_ps(b + j));
        _mm256_storeu_ps(y + j, t);
    }
    layer_affine_scalar(n - j, x + j, mean, rstd, w ? w + j : NULL, b ? b + j : NULL, y + j);
}

AVX2 void transpose_out_avx2(size_t rows, size_t pixels, const float *t, float *y, size_t ldy) {
    if (rows != 8) {
        transpose_out_scalar(rows, pixels, t, y, ldy);
        return;
    }
    size_t p = 0;
    for (; p + 8 <= pixels; p += 8) {
        __m256 in[8], out[8];
        for (int j = 0; j < 8; j++) in[j] = _mm256_loadu_ps(t + j * NHWC_PIXELS + p);
        transpose8(in, out);
        for (int q = 0; q < 8; q++) _mm256_storeu_ps(y + (p + q) * ldy, out[q]);
    }
    for (; p < pixels; p++)
        for (size_t j = 0; j < 8; j++) y[p * ldy + j] = t[j * NHWC_PIXELS + p];
}
#endif
