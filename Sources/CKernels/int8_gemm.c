// Integer GEMM kernels: int8 × int8 → int32 and int16 × int8 → int32, both against int8 weight
// rows [n][kp] (Formats/dlrt.md §4), c[i][j] = Σ_k a[i][k]·w[j][k].
//
// Every path accumulates in 32-bit two's-complement arithmetic that wraps (unsigned in C, vpaddd
// in AVX2), and integer addition is associative mod 2^32, so all paths give the same bits for any
// input — and the exact sum whenever it fits int32 (the bounds are in dloral_kernels.h).
//
// The scalar functions are the exact reference; the AVX2 ones are compiled per function for
// avx2 and used only when dispatch.c picks that path. kp is a multiple of 32 by contract; any
// other kp still works (the vector loops finish the row with scalar code).
#include "kernels_internal.h"

// MARK: - Scalar reference

void gemm_i8i8_i32_scalar(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    for (size_t i = 0; i < m; i++) {
        const int8_t *ai = a + i * kp;
        for (size_t j = 0; j < n; j++) {
            const int8_t *wj = w + j * kp;
            uint32_t s = 0;
            for (size_t k = 0; k < kp; k++) s += (uint32_t)((int32_t)ai[k] * (int32_t)wj[k]);
            c[i * n + j] = (int32_t)s;
        }
    }
}

void gemm_i16i8_i32_scalar(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    for (size_t i = 0; i < m; i++) {
        const int16_t *ai = a + i * kp;
        for (size_t j = 0; j < n; j++) {
            const int8_t *wj = w + j * kp;
            uint32_t s = 0;
            for (size_t k = 0; k < kp; k++) s += (uint32_t)((int32_t)ai[k] * (int32_t)wj[k]);
            c[i * n + j] = (int32_t)s;
        }
    }
}

// MARK: - AVX2

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

// Horizontal sums of four 8-lane int32 accumulators, as [Σs0, Σs1, Σs2, Σs3] (wrapping).
AVX2 static inline __m128i hsum4(__m256i s0, __m256i s1, __m256i s2, __m256i s3) {
    __m256i h01 = _mm256_hadd_epi32(s0, s1);  // s0 pairs, s1 pairs | (upper half likewise)
    __m256i h23 = _mm256_hadd_epi32(s2, s3);
    __m256i h = _mm256_hadd_epi32(h01, h23);  // [s0 s1 s2 s3 | s0' s1' s2' s3']
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

AVX2 static inline int32_t hsum1(__m256i s) {
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(1, 0, 3, 2)));
    x = _mm_add_epi32(x, _mm_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(x);
}

// 32 products of one activation block (already split into |a| and a) with one weight block,
// summed to 8 int32 lanes. vpmaddubsw multiplies unsigned |a| by sign(a)·w and adds adjacent
// pairs with int16 saturation: with a, w in [−127, 127] a pair is at most 2·127·127 = 32258,
// so it never saturates. (w = −128 would be wrong: _mm256_sign_epi8 cannot negate it.)
AVX2 static inline __m256i dot32_i8(__m256i abs_a, __m256i a, __m256i wv, __m256i ones16) {
    __m256i p16 = _mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(wv, a));
    return _mm256_madd_epi16(p16, ones16);
}

AVX2 void gemm_i8i8_i32_avx2(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    const size_t kv = kp & ~(size_t)31;
    size_t j = 0;
    // 1×4 tiles: four weight rows (4·kp bytes, stays in L1 for kp up to several thousand)
    // against every activation row in turn.
    for (; j + 4 <= n; j += 4) {
        const int8_t *w0 = w + j * kp, *w1 = w0 + kp, *w2 = w1 + kp, *w3 = w2 + kp;
        for (size_t i = 0; i < m; i++) {
            const int8_t *ai = a + i * kp;
            __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
            for (size_t k = 0; k < kv; k += 32) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(ai + k));
                __m256i aa = _mm256_abs_epi8(av);
                s0 = _mm256_add_epi32(s0, dot32_i8(aa, av, _mm256_loadu_si256((const __m256i *)(w0 + k)), ones16));
                s1 = _mm256_add_epi32(s1, dot32_i8(aa, av, _mm256_loadu_si256((const __m256i *)(w1 + k)), ones16));
                s2 = _mm256_add_epi32(s2, dot32_i8(aa, av, _mm256_loadu_si256((const __m256i *)(w2 + k)), ones16));
                s3 = _mm256_add_epi32(s3, dot32_i8(aa, av, _mm256_loadu_si256((const __m256i *)(w3 + k)), ones16));
            }
            uint32_t r[4];
            _mm_storeu_si128((__m128i *)r, hsum4(s0, s1, s2, s3));
            for (size_t k = kv; k < kp; k++) {
                int32_t x = ai[k];
                r[0] += (uint32_t)(x * w0[k]);
                r[1] += (uint32_t)(x * w1[k]);
                r[2] += (uint32_t)(x * w2[k]);
                r[3] += (uint32_t)(x * w3[k]);
            }
            int32_t *ci = c + i * n + j;
            for (int t = 0; t < 4; t++) ci[t] = (int32_t)r[t];
        }
    }
    for (; j < n; j++) {  // the last n mod 4 rows
        const int8_t *wj = w + j * kp;
        for (size_t i = 0; i < m; i++) {
            const int8_t *ai = a + i * kp;
            __m256i s = _mm256_setzero_si256();
            for (size_t k = 0; k < kv; k += 32) {
                __m256i av = _mm256_loadu_si256((const __m256i *)(ai + k));
                s = _mm256_add_epi32(s, dot32_i8(_mm256_abs_epi8(av), av, _mm256_loadu_si256((const __m256i *)(wj + k)), ones16));
            }
            uint32_t r = (uint32_t)hsum1(s);
            for (size_t k = kv; k < kp; k++) r += (uint32_t)((int32_t)ai[k] * wj[k]);
            c[i * n + j] = (int32_t)r;
        }
    }
}

// 16 products of int16 activations with 16 int8 weights (sign-extended), summed to 8 int32
// lanes by vpmaddwd. A pair is at most 2·32768·128 < 2^24: exact; the sums wrap only past int32.
AVX2 static inline __m256i dot16_i16(__m256i av, const int8_t *wk) {
    __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)wk));
    return _mm256_madd_epi16(av, wv);
}

// Four activation rows × two weight rows per tile: each 16-column step widens the two weight
// slices once (vpmovsxbw) and uses each for four vpmaddwd, so the shuffle port is not the limit;
// the eight accumulators, two weights and one activation fit the 16 ymm registers.
AVX2 static inline void i16_tile_4x2(size_t kp, size_t kv, const int16_t *a0, size_t lda, const int8_t *w0,
                                     const int8_t *w1, int32_t *c, size_t ldc) {
    const int16_t *a1 = a0 + lda, *a2 = a1 + lda, *a3 = a2 + lda;
    __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    for (size_t k = 0; k < kv; k += 16) {
        __m256i v0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w0 + k)));
        __m256i v1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w1 + k)));
        __m256i x = _mm256_loadu_si256((const __m256i *)(a0 + k));
        s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(x, v0));
        s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(x, v1));
        x = _mm256_loadu_si256((const __m256i *)(a1 + k));
        s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(x, v0));
        s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(x, v1));
        x = _mm256_loadu_si256((const __m256i *)(a2 + k));
        s20 = _mm256_add_epi32(s20, _mm256_madd_epi16(x, v0));
        s21 = _mm256_add_epi32(s21, _mm256_madd_epi16(x, v1));
        x = _mm256_loadu_si256((const __m256i *)(a3 + k));
        s30 = _mm256_add_epi32(s30, _mm256_madd_epi16(x, v0));
        s31 = _mm256_add_epi32(s31, _mm256_madd_epi16(x, v1));
    }
    uint32_t r0[4], r1[4];  // column 0 and column 1 of rows 0..3
    _mm_storeu_si128((__m128i *)r0, hsum4(s00, s10, s20, s30));
    _mm_storeu_si128((__m128i *)r1, hsum4(s01, s11, s21, s31));
    const int16_t *rows[4] = {a0, a1, a2, a3};
    for (int r = 0; r < 4; r++) {
        for (size_t k = kv; k < kp; k++) {
            int32_t x = rows[r][k];
            r0[r] += (uint32_t)(x * w0[k]);
            r1[r] += (uint32_t)(x * w1[k]);
        }
        c[r * ldc] = (int32_t)r0[r];
        c[r * ldc + 1] = (int32_t)r1[r];
    }
}

// One activation row × one weight row (the edges of the 4×2 tiling).
AVX2 static inline int32_t i16_dot(size_t kp, size_t kv, const int16_t *ai, const int8_t *wj) {
    __m256i s = _mm256_setzero_si256();
    for (size_t k = 0; k < kv; k += 16)
        s = _mm256_add_epi32(s, dot16_i16(_mm256_loadu_si256((const __m256i *)(ai + k)), wj + k));
    uint32_t r = (uint32_t)hsum1(s);
    for (size_t k = kv; k < kp; k++) r += (uint32_t)((int32_t)ai[k] * wj[k]);
    return (int32_t)r;
}

AVX2 void gemm_i16i8_i32_avx2(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    const size_t kv = kp & ~(size_t)15;
    const size_t m4 = m & ~(size_t)3;
    size_t j = 0;
    for (; j + 2 <= n; j += 2) {
        const int8_t *w0 = w + j * kp, *w1 = w0 + kp;
        for (size_t i = 0; i < m4; i += 4) i16_tile_4x2(kp, kv, a + i * kp, kp, w0, w1, c + i * n + j, n);
        for (size_t i = m4; i < m; i++) {
            c[i * n + j] = i16_dot(kp, kv, a + i * kp, w0);
            c[i * n + j + 1] = i16_dot(kp, kv, a + i * kp, w1);
        }
    }
    for (; j < n; j++)
        for (size_t i = 0; i < m; i++) c[i * n + j] = i16_dot(kp, kv, a + i * kp, w + j * kp);
}
#endif
