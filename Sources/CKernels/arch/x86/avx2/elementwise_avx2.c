// x86-64 AVX2 + FMA + F16C, compiled for those features per function and used only when the
// CPU reports them (the avx2 level and up, backend/kernel_table.c).
#if defined(__x86_64__)
#include "kernels_internal.h"

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

#pragma STDC FP_CONTRACT OFF

// Adds x² and (x − y)² of 8 floats to lane-ordered double accumulators (lanes 0-3 lo, 4-7 hi).
AVX2 static inline void energy8(__m256 x, __m256 y, __m256d *s_lo, __m256d *s_hi, __m256d *n_lo, __m256d *n_hi) {
    __m256d x_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
    __m256d x_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    __m256d d_lo = _mm256_sub_pd(x_lo, _mm256_cvtps_pd(_mm256_castps256_ps128(y)));
    __m256d d_hi = _mm256_sub_pd(x_hi, _mm256_cvtps_pd(_mm256_extractf128_ps(y, 1)));
    *s_lo = _mm256_add_pd(*s_lo, _mm256_mul_pd(x_lo, x_lo));
    *s_hi = _mm256_add_pd(*s_hi, _mm256_mul_pd(x_hi, x_hi));
    *n_lo = _mm256_add_pd(*n_lo, _mm256_mul_pd(d_lo, d_lo));
    *n_hi = _mm256_add_pd(*n_hi, _mm256_mul_pd(d_hi, d_hi));
}

AVX2 static inline void energy_finish(__m256d s_lo, __m256d s_hi, __m256d n_lo, __m256d n_hi, double energy[2]) {
    double s[8], n[8];
    _mm256_storeu_pd(s, s_lo);
    _mm256_storeu_pd(s + 4, s_hi);
    _mm256_storeu_pd(n, n_lo);
    _mm256_storeu_pd(n + 4, n_hi);
    for (int l = 0; l < 8; l++) {
        energy[0] += s[l];
        energy[1] += n[l];
    }
}

AVX2 void quantize_i8_avx2(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]) {
    // group_size is a multiple of 32 (Formats/dlrt.md §4).
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    __m256d s_lo = _mm256_setzero_pd(), s_hi = s_lo, n_lo = s_lo, n_hi = s_lo;
    for (size_t g = 0; g < groups; g++) {
        const float *x = src + g * group_size;
        __m256 m = _mm256_setzero_ps();
        for (size_t i = 0; i < group_size; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
        float lanes[8];
        _mm256_storeu_ps(lanes, m);
        float max_abs = 0;
        for (int l = 0; l < 8; l++) if (lanes[l] > max_abs) max_abs = lanes[l];
        float s = max_abs == 0 ? 1.0f : max_abs / 127.0f;
        scales[g] = s;
        const __m256 sv = _mm256_set1_ps(s);
        for (size_t i = 0; i < group_size; i += 32) {
            __m256i packed[4];
            for (int j = 0; j < 4; j++) {
                __m256 v = _mm256_loadu_ps(x + i + 8 * j);
                __m256 r = _mm256_round_ps(_mm256_div_ps(v, sv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                r = _mm256_min_ps(_mm256_max_ps(r, lo), hi);
                energy8(v, _mm256_mul_ps(r, sv), &s_lo, &s_hi, &n_lo, &n_hi);
                packed[j] = _mm256_cvtps_epi32(r);
            }
            __m256i ab = _mm256_packs_epi32(packed[0], packed[1]);
            __m256i cd = _mm256_packs_epi32(packed[2], packed[3]);
            __m256i abcd = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), order);
            _mm256_storeu_si256((__m256i *)(q + g * group_size + i), abcd);
        }
    }
    energy_finish(s_lo, s_hi, n_lo, n_hi, energy);
}

AVX2 void error_energy_avx2(size_t n, const float *ref, const float *approx, double energy[2]) {
    __m256d s_lo = _mm256_setzero_pd(), s_hi = s_lo, n_lo = s_lo, n_hi = s_lo;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) energy8(_mm256_loadu_ps(ref + i), _mm256_loadu_ps(approx + i), &s_lo, &s_hi, &n_lo, &n_hi);
    double s[8], nn[8];
    _mm256_storeu_pd(s, s_lo);
    _mm256_storeu_pd(s + 4, s_hi);
    _mm256_storeu_pd(nn, n_lo);
    _mm256_storeu_pd(nn + 4, n_hi);
    energy_lanes_finish(i, n, ref, approx, s, nn, energy);  // the tail continues the same lanes
}

AVX2 void axpy_f32_avx2(size_t n, float a, const float *x, float *y) {
    const __m256 av = _mm256_set1_ps(a);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 y0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i));
        __m256 y1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8));
        __m256 y2 = _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16));
        __m256 y3 = _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24));
        _mm256_storeu_ps(y + i, y0);
        _mm256_storeu_ps(y + i + 8, y1);
        _mm256_storeu_ps(y + i + 16, y2);
        _mm256_storeu_ps(y + i + 24, y3);
    }
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) {
        __m128 r = _mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(x[i]), _mm_set_ss(y[i]));
        y[i] = _mm_cvtss_f32(r);
    }
}

AVX2 void f32_to_f16_avx2(size_t n, const float *src, uint16_t *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(dst + i), h);
    }
    for (; i < n; i++) dst[i] = f32_to_f16_one(src[i]);
}

AVX2 void f16_to_f32_avx2(size_t n, const uint16_t *src, float *dst) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
    }
    for (; i < n; i++) dst[i] = f16_to_f32_one(src[i]);
}

AVX2 void f32_to_bf16_avx2(size_t n, const float *src, uint16_t *dst) {
    size_t i = 0;
    const __m256i bias = _mm256_set1_epi32(0x7FFF);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i absmask = _mm256_set1_epi32(0x7FFFFFFF);
    const __m256i inf = _mm256_set1_epi32(0x7F800000);
    const __m256i quiet = _mm256_set1_epi32(0x00400000);
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_loadu_si256((const __m256i *)(src + i));
        __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
        __m256i rounded = _mm256_add_epi32(u, _mm256_add_epi32(bias, lsb));
        __m256i isnan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absmask), inf);
        __m256i value = _mm256_blendv_epi8(rounded, _mm256_or_si256(u, quiet), isnan);
        __m256i shifted = _mm256_srli_epi32(value, 16);
        __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(shifted), _mm256_extracti128_si256(shifted, 1));
        _mm_storeu_si128((__m128i *)(dst + i), packed);
    }
    for (; i < n; i++) dst[i] = f32_to_bf16_one(src[i]);
}
#endif
