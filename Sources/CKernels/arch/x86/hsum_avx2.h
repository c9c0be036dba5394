// Horizontal sums of int32 lanes in AVX2 registers, for the dot-product GEMM kernels
// (int8_gemm_avx2.c, vnni_kernels.h). The additions wrap, as every integer path's do.
#ifndef DLORAL_HSUM_AVX2_H
#define DLORAL_HSUM_AVX2_H

#if defined(__x86_64__)
#include <immintrin.h>

// Horizontal sums of four 8-lane int32 accumulators, as [Σs0, Σs1, Σs2, Σs3] (wrapping).
__attribute__((target("avx2"))) static inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    __m256i h01 = _mm256_hadd_epi32(s0, s1);  // s0 pairs, s1 pairs | (upper half likewise)
    __m256i h23 = _mm256_hadd_epi32(s2, s3);
    __m256i h = _mm256_hadd_epi32(h01, h23);  // [s0 s1 s2 s3 | s0' s1' s2' s3']
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

__attribute__((target("avx2"))) static inline int32_t hsum1(__m256i s) {
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(x);
}
#endif

#endif
