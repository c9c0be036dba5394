// The integer GEMM kernels on AVX2 (vpmaddubsw / vpmaddwd; levels avx2 and up).
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))
#include "../hsum_avx2.h"
#include "../transpose_avx2.h"

// 32 products of one activation block (already split into |a| and a) with one weight block,
// summed to 8 int32 lanes. vpmaddubsw multiplies unsigned |a| by sign(a)·w and adds adjacent
// pairs with int16 saturation: with a, w in [−127, 127] a pair is at most 2·127·127 = 32258,
// so it never saturates. (w = −128 would be wrong: _mm256_sign_epi8 cannot negate it.)
AVX2 static inline __m256i dot32_i8(__m256i abs_a, __m256i a, __m256i wv, __m256i ones16) {
    __m256i p16 = _mm256_maddubs_epi16(abs_a, _mm256_sign_epi8(wv, a));
    return _mm256_madd_epi16(p16, ones16);
}

// One 32-column step of a 1 × 4 tile: activation bytes a[0 … 32) against weight rows w, w + kp,
// w + 2kp, w + 3kp at the same columns, added to s[0 … 4).
AVX2 static inline void dot32_1x4(const int8_t *a, const int8_t *w, size_t kp, __m256i ones16, __m256i s[4]) {
    const __m256i av = _mm256_loadu_si256((const __m256i *)a), aa = _mm256_abs_epi8(av);
    for (int t = 0; t < 4; t++)
        s[t] = _mm256_add_epi32(s[t], dot32_i8(aa, av, _mm256_loadu_si256((const __m256i *)(w + t * kp)), ones16));
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
            __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
            for (size_t k = 0; k < kv; k += 32) dot32_1x4(ai + k, w0 + k, kp, ones16, s);
            uint32_t r[4];
            _mm_storeu_si128((__m128i *)r, hsum4(s[0], s[1], s[2], s[3]));
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

// gemm_i8i8_blocks_scalar four weight rows at a time: per activation row and block, the four
// blocks' dot products (dot32_i8), summed across lanes (hsum4: exact), converted, and fused into
// four float accumulators with the scalar path's products sa·sw. Four weight rows (4·kp bytes)
// stay in L1 while the activation rows pass; their scales are gathered per block once.
AVX2 void gemm_i8i8_blocks_avx2(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs) {
    const __m256i ones16 = _mm256_set1_epi16(1);
    const size_t nb = kp / block;
    float *sw4 = aligned_alloc(16, (nb * 4 * sizeof(float) + 15) / 16 * 16 + 16);
    size_t j = 0;
    if (sw4 && block % 32 == 0) {
        for (; j + 4 <= n; j += 4) {
            const int8_t *w0 = w + j * kp;
            for (size_t b = 0; b < nb; b++)
                for (size_t t = 0; t < 4; t++) sw4[b * 4 + t] = sw[(j + t) * nb + b];
            const __m128 b0 = bias ? _mm_loadu_ps(bias + j) : _mm_setzero_ps();
            for (size_t i = 0; i < m; i++) {
                const int8_t *ai = a + i * kp;
                const float *sai = sa + i * nb;
                __m128 acc = b0;
                for (size_t b = 0; b < nb; b++) {
                    __m256i s[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
                    for (size_t k = b * block; k < (b + 1) * block; k += 32) dot32_1x4(ai + k, w0 + k, kp, ones16, s);
                    __m128 scale = _mm_mul_ps(_mm_set1_ps(sai[b]), _mm_load_ps(sw4 + b * 4));
                    acc = _mm_fmadd_ps(_mm_cvtepi32_ps(hsum4(s[0], s[1], s[2], s[3])), scale, acc);
                }
                if (cs == 1) {
                    _mm_storeu_ps(y + i * rs + j, acc);
                } else {
                    float out[4];
                    _mm_storeu_ps(out, acc);
                    for (size_t t = 0; t < 4; t++) y[i * rs + (j + t) * cs] = out[t];
                }
            }
        }
    }
    free(sw4);
    if (j < n)  // the last n mod 4 weight rows (or all of them without scratch)
        gemm_i8i8_blocks_scalar(m, n - j, kp, block, a, sa, w + j * kp, sw + j * nb, bias ? bias + j : NULL,
                                y + j * cs, rs, cs);
}

// gemm_i8i8_blocks_scalar with the outputs in lanes, below level amx: the weights as int16 panels
// of 8 weight rows (pack_block_panels: for each pair of columns k, the 8 rows' two weights), the
// activations widened to int16, and per pair of columns one broadcast of each activation row's two
// values into vpmaddwd against two panels. 4 activation rows × 16 weight rows per tile: eight int32
// block sums (exact: |Σ| ≤ 64·127² per block) in registers, converted and fused into eight float
// accumulators at each block's end, in the scalar path's order. No horizontal sums: twice the
// dot-product kernel's rate at the SD shapes.
size_t block_panels_bytes(size_t n, size_t kp) { return ((n + 7) / 8) * 8 * ((kp + 1) / 2 * 2) * 2 + 64; }

AVX2 void pack_block_panels(size_t n, size_t kp, const int8_t *w, int16_t *wp, size_t p0, size_t p1) {
    const size_t half = (kp + 1) / 2, panels = (n + 7) / 8;
    if (p1 > panels) p1 = panels;
    for (size_t p = p0; p < p1; p++) {
        int16_t *dst = wp + p * half * 16;
        const size_t rows = n - p * 8 < 8 ? n - p * 8 : 8;
        size_t kk = 0;
        if (rows == 8)
            for (; 2 * kk + 16 <= kp; kk += 8) {  // 16 columns of 8 rows: eight pairs per row, transposed
                __m256 r[8], t[8];
                for (int q = 0; q < 8; q++)
                    r[q] = _mm256_castsi256_ps(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + (p * 8 + q) * kp + 2 * kk))));
                transpose8(r, t);
                for (int q = 0; q < 8; q++) _mm256_storeu_ps((float *)(dst + (kk + q) * 16), t[q]);
            }
        for (; kk < half; kk++)
            for (size_t c = 0; c < 8; c++) {
                int16_t *d = dst + kk * 16 + c * 2;
                d[0] = c < rows ? w[(p * 8 + c) * kp + 2 * kk] : 0;
                d[1] = c < rows && 2 * kk + 1 < kp ? w[(p * 8 + c) * kp + 2 * kk + 1] : 0;
            }
    }
}

AVX2 void gemm_i8i8_blocks_avx2_panels(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                       const int8_t *w, const int16_t *wp, const float *sw, const float *bias,
                                       float *y, size_t rs, size_t cs) {
    const size_t nb = kp / block, half = (kp + 1) / 2, m4 = m & ~(size_t)3;
    int16_t *a16 = m4 ? aligned_alloc(32, (m4 * half * 2 * 2 + 31) / 32 * 32 + 32) : NULL;
    float *swt = aligned_alloc(32, (nb * 16 * sizeof(float) + 31) / 32 * 32 + 32);
    if ((m4 && !a16) || !swt || block % 2 || kp % 2) {  // no scratch: the dot-product kernel, same bits
        free(a16), free(swt);
        gemm_i8i8_blocks_avx2(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
        return;
    }
    for (size_t i = 0; i < m4 * kp; i += 16) {
        if (i + 16 <= m4 * kp)
            _mm256_store_si256((__m256i *)(a16 + i), _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i))));
        else
            for (size_t t = i; t < m4 * kp; t++) a16[t] = a[t];
    }
    for (size_t p0 = 0; p0 * 8 < n; p0 += 2) {
        const size_t j0 = p0 * 8, cols = n - j0 < 16 ? n - j0 : 16;
        for (size_t b = 0; b < nb; b++)
            for (size_t c = 0; c < 16; c++) swt[b * 16 + c] = c < cols ? sw[(j0 + c) * nb + b] : 0.0f;
        float bv[16];
        for (size_t c = 0; c < 16; c++) bv[c] = bias && c < cols ? bias[j0 + c] : 0.0f;
        const int16_t *w0 = wp + p0 * half * 16, *w1 = cols > 8 ? w0 + half * 16 : w0;
        for (size_t i = 0; i < m4; i += 4) {
            const int32_t *ar[4];
            for (int r = 0; r < 4; r++) ar[r] = (const int32_t *)(a16 + (i + r) * kp);
            __m256 f00 = _mm256_loadu_ps(bv), f01 = _mm256_loadu_ps(bv + 8);
            __m256 f10 = f00, f11 = f01, f20 = f00, f21 = f01, f30 = f00, f31 = f01;
            for (size_t b = 0; b < nb; b++) {
                __m256i s00 = _mm256_setzero_si256(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00,
                        s31 = s00;
                for (size_t kk = b * block / 2; kk < (b + 1) * block / 2; kk++) {
                    const __m256i v0 = _mm256_loadu_si256((const __m256i *)(w0 + kk * 16));
                    const __m256i v1 = _mm256_loadu_si256((const __m256i *)(w1 + kk * 16));
                    __m256i x = _mm256_set1_epi32(ar[0][kk]);
                    s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(x, v0));
                    s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(x, v1));
                    x = _mm256_set1_epi32(ar[1][kk]);
                    s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(x, v0));
                    s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(x, v1));
                    x = _mm256_set1_epi32(ar[2][kk]);
                    s20 = _mm256_add_epi32(s20, _mm256_madd_epi16(x, v0));
                    s21 = _mm256_add_epi32(s21, _mm256_madd_epi16(x, v1));
                    x = _mm256_set1_epi32(ar[3][kk]);
                    s30 = _mm256_add_epi32(s30, _mm256_madd_epi16(x, v0));
                    s31 = _mm256_add_epi32(s31, _mm256_madd_epi16(x, v1));
                }
                // acc = fma((float)Σ, sw·sa, acc): the scalar path's product (commuted) and fma.
                const __m256 c0 = _mm256_load_ps(swt + b * 16), c1 = _mm256_load_ps(swt + b * 16 + 8);
                __m256 sv = _mm256_set1_ps(sa[(i + 0) * nb + b]);
                f00 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s00), _mm256_mul_ps(c0, sv), f00);
                f01 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s01), _mm256_mul_ps(c1, sv), f01);
                sv = _mm256_set1_ps(sa[(i + 1) * nb + b]);
                f10 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s10), _mm256_mul_ps(c0, sv), f10);
                f11 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s11), _mm256_mul_ps(c1, sv), f11);
                sv = _mm256_set1_ps(sa[(i + 2) * nb + b]);
                f20 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s20), _mm256_mul_ps(c0, sv), f20);
                f21 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s21), _mm256_mul_ps(c1, sv), f21);
                sv = _mm256_set1_ps(sa[(i + 3) * nb + b]);
                f30 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s30), _mm256_mul_ps(c0, sv), f30);
                f31 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s31), _mm256_mul_ps(c1, sv), f31);
            }
            float out[4][16];
            _mm256_storeu_ps(out[0], f00), _mm256_storeu_ps(out[0] + 8, f01);
            _mm256_storeu_ps(out[1], f10), _mm256_storeu_ps(out[1] + 8, f11);
            _mm256_storeu_ps(out[2], f20), _mm256_storeu_ps(out[2] + 8, f21);
            _mm256_storeu_ps(out[3], f30), _mm256_storeu_ps(out[3] + 8, f31);
            for (size_t r = 0; r < 4; r++)
                for (size_t c = 0; c < cols; c++) y[(i + r) * rs + (j0 + c) * cs] = out[r][c];
        }
    }
    free(a16), free(swt);
    if (m4 < m)  // the last m mod 4 rows
        gemm_i8i8_blocks_avx2(m - m4, n, kp, block, a + m4 * kp, sa + m4 * nb, w, sw, bias, y + m4 * rs, rs, cs);
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


void pack_block_panels_i8(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t p0, size_t p1) {
    pack_block_panels(n, kp, w, (int16_t *)wp, p0, p1);
}

void gemm_i8i8_blocks_avx2_packed(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                  const int8_t *w, const int8_t *wp, const float *sw, const float *bias, float *y,
                                  size_t rs, size_t cs) {
    gemm_i8i8_blocks_avx2_panels(m, n, kp, block, a, sa, w, (const int16_t *)wp, sw, bias, y, rs, cs);
}
#endif
