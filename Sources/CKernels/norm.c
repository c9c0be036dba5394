// GroupNorm with an optional fused SiLU (dloral_group_norm) and SiLU alone (dloral_silu).
//
// The AVX2 and scalar paths give the same bits: the scalar code performs the AVX2 code's
// operations in the same order (its 8 double accumulators are the two 4-lane vectors; every
// multiply-add that is fused in one is fmaf in the other, every other operation rounds on its
// own), so a result never depends on which path ran or how the caller split the groups.
//
// Moments: mean = Σx / n and variance = Σ(x − mean)² / n, both summed in double in 8 lanes
// (element i of each full block of 8 into lane i mod 8; the lanes combined as
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)); the tail added after in order), as
// torch.nn.functional.group_norm defines them (biased variance), with far less rounding than a
// float sum. rstd = 1 / sqrt(variance + eps) in double; both rounded to float once.
// Normalisation: t = ((x − mean)·rstd)·scale + shift, each operation rounded (no fusion).
// SiLU: t / (1 + exp(−t)) with exp below.
//
// exp(x) (about 1 ulp): +inf above ln(FLT_MAX) as in float (so SiLU of t < −88.72 is −0, as in
// PyTorch); otherwise x clamped below at −87.3 (results under FLT_MIN are not needed here),
// n = rint(x·log2 e) in [−126, 128], r = x − n·ln2 (ln 2 in two parts, two fused steps), e^r by a
// degree-7 polynomial (Cephes's expf coefficients, Horner with fused steps), times 2^⌊n/2⌋ and
// then 2^(n − ⌊n/2⌋) (exact scalings built in the exponent bits). NaN passes through.
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define EXP_HI 88.72283935546875f  // the float just below ln(FLT_MAX)
#define EXP_LO -87.3f
#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define P0 1.9875691500e-4f
#define P1 1.3981999507e-3f
#define P2 8.3334519073e-3f
#define P3 4.1665795894e-2f
#define P4 1.6666665459e-1f
#define P5 5.0000001201e-1f

// MARK: - Scalar

static inline float exp_scalar(float input) {
    // min/max in the AVX2 operand order: a NaN x is returned as it is.
    float x = EXP_HI < input ? EXP_HI : input;
    x = EXP_LO > x ? EXP_LO : x;
    const float n = rintf(x * LOG2E);
    float r = fmaf(n, -LN2_HI, x);
    r = fmaf(n, -LN2_LO, r);
    float p = P0;
    p = fmaf(p, r, P1);
    p = fmaf(p, r, P2);
    p = fmaf(p, r, P3);
    p = fmaf(p, r, P4);
    p = fmaf(p, r, P5);
    const float r2 = r * r;
    float y = fmaf(p, r2, r);
    y = y + 1.0f;
    // n in [−126, 128]; for a NaN x the conversion gives garbage, and y is NaN anyway.
    const int32_t ni = (int32_t)n, half = ni >> 1;
    const int32_t bits1 = (half + 127) << 23, bits2 = (ni - half + 127) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, sizeof scale1);
    memcpy(&scale2, &bits2, sizeof scale2);
    const float result = (y * scale1) * scale2;
    return input > EXP_HI ? INFINITY : result;
}

static inline float silu_scalar(float t) { return t / (1.0f + exp_scalar(-t)); }

static double lanes_sum_scalar(const double lane[8]) {
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

static void moments_scalar(size_t count, const float *x, double *mean, double *variance) {
    const size_t full = count / 8 * 8;
    double lane[8] = {0};
    for (size_t i = 0; i < full; i += 8) {
        for (int l = 0; l < 8; l++) lane[l] = lane[l] + (double)x[i + l];
    }
    double sum = lanes_sum_scalar(lane);
    for (size_t i = full; i < count; i++) sum = sum + (double)x[i];
    const double m = sum / (double)count;
    memset(lane, 0, sizeof lane);
    for (size_t i = 0; i < full; i += 8) {
        for (int l = 0; l < 8; l++) {
            const double d = (double)x[i + l] - m;
            lane[l] = lane[l] + d * d;
        }
    }
    double squares = lanes_sum_scalar(lane);
    for (size_t i = full; i < count; i++) {
        const double d = (double)x[i] - m;
        squares = squares + d * d;
    }
    *mean = m;
    *variance = squares / (double)count;
}

static void normalize_scalar(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
                             float *y) {
    for (size_t i = 0; i < n; i++) {
        float t = (x[i] - mean) * rstd;
        t = t * scale + shift;
        y[i] = silu ? silu_scalar(t) : t;
    }
}

static void silu_run_scalar(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = silu_scalar(x[i]);
}

// MARK: - AVX2

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline __m256 exp_avx2(__m256 input) {
    __m256 x = _mm256_min_ps(_mm256_set1_ps(EXP_HI), input);  // second operand when either is NaN
    x = _mm256_max_ps(_mm256_set1_ps(EXP_LO), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), r);
    __m256 p = _mm256_set1_ps(P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(P5));
    const __m256 r2 = _mm256_mul_ps(r, r);
    __m256 y = _mm256_fmadd_ps(p, r2, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    const __m256i ni = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(ni, 1), bias = _mm256_set1_epi32(127);
    const __m256 scale1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(half, bias), 23));
    const __m256 scale2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, half), bias), 23));
    const __m256 result = _mm256_mul_ps(_mm256_mul_ps(y, scale1), scale2);
    const __m256 over = _mm256_cmp_ps(input, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ);
    return _mm256_blendv_ps(result, _mm256_set1_ps(INFINITY), over);
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

AVX2 static void moments_avx2(size_t count, const float *x, double *mean, double *variance) {
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

AVX2 static void normalize_avx2(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
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

AVX2 static void silu_run_avx2(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, silu_avx2(_mm256_loadu_ps(x + i)));
    silu_run_scalar(n - i, x + i, y + i);
}
#endif

// MARK: - Entry points

static int use_avx2(void) {
#if defined(__x86_64__)
    return strcmp(dloral_kernels_isa(), "avx2") == 0;
#else
    return 0;
#endif
}

void dloral_group_norm(size_t channels, size_t spatial, const float *x, const float *scale, const float *shift,
                       float eps, int silu, float *y) {
    const size_t count = channels * spatial;
    if (count == 0) return;
    const int avx2 = use_avx2();
    double mean, variance;
#if defined(__x86_64__)
    if (avx2) moments_avx2(count, x, &mean, &variance);
    else
#endif
        moments_scalar(count, x, &mean, &variance);
    const float m = (float)mean, rstd = (float)(1.0 / sqrt(variance + (double)eps));
    for (size_t c = 0; c < channels; c++) {
        const float s = scale ? scale[c] : 1.0f, b = shift ? shift[c] : 0.0f;
        const float *in = x + c * spatial;
        float *out = y + c * spatial;
#if defined(__x86_64__)
        if (avx2) {
            normalize_avx2(spatial, in, m, rstd, s, b, silu, out);
            continue;
        }
#endif
        normalize_scalar(spatial, in, m, rstd, s, b, silu, out);
    }
}

void dloral_silu(size_t n, const float *x, float *y) {
#if defined(__x86_64__)
    if (use_avx2()) {
        silu_run_avx2(n, x, y);
        return;
    }
#endif
    silu_run_scalar(n, x, y);
}
