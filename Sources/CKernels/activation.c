// Exact GELU (dloral_gelu) and the GEGLU gate (dloral_geglu): gelu(x) = x·Φ(x) =
// 0.5·x·(1 + erf(x/√2)), PyTorch's approximate='none', in float arithmetic, within 1.8 ulp of
// the true value wherever |gelu(x)| ≥ 1e-30 (every float checked against erf / erfc in double).
//
// The AVX2, AVX-512, NEON and scalar paths give the same bits: the scalar code performs the
// vector code's operations in the same order (every multiply-add fused in one is fmaf in the
// others, every other operation rounds on its own, the clamps and choices are the same
// compare-and-select, the table look-ups read the same entries), so a result never depends on
// which path ran or on how the caller split the rows. Elementwise: the vector loops finish with
// the scalar code.
//
// Arithmetic. With t = |x| and the normal tail Q(t) = 1 − Φ(t) = 0.5·erfc(t/√2), gelu(x) is
// x − v for x ≥ 0 and −v for x < 0 (Φ(−t) = Q(t)), v = t·Q(t); so nothing cancels for negative
// x as 1 + erf(x/√2) does, and for x ≥ 0 v ≤ x/2. For t ≥ 1, v = E·G with E = exp(−t²/2) and
// G(t) = t·Q(t)·exp(t²/2) = 0.5·t·erfcx(t/√2), which varies slowly (0.31 to 0.40):
//   t = min(|x|, 12)                     (a NaN x gives 12 here; its result, x − v, is NaN)
//   E = 2^n·(1 + p): s = t·t, e = fma(t, t, −s) (t² = s + e exactly), a = −0.5·s,
//       n = rint(a·log2 e) in [−104, 0], r = fma(n, −LN2_HI, a) + fma(n, −LN2_LO, −0.5·e)
//       (ln 2 in two parts, the first product exact), p = fma(P(r), r·r, r) with P Cephes's expf
//       polynomial (degree 5, Horner with fused steps; 1 + p within 3e-9 of e^r)
//   interval i = min(trunc(t + min(t, 1)), 7): [0, ½), [½, 1), [1, 2), …, [5, 6), [6, 12];
//       d = t − c_i (exact); y = Σ_k C[k][i]·d^k, degree 9, Horner with fused steps: Q(t) on
//       intervals 0 and 1 (interval 0 centred at 0 with C[0][0] = ½, so Q(tiny) is ½ exactly),
//       G(t) on the others (centred where the function is within 0.004 ulp of a float).
//       Coefficients fitted for this file (Tools/fit/gelu_coefficients.py: relative least
//       squares on Chebyshev nodes against scipy's erfc / erfcx), within 0.07 ulp.
//   v = fma(y, p, y)·2^n for i ≥ 2 (the scaling exact: v is normal), fma(y, 0, y)·t = y·t for i < 2
//   gelu = x < 0 ? (x < −12 ? −0 : −v) : x − v
// So gelu(±0) = ±0, gelu(tiny x) = x/2, gelu(+inf) = +inf, gelu(−inf) = −0, NaN → NaN (x's
// payload, quieted), and −0 for x < −12 (where |gelu| < 2.2e-32). GEGLU: y = h·gelu(g), one
// more rounding.
#include "dloral_kernels.h"
#include "exp_poly.h"
#include "kernels_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define T_MAX 12.0f
// LOG2E, LN2_HI, LN2_LO and Cephes's expf polynomial (e^r = 1 + r + r²·P(r) on |r| ≤ ln2 / 2):
// exp_poly.h, the same operations as norm.c's exp.

// Intervals 0 and 1 (t < 1) hold Q itself, the others G.
enum { G_DEGREE = 9, G_INTERVALS = 8, Q_INTERVALS = 2 };

// c_i: the centre of interval i (multiples of 2^−12, so t − c_i is exact on the interval).
static const float g_centre[G_INTERVALS] __attribute__((aligned(32))) = {
    0.0f, 0.766845703125f, 1.4755859375f, 2.500732421875f, 3.475830078125f, 4.4638671875f, 5.550537109375f, 8.9892578125f,
};

// C[k][i]: the coefficient of d^k on interval i, Q on intervals 0 and 1, G on the others
// (Tools/fit/gelu_coefficients.py).
static const float g_coef[G_DEGREE + 1][G_INTERVALS] __attribute__((aligned(32))) = {
    {5.000000000e-01f, 2.215866297e-01f, 3.069303036e-01f, 3.533483148e-01f, 3.718966842e-01f, 3.813658357e-01f,
     3.870858252e-01f, 3.941781223e-01f},
    {-3.989422917e-01f, -2.973145247e-01f, 7.223413140e-02f, 2.727962285e-02f, 1.298917364e-02f, 6.975043099e-03f,
     3.928751219e-03f, 1.023662160e-03f},
    {4.382526129e-07f, 1.139971837e-01f, -3.871814162e-02f, -1.148444600e-02f, -4.471518565e-03f, -2.008611336e-03f,
     -9.531158139e-04f, -1.631744817e-04f},
    {6.648419797e-02f, 2.041300386e-02f, 1.707308926e-02f, 4.066634458e-03f, 1.313837478e-03f, 4.987447173e-04f,
     2.009268501e-04f, 2.287778443e-05f},
    {4.282310692e-05f, -2.291296795e-02f, -6.607854273e-03f, -1.285795355e-03f, -3.487676440e-04f, -1.129517914e-04f,
     -3.887441198e-05f, -2.981120815e-06f},
    {-1.013338659e-02f, 4.521403753e-04f, 2.318091691e-03f, 3.735864302e-04f, 8.601680020e-05f, 2.428464904e-05f,
     7.164890576e-06f, 3.688538754e-07f},
    {3.179563500e-04f, 2.997902688e-03f, -7.510963478e-04f, -1.012225403e-04f, -2.040870459e-05f, -4.676309345e-06f,
     -1.270106850e-06f, -4.239484852e-08f},
    {9.054869297e-04f, -3.807114845e-04f, 2.284746879e-04f, 2.604402289e-05f, 4.327300303e-06f, 0.000000000e+00f,
     0.000000000e+00f, 4.874414206e-09f},
    {0.000000000e+00f, -2.874972997e-04f, -6.769334868e-05f, -6.877703981e-06f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, -7.493695109e-10f},
    {0.000000000e+00f, 4.694004383e-05f, 1.709982644e-05f, 1.479502771e-06f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 8.364604148e-11f},
};

// MARK: - Scalar

static inline float gelu_scalar(float x) {
    const float magnitude = fabsf(x);
    const float t = magnitude < T_MAX ? magnitude : T_MAX;  // the AVX2 min's operand order: NaN → T_MAX
    // E = exp(−t²/2) = 2^n·(1 + p).
    const float s = t * t;
    const float e = fmaf(t, t, -s);
    const float a = -0.5f * s;
    const float n = rintf(a * LOG2E);
    const float r = fmaf(n, -LN2_HI, a) + fmaf(n, -LN2_LO, -0.5f * e);
    const float p = exp_poly_scalar(r);
    // The polynomial of t's interval.
    const float u = t + (t < 1.0f ? t : 1.0f);
    int i = (int)u;
    i = i < G_INTERVALS - 1 ? i : G_INTERVALS - 1;
    const float d = t - g_centre[i];
    float g = g_coef[G_DEGREE][i];
    for (int k = G_DEGREE - 1; k >= 0; k--) g = fmaf(g, d, g_coef[k][i]);
    // n in [−104, 0]: 2^n is a normal float.
    const int32_t bits = ((int32_t)n + 127) << 23;
    float power;
    memcpy(&power, &bits, sizeof power);
    const int direct = i < Q_INTERVALS;
    const float v = fmaf(g, direct ? 0.0f : p, g) * (direct ? t : power);
    const float negative = x < -T_MAX ? -0.0f : -v;
    return x < 0.0f ? negative : x - v;
}

static void gelu_run_scalar(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = gelu_scalar(x[i]);
}

// One row of GEGLU: y[j] = h[j]·gelu(g[j]).
static void geglu_row_scalar(size_t n, const float *h, const float *g, float *y) {
    for (size_t j = 0; j < n; j++) y[j] = h[j] * gelu_scalar(g[j]);
}

static void geglu_scalar(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) geglu_row_scalar(half, x + r * 2 * half, x + r * 2 * half + half, y + r * half);
}

// MARK: - AVX2

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))

// gelu_scalar on 8 lanes. _mm256_min_ps(m, T_MAX) is `m < T_MAX ? m : T_MAX`; vpermps reads
// table entry i of each lane; cvttps truncates like the (int) cast.
AVX2 static inline __m256 gelu_avx2(__m256 x) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_min_ps(_mm256_andnot_ps(sign, x), _mm256_set1_ps(T_MAX));
    const __m256 s = _mm256_mul_ps(t, t);
    const __m256 e = _mm256_fmsub_ps(t, t, s);
    const __m256 a = _mm256_mul_ps(_mm256_set1_ps(-0.5f), s);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(a, _mm256_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256 r = _mm256_add_ps(_mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_HI), a),
                                   _mm256_fmadd_ps(n, _mm256_set1_ps(-LN2_LO), _mm256_mul_ps(_mm256_set1_ps(-0.5f), e)));
    const __m256 p = exp_poly_avx2(r);
    const __m256 u = _mm256_add_ps(t, _mm256_min_ps(t, _mm256_set1_ps(1.0f)));
    const __m256i i = _mm256_min_epi32(_mm256_cvttps_epi32(u), _mm256_set1_epi32(G_INTERVALS - 1));
    const __m256 d = _mm256_sub_ps(t, _mm256_permutevar8x32_ps(_mm256_load_ps(g_centre), i));
    __m256 g = _mm256_permutevar8x32_ps(_mm256_load_ps(g_coef[G_DEGREE]), i);
    for (int k = G_DEGREE - 1; k >= 0; k--) g = _mm256_fmadd_ps(g, d, _mm256_permutevar8x32_ps(_mm256_load_ps(g_coef[k]), i));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    const __m256 direct = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(Q_INTERVALS), i));
    const __m256 v = _mm256_mul_ps(_mm256_fmadd_ps(g, _mm256_andnot_ps(direct, p), g),
                                   _mm256_blendv_ps(_mm256_castsi256_ps(bits), t, direct));
    const __m256 far = _mm256_cmp_ps(x, _mm256_set1_ps(-T_MAX), _CMP_LT_OQ);
    const __m256 negative = _mm256_blendv_ps(_mm256_xor_ps(v, sign), sign, far);
    return _mm256_blendv_ps(_mm256_sub_ps(x, v), negative, _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ));
}

AVX2 static void gelu_run_avx2(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu_avx2(_mm256_loadu_ps(x + i)));
    gelu_run_scalar(n - i, x + i, y + i);
}

AVX2 static void geglu_avx2(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * half, *g = h + half;
        float *out = y + r * half;
        size_t j = 0;
        for (; j + 8 <= half; j += 8)
            _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(h + j), gelu_avx2(_mm256_loadu_ps(g + j))));
        geglu_row_scalar(half - j, h + j, g + j, out + j);
    }
}

// MARK: - AVX-512 (level avx512 and up)

// gelu_avx2 on 16 lanes: each 8-entry table in both halves of a zmm, read by vpermps (i ≤ 7).
AVX512 static inline __m512 gelu_avx512(__m512 x) {
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 t = _mm512_min_ps(_mm512_andnot_ps(sign, x), _mm512_set1_ps(T_MAX));
    const __m512 s = _mm512_mul_ps(t, t);
    const __m512 e = _mm512_fmsub_ps(t, t, s);
    const __m512 a = _mm512_mul_ps(_mm512_set1_ps(-0.5f), s);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(LOG2E)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 r = _mm512_add_ps(_mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_HI), a),
                                   _mm512_fmadd_ps(n, _mm512_set1_ps(-LN2_LO), _mm512_mul_ps(_mm512_set1_ps(-0.5f), e)));
    const __m512 p = exp_poly_avx512(r);
    const __m512 u = _mm512_add_ps(t, _mm512_min_ps(t, _mm512_set1_ps(1.0f)));
    const __m512i i = _mm512_min_epi32(_mm512_cvttps_epi32(u), _mm512_set1_epi32(G_INTERVALS - 1));
    const __m512 d = _mm512_sub_ps(t, _mm512_permutexvar_ps(i, _mm512_broadcast_f32x8(_mm256_load_ps(g_centre))));
    __m512 g = _mm512_permutexvar_ps(i, _mm512_broadcast_f32x8(_mm256_load_ps(g_coef[G_DEGREE])));
    for (int k = G_DEGREE - 1; k >= 0; k--)
        g = _mm512_fmadd_ps(g, d, _mm512_permutexvar_ps(i, _mm512_broadcast_f32x8(_mm256_load_ps(g_coef[k]))));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    const __mmask16 direct = _mm512_cmplt_epi32_mask(i, _mm512_set1_epi32(Q_INTERVALS));
    const __m512 v = _mm512_mul_ps(_mm512_fmadd_ps(g, _mm512_mask_blend_ps(direct, p, _mm512_setzero_ps()), g),
                                   _mm512_mask_blend_ps(direct, _mm512_castsi512_ps(bits), t));
    const __mmask16 far = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-T_MAX), _CMP_LT_OQ);
    const __m512 negative = _mm512_mask_blend_ps(far, _mm512_xor_ps(v, sign), sign);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ), _mm512_sub_ps(x, v), negative);
}

AVX512 static void gelu_run_avx512(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu_avx512(_mm512_loadu_ps(x + i)));
    gelu_run_scalar(n - i, x + i, y + i);
}

AVX512 static void geglu_avx512(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * half, *g = h + half;
        float *out = y + r * half;
        size_t j = 0;
        for (; j + 16 <= half; j += 16)
            _mm512_storeu_ps(out + j, _mm512_mul_ps(_mm512_loadu_ps(h + j), gelu_avx512(_mm512_loadu_ps(g + j))));
        geglu_row_scalar(half - j, h + j, g + j, out + j);
    }
}
#endif

// MARK: - NEON

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

static void gelu_run_neon(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, gelu_neon(vld1q_f32(x + i)));
    gelu_run_scalar(n - i, x + i, y + i);
}

static void geglu_neon(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * half, *g = h + half;
        float *out = y + r * half;
        size_t j = 0;
        for (; j + 4 <= half; j += 4) vst1q_f32(out + j, vmulq_f32(vld1q_f32(h + j), gelu_neon(vld1q_f32(g + j))));
        geglu_row_scalar(half - j, h + j, g + j, out + j);
    }
}
#endif

// MARK: - Entry points

typedef struct {
    void (*gelu)(size_t n, const float *x, float *y);
    void (*geglu)(size_t rows, size_t half, const float *x, float *y);
} activation_path;

// The 16-lane code from level avx512 up, else the level's path.
static activation_path current_path(void) {
#if defined(__x86_64__)
    if (kernels_level() >= LEVEL_AVX512) return (activation_path){gelu_run_avx512, geglu_avx512};
    if (kernels_path() == PATH_AVX2) return (activation_path){gelu_run_avx2, geglu_avx2};
#elif defined(__aarch64__)
    if (kernels_path() == PATH_NEON) return (activation_path){gelu_run_neon, geglu_neon};
#endif
    return (activation_path){gelu_run_scalar, geglu_scalar};
}

void dloral_gelu(size_t n, const float *x, float *y) { current_path().gelu(n, x, y); }

void dloral_geglu(size_t rows, size_t half, const float *x, float *y) { current_path().geglu(rows, half, x, y); }
