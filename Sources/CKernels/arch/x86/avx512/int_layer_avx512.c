// The integer layers' quantizer step on 512-bit vectors (levels avx512 and up).
#include "int_layer_scalar.h"
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))

// quantize_span_avx2 on 16 lanes at the avx512 level: the same product and rounding
// (vcvtps2dq, half to even), then the clamp to [−qmax, qmax] in int32 before a narrowing that
// cannot saturate — the values the AVX2 packs and vpmaxsb give (a NaN or overflow converts to
// INT32_MIN in both, then −qmax). The tail is the AVX2 code's.
AVX512 void quantize_span_avx512(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i hi = _mm512_set1_epi32(qmax), lo = _mm512_set1_epi32(-qmax);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
        v = _mm512_max_epi32(_mm512_min_epi32(v, hi), lo);
        if (bits == 8) _mm_storeu_si128((__m128i *)((int8_t *)q + i), _mm512_cvtepi32_epi8(v));
        else _mm256_storeu_si256((__m256i *)((int16_t *)q + i), _mm512_cvtepi32_epi16(v));
    }
    if (i < n) quantize_span_avx2(bits, n - i, qmax, inv, x + i, bits == 8 ? (void *)((int8_t *)q + i) : (void *)((int16_t *)q + i));
}


// The AVX2 row quantizer with this element step.
float quantize_row_avx512(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
    return quantize_row_avx2_with(quantize_span_avx512, bits, k, kp, qmax, x, q);
}
#endif
