// GELU and GEGLU on 512-bit vectors (levels avx512 and up).
#include "activation_scalar.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))

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

AVX512 void gelu_run_avx512(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, gelu_avx512(_mm512_loadu_ps(x + i)));
    gelu_run_scalar(n - i, x + i, y + i);
}

AVX512 void geglu_avx512(size_t rows, size_t half, const float *x, float *y) {
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
