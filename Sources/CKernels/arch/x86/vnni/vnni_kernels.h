// The VNNI integer GEMM kernels (levels avxvnni and up), written once and compiled twice: by
// vnni_vex.c for AVX-VNNI (VEX: Alder Lake and later, Sapphire Rapids; Zen 5) and by vnni_evex.c
// for AVX512-VNNI with AVX512VL (EVEX: Cascade Lake, Ice Lake, Sapphire Rapids, Zen 4 and 5).
// The two encodings are the same instructions on ymm registers with the same results, but a CPU
// may have either alone, and a binary holding one faults on a CPU without it; the kernel tables
// (backend/kernel_table.c) pick the one the CPU and level have. The including file defines
//   VNNI      the target attribute of every function here,
//   DPBUSD    the 256-bit vpdpbusd intrinsic of its encoding, DPWSSD likewise vpdpwssd,
//   VNNI_FN   the exported name of each entry point (kernels_internal.h declares them).
//
// vpdpbusd multiplies 4 unsigned bytes by 4 signed bytes and adds the four exact products to an
// int32 lane; vpdpwssd does the same for 2 pairs of int16. Neither saturates (the int32 lane
// wraps), so the sums are those of the scalar path mod 2^32.
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "../hsum_avx2.h"
#include "kernels_internal.h"
#include "../transpose_avx2.h"

// MARK: The dot-product kernels
//
// vpdpbusd wants one operand unsigned: the kernel multiplies a + 128 (a xor 0x80, in [0, 255]
// for any int8 a) by w and subtracts 128·Σw per weight row, which is exact for every int8 input,
// −128 included. Tiles of 4 activation rows × 3 weight rows: 12 accumulators, 3 weight vectors
// and 1 activation vector are the 16 ymm registers; per 32 bytes of k, 7 loads feed 12 dot
// products.

// Σ_{c < k} w[t][c] (mod 2^32) for nr ≤ 3 weight rows at once, by vpdpbusd against bytes of 1:
// six independent chains, so the sums are not held up by the dot product's latency (with one
// chain they were a sixth of a small-m call); the last k mod 32 columns are added in order. The
// dot-product int8 kernel's 128·Σw uses it.
VNNI static void weight_row_sums(size_t nr, size_t k, const int8_t *const *w, uint32_t *sums) {
    const __m256i ones = _mm256_set1_epi8(1);
    const size_t kv = k & ~(size_t)31;
    __m256i s[3][2];
    for (size_t t = 0; t < 3; t++) s[t][0] = s[t][1] = _mm256_setzero_si256();
    size_t c = 0;
    for (; c + 64 <= kv; c += 64)
        for (size_t t = 0; t < nr; t++) {
            s[t][0] = DPBUSD(s[t][0], ones, _mm256_loadu_si256((const __m256i *)(w[t] + c)));
            s[t][1] = DPBUSD(s[t][1], ones, _mm256_loadu_si256((const __m256i *)(w[t] + c + 32)));
        }
    for (; c < kv; c += 32)
        for (size_t t = 0; t < nr; t++)
            s[t][0] = DPBUSD(s[t][0], ones, _mm256_loadu_si256((const __m256i *)(w[t] + c)));
    for (size_t t = 0; t < nr; t++) {
        uint32_t sum = (uint32_t)hsum1(_mm256_add_epi32(s[t][0], s[t][1]));
        for (size_t q = kv; q < k; q++) sum += (uint32_t)(int32_t)w[t][q];
        sums[t] = sum;
    }
}

// MR × NR tile (MR ≤ 4, NR ≤ 3) of c = Σ_k a·w over k < kv from the offset activations au
// (a xor 0x80, rows of lda bytes), then the scalar tail k ∈ [kv, kp) from a itself.
VNNI static inline __attribute__((always_inline)) void vnni_i8_tile(
    int MR, int NR, size_t kp, size_t kv, const uint8_t *au, const int8_t *a, const int8_t *const *wr,
    const uint32_t *wsum, int32_t *c, size_t ldc) {
    __m256i s[4][3];
    for (int r = 0; r < MR; r++)
        for (int t = 0; t < NR; t++) s[r][t] = _mm256_setzero_si256();
    for (size_t k = 0; k < kv; k += 32) {
        __m256i wv[3];
        for (int t = 0; t < NR; t++) wv[t] = _mm256_loadu_si256((const __m256i *)(wr[t] + k));
        for (int r = 0; r < MR; r++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(au + r * kp + k));
            for (int t = 0; t < NR; t++) s[r][t] = DPBUSD(s[r][t], x, wv[t]);
        }
    }
    for (int t = 0; t < NR; t++) {
        uint32_t sums[4];
        _mm_storeu_si128((__m128i *)sums, hsum4(s[0][t], MR > 1 ? s[1][t] : s[0][t], MR > 2 ? s[2][t] : s[0][t],
                                               MR > 3 ? s[3][t] : s[0][t]));
        for (int r = 0; r < MR; r++) {
            uint32_t v = sums[r] - 128u * wsum[t];
            const int8_t *ar = a + r * kp;
            for (size_t k = kv; k < kp; k++) v += (uint32_t)((int32_t)ar[k] * (int32_t)wr[t][k]);
            c[r * ldc + t] = (int32_t)v;
        }
    }
}

// The tile sizes as constants, so each call below compiles to its own register-blocked loop.
#define VNNI_I8_TILES(MR)                                                                                    \
    VNNI static void vnni_i8_##MR##x3(size_t kp, size_t kv, const uint8_t *au, const int8_t *a,             \
                                      const int8_t *const *wr, const uint32_t *ws, int32_t *c, size_t ldc) { \
        vnni_i8_tile(MR, 3, kp, kv, au, a, wr, ws, c, ldc);                                                  \
    }                                                                                                        \
    VNNI static void vnni_i8_##MR##x1(size_t kp, size_t kv, const uint8_t *au, const int8_t *a,             \
                                      const int8_t *const *wr, const uint32_t *ws, int32_t *c, size_t ldc) { \
        vnni_i8_tile(MR, 1, kp, kv, au, a, wr, ws, c, ldc);                                                  \
    }
VNNI_I8_TILES(4)
VNNI_I8_TILES(3)
VNNI_I8_TILES(2)
VNNI_I8_TILES(1)

typedef void (*vnni_i8_tile_fn)(size_t, size_t, const uint8_t *, const int8_t *, const int8_t *const *,
                                const uint32_t *, int32_t *, size_t);

VNNI void VNNI_FN(gemm_i8i8_i32)(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    if (m == 0 || n == 0) return;
    const size_t kv = kp & ~(size_t)31;
    // The offset activations, once per call (m·kp bytes against m·n·kp products).
    uint8_t *au = aligned_alloc(64, (m * kp + 32 + 63) / 64 * 64);  // rows 32-byte aligned, as a is
    if (!au) {  // no memory for the copy: the AVX2 kernel gives the same bits
        gemm_i8i8_i32_avx2(m, n, kp, a, w, c);
        return;
    }
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (size_t i = 0; i < m * kp; i += 32) {
        if (i + 32 <= m * kp)
            _mm256_storeu_si256((__m256i *)(au + i), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i)), flip));
        else
            for (size_t t = i; t < m * kp; t++) au[t] = (uint8_t)a[t] ^ 0x80u;
    }
    static const vnni_i8_tile_fn by3[5] = {NULL, vnni_i8_1x3, vnni_i8_2x3, vnni_i8_3x3, vnni_i8_4x3};
    static const vnni_i8_tile_fn by1[5] = {NULL, vnni_i8_1x1, vnni_i8_2x1, vnni_i8_3x1, vnni_i8_4x1};
    for (size_t j = 0; j < n;) {
        const size_t nr = n - j >= 3 ? 3 : 1;
        const int8_t *wr[3] = {w + j * kp, w + (j + (nr > 1 ? 1 : 0)) * kp, w + (j + (nr > 1 ? 2 : 0)) * kp};
        uint32_t wsum[3];
        weight_row_sums(nr, kv, wr, wsum);
        const vnni_i8_tile_fn *tiles = nr == 3 ? by3 : by1;
        for (size_t i = 0; i < m; i += 4) {
            const size_t mr = m - i >= 4 ? 4 : m - i;
            tiles[mr](kp, kv, au + i * kp, a + i * kp, wr, wsum, c + i * n + j, n);
        }
        j += nr;
    }
    free(au);
}

// int16 × int8: the same tiles with vpdpwssd on weights widened in the loop (vpmovsxbw, a
// shuffle-port µop beside the dot products).
VNNI static inline __attribute__((always_inline)) void vnni_i16_tile(
    int MR, int NR, size_t kp, size_t kv, const int16_t *a, const int8_t *const *wr, int32_t *c, size_t ldc) {
    __m256i s[4][3];
    for (int r = 0; r < MR; r++)
        for (int t = 0; t < NR; t++) s[r][t] = _mm256_setzero_si256();
    for (size_t k = 0; k < kv; k += 16) {
        __m256i wv[3];
        for (int t = 0; t < NR; t++) wv[t] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr[t] + k)));
        for (int r = 0; r < MR; r++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(a + r * kp + k));
            for (int t = 0; t < NR; t++) s[r][t] = DPWSSD(s[r][t], x, wv[t]);
        }
    }
    for (int t = 0; t < NR; t++) {
        uint32_t sums[4];
        _mm_storeu_si128((__m128i *)sums, hsum4(s[0][t], MR > 1 ? s[1][t] : s[0][t], MR > 2 ? s[2][t] : s[0][t],
                                               MR > 3 ? s[3][t] : s[0][t]));
        for (int r = 0; r < MR; r++) {
            uint32_t v = sums[r];
            const int16_t *ar = a + r * kp;
            for (size_t k = kv; k < kp; k++) v += (uint32_t)((int32_t)ar[k] * (int32_t)wr[t][k]);
            c[r * ldc + t] = (int32_t)v;
        }
    }
}

#define VNNI_I16_TILES(MR)                                                                                       \
    VNNI static void vnni_i16_##MR##x3(size_t kp, size_t kv, const int16_t *a, const int8_t *const *wr, int32_t *c, \
                                       size_t ldc) {                                                             \
        vnni_i16_tile(MR, 3, kp, kv, a, wr, c, ldc);                                                             \
    }                                                                                                            \
    VNNI static void vnni_i16_##MR##x1(size_t kp, size_t kv, const int16_t *a, const int8_t *const *wr, int32_t *c, \
                                       size_t ldc) {                                                             \
        vnni_i16_tile(MR, 1, kp, kv, a, wr, c, ldc);                                                             \
    }
VNNI_I16_TILES(4)
VNNI_I16_TILES(3)
VNNI_I16_TILES(2)
VNNI_I16_TILES(1)

typedef void (*vnni_i16_tile_fn)(size_t, size_t, const int16_t *, const int8_t *const *, int32_t *, size_t);

VNNI void VNNI_FN(gemm_i16i8_i32)(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    const size_t kv = kp & ~(size_t)15;
    static const vnni_i16_tile_fn by3[5] = {NULL, vnni_i16_1x3, vnni_i16_2x3, vnni_i16_3x3, vnni_i16_4x3};
    static const vnni_i16_tile_fn by1[5] = {NULL, vnni_i16_1x1, vnni_i16_2x1, vnni_i16_3x1, vnni_i16_4x1};
    for (size_t j = 0; j < n;) {
        const size_t nr = n - j >= 3 ? 3 : 1;
        const int8_t *wr[3] = {w + j * kp, w + (j + (nr > 1 ? 1 : 0)) * kp, w + (j + (nr > 1 ? 2 : 0)) * kp};
        const vnni_i16_tile_fn *tiles = nr == 3 ? by3 : by1;
        for (size_t i = 0; i < m; i += 4) {
            const size_t mr = m - i >= 4 ? 4 : m - i;
            tiles[mr](kp, kv, a + i * kp, wr, c + i * n + j, n);
        }
        j += nr;
    }
}
// MARK: AVX-VNNI with the outputs in lanes (weights prepared once per layer call)
//
// The weights as panels of 8 rows (pack_vnni_panels): for each group of 4 columns q, the 8 rows'
// 4 bytes (32 bytes, one ymm), then per row Σ_k w[j][k] for the a + 128 correction. The product
// broadcasts each activation row's 4 offset bytes (a xor 0x80) into vpdpbusd against two panels:
// 6 rows × 16 outputs, twelve accumulators, per 4 columns 2 loads and 6 broadcasts feed 12 dot
// products, and no horizontal sums. The dot-product kernel above streamed every activation row
// past each 3 weight rows (25–37 % of the vpdpbusd peak at the SD shapes). Same bits: every sum
// mod 2^32, less 128·Σw mod 2^32.
VNNI void VNNI_FN(pack_panels)(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t p0, size_t p1) {
    const size_t panels = (n + 7) / 8, groups = (kp + 3) / 4;
    uint32_t *sums = (uint32_t *)(wp + panels * groups * 32);
    if (p1 > panels) p1 = panels;
    const __m256i ones = _mm256_set1_epi8(1);
    for (size_t p = p0; p < p1; p++) {
        int8_t *dst = wp + p * groups * 32;
        const size_t rows = n - p * 8 < 8 ? n - p * 8 : 8;
        size_t q = 0;
        if (rows == 8)
            for (; 4 * q + 32 <= kp; q += 8) {  // 32 columns of 8 rows: eight 4-byte groups per row, transposed
                __m256 r[8], t[8];
                for (int x = 0; x < 8; x++) r[x] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(w + (p * 8 + x) * kp + 4 * q)));
                transpose8(r, t);
                for (int x = 0; x < 8; x++) _mm256_storeu_ps((float *)(dst + (q + x) * 32), t[x]);
            }
        for (; q < groups; q++)
            for (size_t c = 0; c < 8; c++)
                for (size_t b = 0; b < 4; b++)
                    dst[q * 32 + c * 4 + b] = c < rows && 4 * q + b < kp ? w[(p * 8 + c) * kp + 4 * q + b] : 0;
        __m256i s = _mm256_setzero_si256();  // lane c: Σ of row c's bytes (padding adds 0)
        for (q = 0; q < groups; q++) s = DPBUSD(s, ones, _mm256_loadu_si256((const __m256i *)(dst + q * 32)));
        _mm256_storeu_si256((__m256i *)(sums + p * 8), s);
    }
}

// MR rows × the panel pair (w0, w1) over `groups` 4-column groups; c gets the valid `cols`.
VNNI static inline __attribute__((always_inline)) void vnni_panel_tile(int MR, size_t groups, const uint8_t *au,
                                                                       size_t lda, const int8_t *w0, const int8_t *w1,
                                                                       __m256i corr0, __m256i corr1, int32_t *c,
                                                                       size_t ldc, size_t cols) {
    __m256i s[6][2];
    for (int r = 0; r < MR; r++) s[r][0] = s[r][1] = _mm256_setzero_si256();
    for (size_t q = 0; q < groups; q++) {
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(w0 + q * 32));
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)(w1 + q * 32));
        for (int r = 0; r < MR; r++) {
            int32_t x4;
            memcpy(&x4, au + r * lda + 4 * q, 4);
            const __m256i x = _mm256_set1_epi32(x4);
            s[r][0] = DPBUSD(s[r][0], x, v0);
            s[r][1] = DPBUSD(s[r][1], x, v1);
        }
    }
    for (int r = 0; r < MR; r++) {
        const __m256i o0 = _mm256_sub_epi32(s[r][0], corr0), o1 = _mm256_sub_epi32(s[r][1], corr1);
        if (cols == 16) {
            _mm256_storeu_si256((__m256i *)(c + r * ldc), o0);
            _mm256_storeu_si256((__m256i *)(c + r * ldc + 8), o1);
        } else {
            int32_t out[16];
            _mm256_storeu_si256((__m256i *)out, o0);
            _mm256_storeu_si256((__m256i *)(out + 8), o1);
            memcpy(c + r * ldc, out, cols * sizeof(int32_t));
        }
    }
}

#define VNNI_PANEL_TILE(MR)                                                                                   \
    VNNI static void vnni_panel_##MR(size_t groups, const uint8_t *au, size_t lda, const int8_t *w0,         \
                                     const int8_t *w1, __m256i corr0, __m256i corr1, int32_t *c, size_t ldc, \
                                     size_t cols) {                                                           \
        vnni_panel_tile(MR, groups, au, lda, w0, w1, corr0, corr1, c, ldc, cols);                             \
    }
VNNI_PANEL_TILE(6)
VNNI_PANEL_TILE(5)
VNNI_PANEL_TILE(4)
VNNI_PANEL_TILE(3)
VNNI_PANEL_TILE(2)
VNNI_PANEL_TILE(1)
#undef VNNI_PANEL_TILE

typedef void (*vnni_panel_fn)(size_t, const uint8_t *, size_t, const int8_t *, const int8_t *, __m256i, __m256i,
                              int32_t *, size_t, size_t);

VNNI void VNNI_FN(gemm_i8i8_i32_panels)(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w,
                                       const int8_t *wp, int32_t *c) {
    if (m == 0 || n == 0) return;
    const size_t groups = (kp + 3) / 4, lda = groups * 4, panels = (n + 7) / 8;
    // The offset activations (a xor 0x80), rows of whole 4-byte groups (the padding meets zero weights).
    uint8_t *au = aligned_alloc(32, (m * lda + 31) / 32 * 32 + 32);
    if (!au) {  // no memory for the copy: the dot-product kernel, same bits
        VNNI_FN(gemm_i8i8_i32)(m, n, kp, a, w, c);
        return;
    }
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (size_t i = 0; i < m; i++) {
        size_t k = 0;
        for (; k + 32 <= kp; k += 32)
            _mm256_storeu_si256((__m256i *)(au + i * lda + k), _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(a + i * kp + k)), flip));
        for (; k < lda; k++) au[i * lda + k] = k < kp ? (uint8_t)a[i * kp + k] ^ 0x80u : 0;
    }
    const uint32_t *sums = (const uint32_t *)(wp + panels * groups * 32);
    static const vnni_panel_fn tiles[7] = {NULL, vnni_panel_1, vnni_panel_2, vnni_panel_3, vnni_panel_4, vnni_panel_5, vnni_panel_6};
    for (size_t p = 0; p < panels; p += 2) {
        const size_t j0 = p * 8, cols = n - j0 < 16 ? n - j0 : 16;
        const int8_t *w0 = wp + p * groups * 32, *w1 = p + 1 < panels ? w0 + groups * 32 : w0;
        const __m256i corr0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(sums + p * 8)), 7);
        const __m256i corr1 = p + 1 < panels ? _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(sums + p * 8 + 8)), 7) : corr0;
        for (size_t i = 0; i < m; i += 6) {
            const size_t mr = m - i < 6 ? m - i : 6;
            tiles[mr](groups, au + i * lda, lda, w0, w1, corr0, corr1, c + i * n + j0, n, cols);
        }
    }
    free(au);
}
