// The integer layers' row quantizer, epilogues and NCHW → NHWC transpose on AVX2/FMA (levels
// avx2 and up), with the bits of int_layer_scalar.h.
#include "int_layer_scalar.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))
#include "../transpose_avx2.h"


AVX2 void quantize_span_avx2(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i hi = _mm256_set1_epi32(qmax), lo = _mm256_set1_epi32(-qmax);
    size_t i = 0;
    if (bits == 8) {
        // 32 at a time: the saturating packs (int32 → int16 → int8) clamp to [−128, 127], one
        // vpmaxsb makes it [−127, 127] = clamp(·, −qmax, qmax), and vpermd puts the 32 bytes
        // (interleaved by the in-lane packs) back in order for one store.
        const __m256i floor8 = _mm256_set1_epi8(-127), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 32 <= n; i += 32) {
            __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
            __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv));
            __m256i v2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vinv));
            __m256i v3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vinv));
            __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
            p8 = _mm256_max_epi8(_mm256_permutevar8x32_epi32(p8, order), floor8);
            _mm256_storeu_si256((__m256i *)((int8_t *)q + i), p8);
        }
    }
    const size_t nv = n & ~(size_t)7;
    for (; i < nv; i += 8) {
        // cvtps2dq rounds half to even (MXCSR default), as lrintf does.
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        v = _mm256_max_epi32(_mm256_min_epi32(v, hi), lo);
        __m256i p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(v, v), 0x08);  // 8 × int16 in the low half
        if (bits == 8) {
            __m128i p8 = _mm_packs_epi16(_mm256_castsi256_si128(p16), _mm256_castsi256_si128(p16));
            _mm_storel_epi64((__m128i *)((int8_t *)q + i), p8);
        } else {
            _mm_storeu_si128((__m128i *)((int16_t *)q + i), _mm256_castsi256_si128(p16));
        }
    }
    quantize_from(bits, nv, n, n, qmax, inv, x, q);
}

// One whole block of §4.3 (block a multiple of 32, every column real): amax in vector lanes,
// then quantize_span_avx2's element step with 127 / amax: the bits of the row quantizer on the
// block. Returns 0, writing nothing, when the block holds a NaN (the caller then takes the row
// quantizer), else 1 with the block's scale in *scale.
AVX2 int quantize_full_block_avx2(size_t block, const float *x, int8_t *q, float *scale) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, nan = m0;
    for (size_t i = 0; i < block; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(m0, _mm256_andnot_ps(signmask, a));
        m1 = _mm256_max_ps(m1, _mm256_andnot_ps(signmask, b));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return 0;
    const __m256 m = _mm256_max_ps(m0, m1);  // no NaN: the maximum does not depend on the order
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    if (row_is_zero(127, amax)) {
        memset(q, 0, block);
        *scale = 0;
        return 1;
    }
    quantize_span_avx2(8, block, 127, 127.0f / amax, x, q);
    *scale = amax / 127.0f;
    return 1;
}

AVX2 float pixel_amax_avx2(size_t n, const float *x) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    const size_t nv = n & ~(size_t)7;
    for (size_t i = 0; i < nv; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(signmask, v));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float amax = 0;
    for (int t = 0; t < 8; t++) amax = lanes[t] > amax ? lanes[t] : amax;
    const float rest = pixel_amax_scalar(n - nv, x + nv);
    if (rest != rest) return NAN;
    return rest > amax ? rest : amax;
}

AVX2 float quantize_row_avx2_with(void (*span)(int, size_t, int32_t, float, const float *, void *), int bits, size_t k,
                                  size_t kp, int32_t qmax, const float *x, void *q) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    size_t kv = k & ~(size_t)7, i = 0;
    for (; i < kv; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i)));
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float amax = 0;
    for (int t = 0; t < 8; t++) amax = lanes[t] > amax ? lanes[t] : amax;
    amax = absmax_from(x, i, k, amax);
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * (bits == 8 ? 1 : 2));
        return 0;
    }
    float inv = (float)qmax / amax;
    span(bits, k, qmax, inv, x, q);
    quantize_from(bits, k, k, kp, qmax, inv, x, q);  // the zero tail
    return amax / (float)qmax;
}

float quantize_row_avx2(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
    return quantize_row_avx2_with(quantize_span_avx2, bits, k, kp, qmax, x, q);
}

// Blocks of 8 rows × 8 channels: eight loads of acc rows, an 8×8 transpose, then per channel one
// FMA over 8 consecutive output pixels (vcvtdq2ps rounds to nearest even like the C conversion;
// sa·sw is the scalar path's float product).
AVX2 void epilogue_conv_avx2(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                    const float *bias, float *out, size_t plane, size_t p) {
    const size_t r8 = rows & ~(size_t)7, n8 = n & ~(size_t)7;
    for (size_t j = 0; j < n8; j += 8) {
        for (size_t r = 0; r < r8; r += 8) {
            __m256 block[8], col[8];
            for (int t = 0; t < 8; t++) block[t] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(acc + (r + t) * n + j)));
            transpose8(block, col);
            const __m256 vsa = _mm256_loadu_ps(sa + r);
            for (int t = 0; t < 8; t++) {
                const __m256 b = _mm256_set1_ps(bias ? bias[j + t] : 0.0f);
                const __m256 scale = _mm256_mul_ps(vsa, _mm256_set1_ps(sw[j + t]));
                const __m256 v = _mm256_cvtepi32_ps(_mm256_castps_si256(col[t]));
                _mm256_storeu_ps(out + (j + t) * plane + p + r, _mm256_fmadd_ps(v, scale, b));
            }
        }
        for (size_t t = j; t < j + 8; t++) {  // the last rows mod 8
            float b = bias ? bias[t] : 0.0f, s = sw[t];
            float *o = out + t * plane + p;
            for (size_t r = r8; r < rows; r++) o[r] = __builtin_fmaf((float)acc[r * n + t], sa[r] * s, b);
        }
    }
    for (size_t j = n8; j < n; j++) {  // the last channels mod 8
        float b = bias ? bias[j] : 0.0f, s = sw[j];
        float *o = out + j * plane + p;
        for (size_t r = 0; r < rows; r++) o[r] = __builtin_fmaf((float)acc[r * n + j], sa[r] * s, b);
    }
}

AVX2 void epilogue_linear_avx2(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                      const float *bias, float *y, size_t ldy) {
    const __m256 zero = _mm256_setzero_ps();
    for (size_t r = 0; r < rows; r++) {
        float *o = y + r * ldy;
        const int32_t *a = acc + r * n;
        const __m256 vs = _mm256_set1_ps(sa[r]);
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 scale = _mm256_mul_ps(vs, _mm256_loadu_ps(sw + j));
            __m256 b = bias ? _mm256_loadu_ps(bias + j) : zero;
            __m256 v = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(a + j)));
            _mm256_storeu_ps(o + j, _mm256_fmadd_ps(v, scale, b));
        }
        for (; j < n; j++) o[j] = __builtin_fmaf((float)a[j], sa[r] * sw[j], bias ? bias[j] : 0.0f);
    }
}

// 16 pixels at a time (a whole cache line of each channel), 8 channels per 8×8 transpose.
AVX2 void chw_to_hwc_avx2(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end) {
    const size_t c8 = c & ~(size_t)7;
    size_t p = first;
    for (; p + 16 <= end; p += 16) {
        for (size_t c0 = 0; c0 < c8; c0 += 8)
            for (size_t half = 0; half < 16; half += 8) {
                __m256 rows[8], cols[8];
                for (int t = 0; t < 8; t++) rows[t] = _mm256_loadu_ps(src + (c0 + t) * hw + p + half);
                transpose8(rows, cols);
                for (int t = 0; t < 8; t++) _mm256_storeu_ps(dst + (p + half + t) * c + c0, cols[t]);
            }
        for (size_t q = p; q < p + 16; q++)  // the last channels mod 8
            for (size_t ch = c8; ch < c; ch++) dst[q * c + ch] = src[ch * hw + q];
    }
    chw_to_hwc_scalar(c, hw, src, dst, p, end);
}
#endif
