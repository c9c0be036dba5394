// GroupNorm with an optional fused SiLU (dloral_group_norm) and SiLU alone (dloral_silu).
//
// The AVX2, NEON and scalar paths give the same bits: the scalar code performs the vector code's
// operations in the same order (its 8 double accumulators are AVX2's two 4-lane vectors and
// NEON's four 2-lane ones; every multiply-add that is fused in one is fmaf in the others, every
// other operation rounds on its own; the clamps are the same compare-and-select), so a result
// never depends on which path ran or how the caller split the groups. Elementwise steps
// (normalisation, SiLU) do not depend on the vector width: the vector loops finish with the
// scalar code.
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
// PyTorch), and +0 below −87.3 (where float's own exp is subnormal, under 1.2e-38, or 0: so a
// softmax gives a −inf logit weight 0, and an all −inf row NaN, as PyTorch); otherwise
// n = rint(x·log2 e) in [−126, 128], r = x − n·ln2 (ln 2 in two parts, two fused steps), e^r by a
// degree-7 polynomial (Cephes's expf coefficients, Horner with fused steps), times 2^⌊n/2⌋ and
// then 2^(n − ⌊n/2⌋) (exact scalings built in the exponent bits). NaN passes through.
#include "dloral_kernels.h"
#include "kernels_internal.h"
#include "exp_poly.h"
#include "transpose_avx2.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

// The float just above ln(FLT_MAX) = 88.722839052…: exp of anything larger is +inf by the select
// below; exp(EXP_HI) itself overflows to +inf in the final scaling (e^r·2^128 with r > 0).
#define EXP_HI 88.72283935546875f
#define EXP_LO -87.3f

// MARK: - Scalar

static inline float exp_scalar(float input) {
    // min/max in the AVX2 operand order: a NaN x is returned as it is.
    float x = EXP_HI < input ? EXP_HI : input;
    x = EXP_LO > x ? EXP_LO : x;
    const float n = rintf(x * LOG2E);
    float r = fmaf(n, -LN2_HI, x);
    r = fmaf(n, -LN2_LO, r);
    const float y = exp_poly_scalar(r) + 1.0f;
    // n in [−126, 128]; for a NaN x the conversion gives garbage, and y is NaN anyway.
    const int32_t ni = (int32_t)n, half = ni >> 1;
    const int32_t bits1 = (half + 127) << 23, bits2 = (ni - half + 127) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, sizeof scale1);
    memcpy(&scale2, &bits2, sizeof scale2);
    const float result = (y * scale1) * scale2;
    const float high = input > EXP_HI ? INFINITY : result;
    return input < EXP_LO ? 0.0f : high;
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

static void exp_run_scalar(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = exp_scalar(x[i]);
}

// Softmax's middle pass: p[i] = exp(p[i] − shift), returning Σ p[i] summed in 16 float lanes
// (element i of each full block of 16 into lane i mod 16; lane l + lane l+8 for l < 8, then
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)); the tail added after in order).
static float exp_sum_tail(size_t from, size_t n, float *p, float shift, float sum) {
    for (size_t i = from; i < n; i++) {
        p[i] = exp_scalar(p[i] - shift);
        sum = sum + p[i];
    }
    return sum;
}

// Softmax's first pass: the largest p[i] (`p[i] > peak` passes over NaN), −inf for none. The
// result does not depend on the order (up to the sign of a zero maximum, which no exp(x − m)
// can tell apart), so the vector paths compare lane by lane.
static float peak_scalar(size_t n, const float *p) {
    float peak = -INFINITY;
    for (size_t i = 0; i < n; i++) peak = p[i] > peak ? p[i] : peak;
    return peak;
}

// The 16 lanes of exp_sum combined: lane l + lane l+8 into 8, then
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
static float lanes16_sum(const float lane[16]) {
    float v[8];
    for (int l = 0; l < 8; l++) v[l] = lane[l] + lane[l + 8];
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static float exp_sum_scalar(size_t n, float *p, float shift) {
    const size_t full = n / 16 * 16;
    float lane[16] = {0};
    for (size_t i = 0; i < full; i += 16) {
        for (int l = 0; l < 16; l++) {
            p[i + l] = exp_scalar(p[i + l] - shift);
            lane[l] = lane[l] + p[i + l];
        }
    }
    return exp_sum_tail(full, n, p, shift, lanes16_sum(lane));
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

AVX2 static void exp_run_avx2(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp_avx2(_mm256_loadu_ps(x + i)));
    exp_run_scalar(n - i, x + i, y + i);
}

// max_ps(x, m) is x > m ? x : m, NaN x included, as the scalar compare.
AVX2 static float peak_avx2(size_t n, const float *p) {
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
AVX2 static float exp_sum_avx2(size_t n, float *p, float shift) {
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

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))

// exp_avx2 on 16 lanes, operation for operation (min/max keep the second operand for NaN, the
// clamps are compares and blends), at the avx512 level and up.
AVX512 static inline __m512 exp_avx512(__m512 input) {
    __m512 x = _mm512_min_ps(_mm512_set1_ps(EXP_HI), input);
    x = _mm512_max_ps(_mm512_set1_ps(EXP_LO), x);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), x);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), r);
    const __m512 y = _mm512_add_ps(exp_poly_avx512(r), _mm512_set1_ps(1.0f));
    const __m512i ni = _mm512_cvtps_epi32(n), half = _mm512_srai_epi32(ni, 1), bias = _mm512_set1_epi32(127);
    const __m512 scale1 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(half, bias), 23));
    const __m512 scale2 = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(ni, half), bias), 23));
    const __m512 result = _mm512_mul_ps(_mm512_mul_ps(y, scale1), scale2);
    const __mmask16 over = _mm512_cmp_ps_mask(input, _mm512_set1_ps(EXP_HI), _CMP_GT_OQ);
    const __mmask16 under = _mm512_cmp_ps_mask(input, _mm512_set1_ps(EXP_LO), _CMP_LT_OQ);
    const __m512 high = _mm512_mask_blend_ps(over, result, _mm512_set1_ps(INFINITY));
    return _mm512_mask_blend_ps(under, high, _mm512_setzero_ps());
}

// silu_avx2 and normalize_avx2 on 16 lanes, operation for operation (the same bits), at the
// avx512 level and up: GroupNorm + SiLU is exp-bound on the VAE's large images.
AVX512 static inline __m512 silu_avx512(__m512 t) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), t));
    return _mm512_div_ps(t, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

AVX512 static void normalize_avx512(size_t n, const float *x, float mean, float rstd, float scale, float shift,
                                    int silu, float *y) {
    const __m512 vm = _mm512_set1_ps(mean), vr = _mm512_set1_ps(rstd);
    const __m512 vs = _mm512_set1_ps(scale), vb = _mm512_set1_ps(shift);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 t = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(x + i), vm), vr);
        t = _mm512_add_ps(_mm512_mul_ps(t, vs), vb);
        _mm512_storeu_ps(y + i, silu ? silu_avx512(t) : t);
    }
    normalize_avx2(n - i, x + i, mean, rstd, scale, shift, silu, y + i);
}

AVX512 static void silu_run_avx512(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, silu_avx512(_mm512_loadu_ps(x + i)));
    silu_run_avx2(n - i, x + i, y + i);
}

// The scalar code's 16 lanes as one vector.
AVX512 static float exp_sum_avx512(size_t n, float *p, float shift) {
    const size_t full = n / 16 * 16;
    const __m512 vs = _mm512_set1_ps(shift);
    __m512 acc = _mm512_setzero_ps();
    for (size_t i = 0; i < full; i += 16) {
        const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(p + i), vs));
        _mm512_storeu_ps(p + i, e);
        acc = _mm512_add_ps(acc, e);
    }
    float lane[16];
    _mm512_storeu_ps(lane, acc);
    return exp_sum_tail(full, n, p, shift, lanes16_sum(lane));
}
#endif

// MARK: - NEON

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
static void moments_neon(size_t count, const float *x, double *mean, double *variance) {
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

static void normalize_neon(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
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

static void silu_run_neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t x0 = vld1q_f32(x + i), x1 = vld1q_f32(x + i + 4);
        vst1q_f32(y + i, silu_neon(x0));
        vst1q_f32(y + i + 4, silu_neon(x1));
    }
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, silu_neon(vld1q_f32(x + i)));
    silu_run_scalar(n - i, x + i, y + i);
}

static void exp_run_neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, exp_neon(vld1q_f32(x + i)));
    exp_run_scalar(n - i, x + i, y + i);
}

// vmaxq_f32 would return NaN for a NaN lane: compare and select as the scalar code does.
static float peak_neon(size_t n, const float *p) {
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
static float exp_sum_neon(size_t n, float *p, float shift) {
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

// MARK: - Entry points

// The path of dloral_kernels_isa(): the moments and the elementwise loop of each.
typedef void (*moments_fn)(size_t count, const float *x, double *mean, double *variance);
typedef void (*normalize_fn)(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
                             float *y);
typedef void (*elementwise_fn)(size_t n, const float *x, float *y);
typedef float (*exp_sum_fn)(size_t n, float *p, float shift);
typedef float (*peak_fn)(size_t n, const float *p);

typedef struct {
    moments_fn moments;
    normalize_fn normalize;
    elementwise_fn silu, exp;
    exp_sum_fn exp_sum;
    peak_fn peak;
} norm_path;

static norm_path current_path(void) {
    const int path = kernels_path();
#if defined(__x86_64__)
    if (path == PATH_AVX2) {
        if (kernels_level() >= LEVEL_AVX512)
            return (norm_path){moments_avx2, normalize_avx512, silu_run_avx512, exp_run_avx2, exp_sum_avx512, peak_avx2};
        return (norm_path){moments_avx2, normalize_avx2, silu_run_avx2, exp_run_avx2, exp_sum_avx2, peak_avx2};
    }
#elif defined(__aarch64__)
    if (path == PATH_NEON) return (norm_path){moments_neon, normalize_neon, silu_run_neon, exp_run_neon, exp_sum_neon, peak_neon};
#endif
    (void)path;
    return (norm_path){moments_scalar, normalize_scalar, silu_run_scalar, exp_run_scalar, exp_sum_scalar, peak_scalar};
}

void dloral_group_norm_stats(size_t count, const float *x, float eps, float *mean, float *rstd) {
    double m = 0, variance = 0;
    if (count > 0) current_path().moments(count, x, &m, &variance);
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(variance + (double)eps));
}

// LayerNorm's elementwise step: y = ((x − mean)·rstd)·w[j] + b[j], each operation rounded (w, b
// NULL for 1, 0: the step is then skipped, which rounds the same).
static void layer_affine_scalar(size_t n, const float *x, float mean, float rstd, const float *w, const float *b,
                                float *y) {
    for (size_t j = 0; j < n; j++) {
        float t = (x[j] - mean) * rstd;
        if (w) t = t * w[j];
        if (b) t = t + b[j];
        y[j] = t;
    }
}

#if defined(__x86_64__)
AVX2 static void layer_affine_avx2(size_t n, const float *x, float mean, float rstd, const float *w, const float *b,
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
#endif

void dloral_layer_norm(size_t d, const float *x, const float *weight, const float *bias, float eps, float *y,
                       size_t r0, size_t r1) {
    if (d == 0) return;
    const norm_path path = current_path();
    void (*affine)(size_t, const float *, float, float, const float *, const float *, float *) = layer_affine_scalar;
#if defined(__x86_64__)
    if (kernels_path() == PATH_AVX2) affine = layer_affine_avx2;
#endif
    for (size_t r = r0; r < r1; r++) {
        double m = 0, variance = 0;
        path.moments(d, x + r * d, &m, &variance);
        const float mean = (float)m, rstd = (float)(1.0 / sqrt(variance + (double)eps));
        affine(d, x + r * d, mean, rstd, weight, bias, y + r * d);
    }
}

void dloral_group_norm_moments(size_t count, const float *x, float *mean, float *variance) {
    double m = 0, v = 0;
    if (count > 0) current_path().moments(count, x, &m, &v);
    *mean = (float)m;
    *variance = (float)v;
}

void dloral_group_norm_apply(size_t channels, size_t spatial, const float *x, float mean, float rstd,
                             const float *scale, const float *shift, int silu, float *y) {
    if (channels * spatial == 0) return;
    const norm_path path = current_path();
    for (size_t c = 0; c < channels; c++) {
        const float s = scale ? scale[c] : 1.0f, b = shift ? shift[c] : 0.0f;
        path.normalize(spatial, x + c * spatial, mean, rstd, s, b, silu, y + c * spatial);
    }
}

void dloral_group_norm(size_t channels, size_t spatial, const float *x, const float *scale, const float *shift,
                       float eps, int silu, float *y) {
    const size_t count = channels * spatial;
    if (count == 0) return;
    float m, rstd;
    dloral_group_norm_stats(count, x, eps, &m, &rstd);
    dloral_group_norm_apply(channels, spatial, x, m, rstd, scale, shift, silu, y);
}

// Pixels per block of dloral_group_norm_nhwc: 8 channels × 256 pixels of normalised values (8 KiB)
// wait in L1 for their transposition. Each channel is read in runs of 1 KiB: with 64 pixels the
// runs were too short for the prefetcher and the fused pass was slower than GroupNorm and a
// transpose apart (107 against 101 ms for 128 × 512²; 78 ms with 256).
enum { NHWC_PIXELS = 256 };

// y[p·ldy + j] = t[j·NHWC_PIXELS + p] for p < pixels, j < rows (rows ≤ 8).
static void transpose_out_scalar(size_t rows, size_t pixels, const float *t, float *y, size_t ldy) {
    for (size_t p = 0; p < pixels; p++)
        for (size_t j = 0; j < rows; j++) y[p * ldy + j] = t[j * NHWC_PIXELS + p];
}

#if defined(__x86_64__)
AVX2 static void transpose_out_avx2(size_t rows, size_t pixels, const float *t, float *y, size_t ldy) {
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

void dloral_group_norm_nhwc(size_t channels, size_t spatial, const float *x, const float *mean, const float *rstd,
                            const float *scale, const float *shift, int silu, float *y, size_t p0, size_t p1) {
    const norm_path path = current_path();
    void (*transpose_out)(size_t, size_t, const float *, float *, size_t) = transpose_out_scalar;
#if defined(__x86_64__)
    if (kernels_path() == PATH_AVX2) transpose_out = transpose_out_avx2;
#endif
    float t[8 * NHWC_PIXELS];
    for (size_t p = p0; p < p1; p += NHWC_PIXELS) {
        const size_t pixels = p1 - p < NHWC_PIXELS ? p1 - p : NHWC_PIXELS;
        for (size_t c0 = 0; c0 < channels; c0 += 8) {
            const size_t rows = channels - c0 < 8 ? channels - c0 : 8;
            for (size_t j = 0; j < rows; j++) {
                const size_t c = c0 + j;
                path.normalize(pixels, x + c * spatial + p, mean[c], rstd[c], scale ? scale[c] : 1.0f,
                               shift ? shift[c] : 0.0f, silu, t + j * NHWC_PIXELS);
            }
            transpose_out(rows, pixels, t, y + p * channels + c0, channels);
        }
    }
}

void dloral_silu(size_t n, const float *x, float *y) { current_path().silu(n, x, y); }

void dloral_softmax(size_t n, float *p) {
    if (n == 0) return;
    const norm_path path = current_path();
    float peak = path.peak(n, p);
    if (peak == -INFINITY) peak = 0;  // all −inf: every e is 0, the sum 0 and the row NaN, as in PyTorch
    const float sum = path.exp_sum(n, p, peak);
    const float inverse = 1.0f / sum;
    for (size_t i = 0; i < n; i++) p[i] = p[i] * inverse;
}

void norm_moments(size_t count, const float *x, double *mean, double *variance) {
    current_path().moments(count, x, mean, variance);
}

void norm_exp(size_t n, const float *x, float *y) { current_path().exp(n, x, y); }
