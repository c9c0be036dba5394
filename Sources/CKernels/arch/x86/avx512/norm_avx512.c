// GroupNorm + SiLU and softmax on 512-bit vectors (levels avx512 and up), operation for operation
// the AVX2 kernels (norm_avx2.c), which finish their tails.
#include "kernels_internal.h"
#include "norm_scalar.h"

#if defined(__x86_64__)
#include <immintrin.h>

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

AVX512 void normalize_avx512(size_t n, const float *x, float mean, float rstd, float scale, float shift,
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

AVX512 void silu_run_avx512(size_t n, const float *x, float *y) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, silu_avx512(_mm512_loadu_ps(x + i)));
    silu_run_avx2(n - i, x + i, y + i);
}

// The scalar code's 16 lanes as one vector.
AVX512 float exp_sum_avx512(size_t n, float *p, float shift) {
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
