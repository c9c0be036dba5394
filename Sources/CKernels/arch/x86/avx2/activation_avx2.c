// GELU and GEGLU on AVX2/FMA (levels avx2 and up), gelu_scalar (activation_scalar.h) on 8 lanes.
#include "activation_scalar.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))


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

AVX2 void gelu_run_avx2(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, gelu_avx2(_mm256_loadu_ps(x + i)));
    gelu_run_scalar(n - i, x + i, y + i);
}

AVX2 void geglu_avx2(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) {
        const float *h = x + r * 2 * half, *g = h + half;
        float *out = y + r * half;
        size_t j = 0;
        for (; j + 8 <= half; j += 8)
            _mm256_storeu_ps(out + j, _mm256_mul_ps(_mm256_loadu_ps(h + j), gelu_avx2(_mm256_loadu_ps(g + j))));
        geglu_row_scalar(half - j, h + j, g + j, out + j);
    }
}
#endif
