// AMX-INT8 int8 × int8 → int32 GEMM (level amx): c[i][j] = Σ_k a[i][k]·w[j][k], a [m][kp], w [n][kp],
// c [m][n], the contract of dloral_gemm_i8i8_i32 (generic/int8_gemm_scalar.c and arch/ have the other paths).
//
// TDPBSSD multiplies a 16 × 64-byte tile of signed bytes (16 rows of a, 64 consecutive k) by a
// 16 × 64-byte tile in the "VNNI" layout (16 quads of k, each holding 4 bytes for each of 16
// columns) and adds, for every one of the 16 × 16 int32 results, the 64 exact products to it. The
// int32 addition wraps and nothing saturates, so every element is the scalar sum mod 2^32 for any
// int8 input (−128 included, in a and w alike); kernel_check compares it with the scalar kernel on
// sums that wrap, at the end and only on the way.
//
// Blocking: tmm0–3 hold a 2 × 2 block of 16 × 16 C tiles (32 rows × 32 columns), tmm4–5 the two
// A tiles and tmm6–7 the two B tiles of one 64-wide step of k; per step 4 loads feed 4 TDPBSSD.
// A tiles load straight from a (stride kp). The weights are packed into the VNNI layout (pack_b),
// zero-padded to whole tiles: per call by gemm_i8i8_i32_amx, or once for all the row blocks of a
// layer call by amx_pack_weights (generic/int_layer.c), because at the layer driver's block sizes
// packing per call costs a large share of the GEMM. (Under AMX_MIN_ROWS rows the amx table leaves
// the product to the VNNI kernel, which is faster than packing.) Rows of a that do not fill a tile (m mod 16) and, when kp is not a multiple
// of 64, all of a are copied into a zero-padded scratch first, so no tile load reads past an
// input; C tiles that do not fit c (m or n not a multiple of 16) are stored to a scratch tile and
// copied out. The column pairs are outermost, so one packed panel of 32 weight rows (32·kp bytes)
// stays in L2 while every row block of a passes it (measured: faster than rows outermost, and
// than blocking k to keep the panel in L1).
//
// The tile configuration is per thread: each call loads it and releases the tiles at the end, so
// concurrent calls on other threads and code that does not use AMX are unaffected. The process
// must have been granted tile data (backend/cpu_features.c asks the OS for it before it reports
// AMX); call this only at level amx.
#include "kernels_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#define AMX __attribute__((target("amx-int8,amx-tile,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")))

enum { TILE_K = 64, TILE_BYTES = 1024 };

// GCC's AMX intrinsics are inline assembly that declares less than the instructions do:
// ldtilecfg names only the first 8 bytes of its 64-byte operand, tileloadd no memory at all. This
// barrier (p: memory that must count as read) keeps every store before it — the configuration,
// the packed weights, the padded rows — ahead of the tile instructions after it. clang's builtins
// declare their memory operands; for them the barrier costs nothing.
#define MEMORY_BARRIER(p) __asm__ volatile("" : : "r"(p) : "memory")

// LDTILECFG's 64-byte operand, palette 1: per tile register, rows and bytes per row.
struct tile_config {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

// All eight tiles 16 rows × 64 bytes: C (16 × 16 int32), A (16 rows × 64 k) and B (16 k-quads ×
// 16 columns × 4 bytes) alike.
AMX static void configure_tiles(void) {
    struct tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    MEMORY_BARRIER(&cfg);
    _tile_loadconfig(&cfg);
}

// MARK: - Packing

// 16 × 16 int32 transpose in four rounds of shuffles (32-bit and 64-bit unpacks within 128-bit
// lanes, then two rounds of 128-bit lane shuffles).
AMX static inline void transpose16(__m512i r[16]) {
    __m512i t[16], u[16];
    for (int q = 0; q < 16; q += 2) {
        t[q] = _mm512_unpacklo_epi32(r[q], r[q + 1]);
        t[q + 1] = _mm512_unpackhi_epi32(r[q], r[q + 1]);
    }
    for (int q = 0; q < 16; q += 4) {  // u[q + x], lane L: column 4L + x of rows q … q+3
        u[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        u[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        u[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        u[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
    }
    for (int x = 0; x < 4; x++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[x], u[4 + x], 0x88), v1 = _mm512_shuffle_i32x4(u[x], u[4 + x], 0xdd);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + x], u[12 + x], 0x88), v3 = _mm512_shuffle_i32x4(u[8 + x], u[12 + x], 0xdd);
        r[x] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        r[4 + x] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        r[8 + x] = _mm512_shuffle_i32x4(v0, v2, 0xdd);
        r[12 + x] = _mm512_shuffle_i32x4(v1, v3, 0xdd);
    }
}

// Weight rows w[n][kp] in TDPBSSD's B layout: for each panel of 16 weight rows (jb) and each
// 64-wide step of k (s), one 1 KiB tile at bp + (jb·steps + s)·1024 whose row r holds
// w[16jb + c][64s + 4r … 64s + 4r + 3] for c = 0 … 15: the transpose, in 4-byte units, of the
// 16 × 64 bytes of w it covers. Rows past n and bytes past kp are zero.
// Packs panels [jb0, jb1) only. With sums, also Σ_k w[j][k] mod 2^32 of each weight row j of
// those panels, read back from the packed tiles while they are in L1 (their zero padding adds
// nothing): in a tile, 32-bit slot c of every row holds 4 bytes of weight row c, so vpdpbusd
// with a ones operand adds them into lane c.
AMX static void pack_b(size_t n, size_t kp, size_t steps, const int8_t *w, int8_t *bp, size_t jb0, size_t jb1,
                       uint32_t *sums) {
    const size_t full_steps = kp / TILE_K;
    const __m256i ones = _mm256_set1_epi8(1);
    for (size_t jb = jb0; jb < jb1 && jb * 16 < n; jb++) {
        const size_t cols = n - jb * 16 < 16 ? n - jb * 16 : 16;
        const int8_t *wj = w + jb * 16 * kp;
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();  // slots 0–7, 8–15
        for (size_t s = 0; s < steps; s++) {
            int8_t *dst = bp + (jb * steps + s) * TILE_BYTES;
            if (cols == 16 && s < full_steps) {
                __m512i r[16];
                for (int c = 0; c < 16; c++) r[c] = _mm512_loadu_si512(wj + c * kp + s * TILE_K);
                transpose16(r);
                for (int q = 0; q < 16; q++) _mm512_store_si512(dst + q * 64, r[q]);
            } else {  // the edges, byte by byte
                memset(dst, 0, TILE_BYTES);
                const size_t k0 = s * TILE_K, kn = kp - k0 < TILE_K ? kp - k0 : TILE_K;
                for (size_t c = 0; c < cols; c++)
                    for (size_t k = 0; k < kn; k++) dst[(k / 4) * 64 + c * 4 + k % 4] = wj[c * kp + k0 + k];
            }
            if (sums) {
                for (int q = 0; q < 16; q++) {
                    lo = _mm256_dpbusd_epi32(lo, ones, _mm256_load_si256((const __m256i *)(dst + q * 64)));
                    hi = _mm256_dpbusd_epi32(hi, ones, _mm256_load_si256((const __m256i *)(dst + q * 64 + 32)));
                }
            }
        }
        if (sums) {
            uint32_t lane[16];
            _mm256_storeu_si256((__m256i *)lane, lo);
            _mm256_storeu_si256((__m256i *)(lane + 8), hi);
            memcpy(sums + jb * 16, lane, cols * sizeof(uint32_t));
        }
    }
}

// MARK: - Tiles

// Where the A tile of one row block comes from: rows of `stride` bytes.
struct a_rows {
    const int8_t *p;
    size_t stride;
};

// Where one C tile goes: straight into c when all 16 × 16 elements lie inside it, else into a
// scratch tile whose valid rows × cols are copied out.
struct c_tile {
    int32_t *c, *scratch;
    size_t ldc, rows, cols;
};

// Stores tile register T to its destination.
#define STORE_C(T, d)                                                                    \
    do {                                                                                 \
        if ((d).rows == 16 && (d).cols == 16) {                                          \
            _tile_stored(T, (d).c, (d).ldc * sizeof(int32_t));                           \
        } else {                                                                         \
            _tile_stored(T, (d).scratch, 64);                                            \
            for (size_t r_ = 0; r_ < (d).rows; r_++)                                     \
                memcpy((d).c + r_ * (d).ldc, (d).scratch + r_ * 16, (d).cols * 4);       \
        }                                                                                \
    } while (0)

// One MR × NR block of C tiles (MR, NR ∈ {1, 2}; constants at each call, so the tile register
// numbers are too): C[r][t] = Σ over the steps of A[r]·B[t], in tmm(2r + t).
AMX static inline __attribute__((always_inline)) void amx_block(int MR, int NR, size_t steps, struct a_rows a0,
                                                                struct a_rows a1, const int8_t *b0,
                                                                const int8_t *b1, const struct c_tile d[4]) {
    _tile_zero(0);
    if (NR > 1) _tile_zero(1);
    if (MR > 1) _tile_zero(2);
    if (MR > 1 && NR > 1) _tile_zero(3);
    for (size_t s = 0; s < steps; s++) {
        _tile_loadd(6, b0 + s * TILE_BYTES, 64);
        if (NR > 1) _tile_loadd(7, b1 + s * TILE_BYTES, 64);
        _tile_loadd(4, a0.p + s * TILE_K, a0.stride);
        _tile_dpbssd(0, 4, 6);
        if (NR > 1) _tile_dpbssd(1, 4, 7);
        if (MR > 1) {
            _tile_loadd(5, a1.p + s * TILE_K, a1.stride);
            _tile_dpbssd(2, 5, 6);
            if (NR > 1) _tile_dpbssd(3, 5, 7);
        }
    }
    STORE_C(0, d[0]);
    if (NR > 1) STORE_C(1, d[1]);
    if (MR > 1) STORE_C(2, d[2]);
    if (MR > 1 && NR > 1) STORE_C(3, d[3]);
}

AMX static void amx_block_2x2(size_t steps, struct a_rows a0, struct a_rows a1, const int8_t *b0, const int8_t *b1,
                              const struct c_tile d[4]) {
    amx_block(2, 2, steps, a0, a1, b0, b1, d);
}
AMX static void amx_block_2x1(size_t steps, struct a_rows a0, struct a_rows a1, const int8_t *b0, const int8_t *b1,
                              const struct c_tile d[4]) {
    amx_block(2, 1, steps, a0, a1, b0, b1, d);
}
AMX static void amx_block_1x2(size_t steps, struct a_rows a0, struct a_rows a1, const int8_t *b0, const int8_t *b1,
                              const struct c_tile d[4]) {
    amx_block(1, 2, steps, a0, a1, b0, b1, d);
}
AMX static void amx_block_1x1(size_t steps, struct a_rows a0, struct a_rows a1, const int8_t *b0, const int8_t *b1,
                              const struct c_tile d[4]) {
    amx_block(1, 1, steps, a0, a1, b0, b1, d);
}

// MARK: - Drivers

// Bytes of the packed weights: whole 16-row panels × whole 64-wide steps (at least one tile, so
// the size is never 0).
static size_t packed_bytes(size_t n, size_t kp) {
    const size_t tiles = ((n + 15) / 16) * ((kp + TILE_K - 1) / TILE_K);
    return (tiles ? tiles : 1) * TILE_BYTES;
}

// The packed tiles, then (for int16 activations only) Σ_k w[j][k] for each weight row (uint32,
// for the int16 products below).
size_t amx_packed_weight_bytes(size_t n, size_t kp, int bits) {
    return packed_bytes(n, kp) + (bits == 16 ? ((n * sizeof(uint32_t) + 63) / 64) * 64 : 0);
}

AMX void amx_pack_weight_panels(int bits, size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t panel0,
                                size_t panel1) {
    const size_t panels = (n + 15) / 16;
    if (panel1 > panels) panel1 = panels;
    if (panel0 >= panel1) return;
    pack_b(n, kp, (kp + TILE_K - 1) / TILE_K, w, wp, panel0, panel1,
           bits == 16 ? (uint32_t *)(wp + packed_bytes(n, kp)) : NULL);
}

AMX int8_t *amx_pack_weights(int bits, size_t n, size_t kp, const int8_t *w) {
    int8_t *wp = aligned_alloc(64, amx_packed_weight_bytes(n, kp, bits));
    if (wp) amx_pack_weight_panels(bits, n, kp, w, wp, 0, (n + 15) / 16);
    return wp;
}

AMX void gemm_i8i8_i32_amx_packed(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, const int8_t *wp,
                                  int32_t *c) {
    if (m == 0 || n == 0) return;
    if (kp == 0) {
        memset(c, 0, m * n * sizeof(int32_t));
        return;
    }
    const size_t steps = (kp + TILE_K - 1) / TILE_K, kp64 = steps * TILE_K;
    const size_t mt = (m + 15) / 16, nt = (n + 15) / 16;
    // Row blocks from `copied` on are read from the zero-padded copy (rows of kp64 bytes): only
    // the last, partial one when kp is a multiple of 64, else all (a 64-byte load would run past
    // the end of each row, and of a).
    const size_t copied = kp % TILE_K ? 0 : m / 16;
    int8_t *ap = NULL;
    if (mt > copied) {
        ap = aligned_alloc(64, (mt - copied) * 16 * kp64);
        if (!ap) {  // no memory for the copy: the AVX-VNNI kernel gives the same bits
            gemm_i8i8_i32_vnni_evex(m, n, kp, a, w, c);
            return;
        }
        memset(ap, 0, (mt - copied) * 16 * kp64);
        for (size_t i = copied * 16; i < m; i++) memcpy(ap + (i - copied * 16) * kp64, a + i * kp, kp);
    }
    int32_t scratch[4][256] __attribute__((aligned(64)));
    MEMORY_BARRIER(wp);
    configure_tiles();
    for (size_t tj = 0; tj < nt; tj += 2) {
        const size_t nr = nt - tj >= 2 ? 2 : 1;
        const int8_t *b0 = wp + tj * steps * TILE_BYTES, *b1 = b0 + (nr > 1 ? steps * TILE_BYTES : 0);
        for (size_t ti = 0; ti < mt; ti += 2) {
            const size_t mr = mt - ti >= 2 ? 2 : 1;
            struct a_rows ar[2];
            struct c_tile d[4];
            for (size_t r = 0; r < mr; r++) {
                const size_t t = ti + r;
                ar[r] = t < copied ? (struct a_rows){a + t * 16 * kp, kp}
                                   : (struct a_rows){ap + (t - copied) * 16 * kp64, kp64};
                for (size_t q = 0; q < nr; q++) {
                    const size_t i0 = t * 16, j0 = (tj + q) * 16;
                    d[r * 2 + q] = (struct c_tile){c + i0 * n + j0, scratch[r * 2 + q], n,
                                                   m - i0 < 16 ? m - i0 : 16, n - j0 < 16 ? n - j0 : 16};
                }
            }
            if (mr == 1) ar[1] = ar[0];
            if (mr == 2 && nr == 2) amx_block_2x2(steps, ar[0], ar[1], b0, b1, d);
            else if (mr == 2) amx_block_2x1(steps, ar[0], ar[1], b0, b1, d);
            else if (nr == 2) amx_block_1x2(steps, ar[0], ar[1], b0, b1, d);
            else amx_block_1x1(steps, ar[0], ar[1], b0, b1, d);
        }
    }
    _tile_release();
    free(ap);
}

// MARK: - int16 activations on the int8 tiles
//
// AMX has no 16-bit integer product, but a = 256·h + l with h = a >> 8 (arithmetic: int8 for any
// int16) and l = a & 255 splits one int16 × int8 product into two int8 ones:
//     Σ a·w = 256·Σ h·w + Σ (l − 128)·w + 128·Σ w,
// with l − 128 an int8 (the low byte xor 0x80). Both sums run on TDPBSSD against the same packed
// weights, Σ w per weight row is summed from the packed tiles as they are written (pack_b), and
// the combination is 32-bit wrapping
// arithmetic, so the result is the scalar int16 kernel's mod 2^32 for every input (−32768 and
// −128 included). Two int8 tile products cost far less than one AVX-VNNI vpdpwssd product.

// Both halves in one pass over the packed weights: per 16-row tile of a and pair of 16-column
// weight tiles, tmm0–1 sum the high halves and tmm2–3 the low ones against the same two B tiles
// (per 64-wide step: 2 B loads, 2 A loads, 4 TDPBSSD, the 2 × 2 block's ratio). The halves are
// written once per call already in tiles: for row tile t and step s, the high tile (16 rows × 64
// bytes) then the low one, 2 KiB at (t·steps + s)·2048, zero past kp and past m (their products
// are never stored), so each tile load reads 1 KiB in a row. The four C tiles go to a scratch
// block from which the combination is written into c, 16 columns per vector. The split by vpermt2b
// below replaces row-major halves, narrowing by vpmovwb and a scalar combination because it is not
// slower at any SD shape (Tools/bench/amx_ab.sh compares the two; figures in BENCHMARKS.md).
AMX void gemm_i16i8_i32_amx_packed(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w,
                                   const int8_t *wp, int32_t *c) {
    if (m == 0 || n == 0) return;
    const size_t steps = (kp + TILE_K - 1) / TILE_K;
    const size_t mt = (m + 15) / 16, nt = (n + 15) / 16;
    int8_t *halves = aligned_alloc(64, mt * steps * 2 * TILE_BYTES);
    if (!halves) {  // no memory for the halves: the AVX-VNNI kernel, same bits
        gemm_i16i8_i32_vnni_evex(m, n, kp, a, w, c);
        return;
    }
    const uint32_t *sums = (const uint32_t *)(wp + packed_bytes(n, kp));
    // The halves: the high byte as is, the low byte xor 0x80 (l − 128). A full step's 64
    // activations are two zmm of int16 whose odd bytes are the high halves and even bytes the low
    // ones: one vpermt2b each gathers them (2 shuffle µops per 64, where narrowing by vpmovwb took
    // 8; the split was a third of the call at the VAE's 128 channels).
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    uint8_t odd[64], even[64];
    for (int j = 0; j < 64; j++) odd[j] = (uint8_t)(2 * j + 1), even[j] = (uint8_t)(2 * j);
    const __m512i pick_high = _mm512_loadu_si512(odd), pick_low = _mm512_loadu_si512(even);
    for (size_t r = 0; r < mt * 16; r++) {
        int8_t *row = halves + (r / 16) * steps * 2 * TILE_BYTES + (r % 16) * TILE_K;  // step 0's high tile
        const int16_t *ar = a + (r < m ? r : 0) * kp;  // rows past m read nothing (kn = 0)
        for (size_t s = 0; s < steps; s++) {
            int8_t *h = row + s * 2 * TILE_BYTES, *l = h + TILE_BYTES;
            const size_t k0 = s * TILE_K, kn = r >= m ? 0 : kp - k0 < TILE_K ? kp - k0 : TILE_K;
            if (kn == TILE_K) {
                const __m512i v0 = _mm512_loadu_si512(ar + k0), v1 = _mm512_loadu_si512(ar + k0 + 32);
                _mm512_store_si512(h, _mm512_permutex2var_epi8(v0, pick_high, v1));
                _mm512_store_si512(l, _mm512_xor_si512(_mm512_permutex2var_epi8(v0, pick_low, v1), flip));
                continue;
            }
            for (size_t i = 0; i < kn; i++) {
                h[i] = (int8_t)(ar[k0 + i] >> 8);
                l[i] = (int8_t)((uint8_t)ar[k0 + i] ^ 0x80u);
            }
            memset(h + kn, 0, TILE_K - kn);
            memset(l + kn, 0, TILE_K - kn);
        }
    }
    int32_t block[4][256] __attribute__((aligned(64)));  // C tiles: high 0, 1; low 0, 1
    MEMORY_BARRIER(wp);
    MEMORY_BARRIER(halves);
    configure_tiles();
    for (size_t tj = 0; tj < nt; tj += 2) {
        const size_t pair = nt - tj >= 2 ? 2 : 1;
        const int8_t *b0 = wp + tj * steps * TILE_BYTES, *b1 = b0 + (pair > 1 ? steps * TILE_BYTES : 0);
        for (size_t ti = 0; ti < mt; ti++) {
            const int8_t *at = halves + ti * steps * 2 * TILE_BYTES;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (size_t s = 0; s < steps; s++) {
                _tile_loadd(6, b0 + s * TILE_BYTES, 64);
                _tile_loadd(7, b1 + s * TILE_BYTES, 64);
                _tile_loadd(4, at + s * 2 * TILE_BYTES, 64);
                _tile_loadd(5, at + s * 2 * TILE_BYTES + TILE_BYTES, 64);
                _tile_dpbssd(0, 4, 6);
                _tile_dpbssd(1, 4, 7);
                _tile_dpbssd(2, 5, 6);
                _tile_dpbssd(3, 5, 7);
            }
            _tile_stored(0, block[0], 64);
            _tile_stored(1, block[1], 64);
            _tile_stored(2, block[2], 64);
            _tile_stored(3, block[3], 64);
            // c = 256·high + low + 128·Σw, wrapping, a row of 16 columns per vector.
            const size_t i0 = ti * 16, rows = m - i0 < 16 ? m - i0 : 16;
            for (size_t q = 0; q < pair; q++) {
                const size_t j0 = (tj + q) * 16, cols = n - j0 < 16 ? n - j0 : 16;
                const __mmask16 colmask = (__mmask16)((1u << cols) - 1);
                const __m512i corr = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(colmask, sums + j0), 7);
                for (size_t r = 0; r < rows; r++) {
                    const __m512i high = _mm512_load_si512(block[q] + r * 16), low = _mm512_load_si512(block[2 + q] + r * 16);
                    _mm512_mask_storeu_epi32(c + (i0 + r) * n + j0, colmask,
                                             _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(high, 8), low), corr));
                }
            }
        }
    }
    _tile_release();
    free(halves);
}

// The unpacked entries: pack w for this call (without memory for the packed weights, the EVEX VNNI
// kernel, which gives the same bits). The amx table sends products under AMX_MIN_ROWS rows to
// that kernel directly.
AMX static void gemm_amx_unpacked(int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w,
                                  int32_t *c) {
    if (m == 0 || n == 0) return;
    int8_t *wp = amx_pack_weights(bits, n, kp, w);
    if (bits == 8) {
        if (wp) gemm_i8i8_i32_amx_packed(m, n, kp, a, w, wp, c);
        else gemm_i8i8_i32_vnni_evex(m, n, kp, a, w, c);
    } else {
        if (wp) gemm_i16i8_i32_amx_packed(m, n, kp, a, w, wp, c);
        else gemm_i16i8_i32_vnni_evex(m, n, kp, a, w, c);
    }
    free(wp);
}

AMX void gemm_i8i8_i32_amx(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    gemm_amx_unpacked(8, m, n, kp, a, w, c);
}

AMX void gemm_i16i8_i32_amx(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    gemm_amx_unpacked(16, m, n, kp, a, w, c);
}
size_t amx_packed_bytes_i8(size_t n, size_t kp) { return amx_packed_weight_bytes(n, kp, 8); }
size_t amx_packed_bytes_i16(size_t n, size_t kp) { return amx_packed_weight_bytes(n, kp, 16); }

void amx_pack_panels_i8(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t panel0, size_t panel1) {
    amx_pack_weight_panels(8, n, kp, w, wp, panel0, panel1);
}

void amx_pack_panels_i16(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t panel0, size_t panel1) {
    amx_pack_weight_panels(16, n, kp, w, wp, panel0, panel1);
}

// MARK: - Block scales (Formats/dlrt.md §4.3)
//
// y[i][j] = acc with acc = bias[j], then per block b of `block` (32 or 64) columns in order
// acc = fma((float)Σ_{k ∈ b} a[i][k]·w[j][k], sa[i][b]·sw[j][b], acc): each block's sums come from
// one TDPBSSD on a 16 × block-byte A tile and the block's block/4 rows of the packed B tile (the
// same packed weights as the int8 GEMM: a 64-wide step holds blocks 2s and 2s+1 of 32, or block
// s of 64), stored, converted and fused into 16 float accumulators per row tile (one per row, a
// lane per column) with AVX-512. Two C tiles alternate, so the tile product of block b + 1 runs
// while block b's results are fused. Same bits as gemm_i8i8_blocks_scalar.

// tmm0–1: C (16 × 16 int32); tmm2: A, 16 rows × block bytes; tmm3: B, block/4 k-quads × 64 bytes.
AMX static void configure_block_tiles(size_t block) {
    struct tile_config cfg __attribute__((aligned(64)));
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    cfg.colsb[0] = cfg.colsb[1] = 64;
    cfg.rows[0] = cfg.rows[1] = 16;
    cfg.colsb[2] = (uint16_t)block;
    cfg.rows[2] = 16;
    cfg.colsb[3] = 64;
    cfg.rows[3] = (uint8_t)(block / 4);
    MEMORY_BARRIER(&cfg);
    _tile_loadconfig(&cfg);
}

// acc[r] = fma(float(C row r), sw[b]·sa[r][b], acc[r]) for the 16 rows of one stored C tile.
#define FUSE_BLOCK(buf, b)                                                                                  \
    do {                                                                                                    \
        const __m512 swv_ = _mm512_load_ps(swp + (b) * 16);                                                 \
        _Pragma("GCC unroll 16") for (int r_ = 0; r_ < 16; r_++)                                                   \
            acc[r_] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512((buf) + r_ * 16)),               \
                                      _mm512_mul_ps(swv_, _mm512_set1_ps(sar[(size_t)r_ * nb + (b)])), acc[r_]); \
    } while (0)

// The block's A tile (16 rows from ar, stride bytes apart) and B tile, into C tile T.
#define BLOCK_PRODUCT(T, b)                                                                        \
    do {                                                                                           \
        _tile_zero(T);                                                                             \
        _tile_loadd(2, ar + (b) * block, stride);                                                  \
        _tile_loadd(3, bpanel + ((b) * block / TILE_K) * TILE_BYTES + ((b) * block % TILE_K) * 16, 64); \
        _tile_dpbssd(T, 2, 3);                                                                     \
    } while (0)

// One 16 × 16 tile of y through every block, into out (row r: 16 columns). The accumulators are
// indexed by constants only (the loops unrolled), so they stay in registers.
AMX static void block_row_tile(size_t nb, size_t block, const int8_t *ar, size_t stride, const int8_t *bpanel,
                               const float *sar, const float *swp, __m512 bv, float out[256]) {
    int32_t buf[2][256] __attribute__((aligned(64)));
    __m512 acc[16];
    _Pragma("GCC unroll 16") for (int r = 0; r < 16; r++) acc[r] = bv;
    BLOCK_PRODUCT(0, 0);
    for (size_t b = 0; b < nb; b += 2) {
        if (b + 1 < nb) BLOCK_PRODUCT(1, b + 1);
        _tile_stored(0, buf[0], 64);
        FUSE_BLOCK(buf[0], b);
        if (b + 1 < nb) {
            if (b + 2 < nb) BLOCK_PRODUCT(0, b + 2);
            _tile_stored(1, buf[1], 64);
            FUSE_BLOCK(buf[1], b + 1);
        }
    }
    _Pragma("GCC unroll 16") for (int r = 0; r < 16; r++) _mm512_store_ps(out + r * 16, acc[r]);
}
#undef FUSE_BLOCK
#undef BLOCK_PRODUCT

AMX void gemm_i8i8_blocks_amx_packed(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                     const int8_t *w, const int8_t *wp, const float *sw, const float *bias, float *y,
                                     size_t rs, size_t cs) {
    if (m == 0 || n == 0) return;
    const size_t nb = kp / block, steps = (kp + TILE_K - 1) / TILE_K, full = m / 16, mt = (m + 15) / 16;
    // The last, partial row tile from a zero-padded copy (and its scales, the missing rows 0).
    int8_t *ap = m % 16 ? aligned_alloc(64, 16 * kp + 64) : NULL;
    float *sap = m % 16 ? malloc(16 * nb * sizeof(float) + 4) : NULL;
    float *swp = aligned_alloc(64, nb * 16 * sizeof(float) + 64);
    if ((m % 16 && (!ap || !sap)) || !swp) {  // no scratch: the AVX2 kernel, same bits
        free(ap), free(sap), free(swp);
        gemm_i8i8_blocks_avx2(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
        return;
    }
    if (ap) {
        memset(ap, 0, 16 * kp);
        memcpy(ap, a + full * 16 * kp, (m - full * 16) * kp);
        memset(sap, 0, 16 * nb * sizeof(float));
        memcpy(sap, sa + full * 16 * nb, (m - full * 16) * nb * sizeof(float));
    }
    MEMORY_BARRIER(wp);
    MEMORY_BARRIER(ap);
    configure_block_tiles(block);
    for (size_t tj = 0; tj * 16 < n; tj++) {
        const size_t j0 = tj * 16, cols = n - j0 < 16 ? n - j0 : 16;
        const __mmask16 colmask = (__mmask16)((1u << cols) - 1);
        for (size_t b = 0; b < nb; b++)
            for (size_t c = 0; c < 16; c++) swp[b * 16 + c] = c < cols ? sw[(j0 + c) * nb + b] : 0.0f;
        const __m512 bv = bias ? _mm512_maskz_loadu_ps(colmask, bias + j0) : _mm512_setzero_ps();
        const int8_t *bpanel = wp + tj * steps * TILE_BYTES;
        for (size_t ti = 0; ti < mt; ti++) {
            const size_t i0 = ti * 16, rows = m - i0 < 16 ? m - i0 : 16;
            const int8_t *ar = ti < full ? a + i0 * kp : ap;
            const float *sar = ti < full ? sa + i0 * nb : sap;
            float out[256] __attribute__((aligned(64)));
            block_row_tile(nb, block, ar, kp, bpanel, sar, swp, bv, out);
            if (cs == 1) {  // rows of y
                for (size_t r = 0; r < rows; r++)
                    _mm512_mask_storeu_ps(y + (i0 + r) * rs + j0, colmask, _mm512_load_ps(out + r * 16));
            } else if (rs == 1) {  // planes of y: transposed, a plane's 16 pixels per store
                __m512i t[16];
                for (int r = 0; r < 16; r++) t[r] = _mm512_load_si512(out + r * 16);
                transpose16(t);
                const __mmask16 rowmask = (__mmask16)((1u << rows) - 1);
                for (size_t c = 0; c < cols; c++) _mm512_mask_storeu_ps(y + (j0 + c) * cs + i0, rowmask, _mm512_castsi512_ps(t[c]));
            } else {
                for (size_t r = 0; r < rows; r++)
                    for (size_t c = 0; c < cols; c++) y[(i0 + r) * rs + (j0 + c) * cs] = out[r * 16 + c];
            }
        }
    }
    _tile_release();
    free(ap), free(sap), free(swp);
}
#endif
