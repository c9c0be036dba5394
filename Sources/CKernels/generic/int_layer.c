// Integer Conv2d / Linear layers (dloral_int_layer.h): per-row activation quantization, integer
// GEMM, fused dequantization with bias. One driver for every path (scalar, AVX2, NEON); only the
// row quantizer, the GEMM and the epilogue differ, and they give the same bits on every path
// (checked by Tests/KernelCheck/kernel_check.c, for NEON under qemu-user).
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include "int_layer_scalar.h"
#include "kernel_table.h"
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int32_t dloral_activation_qmax(int bits, size_t kp) {
    if (bits == 8) return 127;
    if (kp == 0) return 32767;
    // Largest q with kp·q·127 ≤ 2^31 − 1.
    uint64_t q = (uint64_t)2147483647u / ((uint64_t)kp * 127u);
    return q > 32767 ? 32767 : (int32_t)q;
}

// MARK: - Driver

float dloral_quantize_row(const kernel_table *T, int bits, size_t k, size_t kp, const float *x, void *q) {
    return T->quantize_row(bits, k, kp, dloral_activation_qmax(bits, kp), x, q);
}

// Weights prepared for one layer call that its threads share (the level's weight_packing in its
// kernel table): the packing they were prepared with, and the packed bytes.
struct dloral_int_weights {
    const weight_packing *packing;
    size_t n, kp;
    const int8_t *w;
    int8_t *packed;
};

// The level's packing for `bits`-bit activations (8 or 16).
static const weight_packing *packing_for(const kernel_table *T, int bits) {
    return bits == 8 ? &T->pack_i8 : &T->pack_i16;
}

// A preparation of w with `packing` for calls of `rows` rows, still to be packed; NULL when the
// level prepares nothing there, or when out of memory (the calls then prepare for themselves, with
// the same results).
static dloral_int_weights *weights_new(const weight_packing *packing, size_t rows, size_t n, size_t kp,
                                       const int8_t *w) {
    if (!packing->pack || rows < packing->min_rows || n == 0) return NULL;
    const size_t bytes = packing->bytes(n, kp);
    dloral_int_weights *prepared = malloc(sizeof *prepared);
    int8_t *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (prepared && packed) {
        *prepared = (dloral_int_weights){packing, n, kp, w, packed};
        return prepared;
    }
    free(prepared);
    free(packed);
    return NULL;
}

dloral_int_weights *dloral_int_weights_new(const kernel_table *T, int bits, size_t rows, size_t n, size_t kp, const int8_t *w) {
    return weights_new(packing_for(T, bits), rows, n, kp, w);
}

size_t dloral_int_min_rows(const kernel_table *T) {
    const size_t small = T->small_rows;
    return small > 1 ? small : 1;
}

dloral_int_weights *dloral_int_block_weights_new(const kernel_table *T, size_t rows, size_t n, size_t kp, const int8_t *w) {
    return weights_new(&T->pack_blocks, rows, n, kp, w);
}

size_t dloral_int_weights_pieces(const dloral_int_weights *prepared) {
    if (!prepared) return 0;
    const size_t panel = prepared->packing->panel_rows;
    return (prepared->n + panel - 1) / panel;
}

void dloral_int_weights_pack(dloral_int_weights *prepared, size_t first, size_t end) {
    if (prepared) prepared->packing->pack(prepared->n, prepared->kp, prepared->w, prepared->packed, first, end);
}

// prepared's packed weights when they are those of this call with `packing`, else NULL.
static const int8_t *prepared_for(const dloral_int_weights *prepared, const weight_packing *packing, size_t n,
                                  size_t kp, const int8_t *w) {
    return prepared && prepared->packing == packing && prepared->n == n && prepared->kp == kp && prepared->w == w
               ? prepared->packed
               : NULL;
}

void dloral_int_weights_free(dloral_int_weights *prepared) {
    if (!prepared) return;
    free(prepared->packed);
    free(prepared);
}

// The weights of one layer call of `rows` rows: the shared preparation when it is this call's,
// else prepared for this call alone (into *own, to free) where the level's packing pays for
// itself within one call (the tiles: packing costs about as much as the tile products of a few
// dozen rows, and a call has up to tens of blocks), else NULL.
static const int8_t *weights_for_call(const weight_packing *packing, const dloral_int_weights *prepared, size_t rows,
                                      size_t n, size_t kp, const int8_t *w, dloral_int_weights **own) {
    const int8_t *shared = prepared_for(prepared, packing, n, kp, w);
    *own = NULL;
    if (shared || !packing->per_call) return shared;
    *own = weights_new(packing, rows, n, kp, w);
    dloral_int_weights_pack(*own, 0, dloral_int_weights_pieces(*own));
    return *own ? (*own)->packed : NULL;
}

// wp: the weights packed with the level's packing for `bits`, or NULL. Every kernel gives the same
// bits.
static void gemm(const kernel_table *T, int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w,
                 const int8_t *wp, int32_t *c) {
    if (wp) {
        if (bits == 8) T->gemm_i8i8_packed(m, n, kp, a, w, wp, c);
        else T->gemm_i16i8_packed(m, n, kp, a, w, wp, c);
        return;
    }
    if (bits == 8) (m < T->small_rows ? T->gemm_i8i8_small : T->gemm_i8i8)(m, n, kp, a, w, c);
    else (m < T->small_rows ? T->gemm_i16i8_small : T->gemm_i16i8)(m, n, kp, a, w, c);
}

void int_gemm_prepared(const kernel_table *T, int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w,
                       const dloral_int_weights *prepared, int32_t *c) {
    gemm(T, bits, m, n, kp, a, w, prepared_for(prepared, packing_for(T, bits), n, kp, w), c);
}

// Rows per block: the quantized block (rows·kp elements) stays within about 512 KiB of the 2 MiB
// L2, up to 256 rows, and the int32 results (rows·n) within about 512 KiB: the larger blocks cost
// fewer weight passes than 256 KiB / 128 rows did on two threads (Tools/bench/int_gemm_bench.c).
size_t int_layer_block_rows(int bits, size_t kp, size_t n) {
    size_t bytes = bits == 8 ? 1 : 2;
    size_t rows = (512u * 1024u) / (kp * bytes + 1);
    size_t by_out = (512u * 1024u) / (n * 4 + 1);
    if (by_out < rows) rows = by_out;
    if (rows < 8) rows = 8;
    if (rows > 256) rows = 256;
    return rows;
}

struct scratch {
    float *row;
    void *q;
    int32_t *acc;
    float *sa;
};

static int scratch_alloc(struct scratch *s, size_t k, size_t rows, size_t kp, size_t n, int bits) {
    size_t bytes = bits == 8 ? 1 : 2;
    s->row = aligned_alloc(64, ((k * sizeof(float) + 63) / 64) * 64 + 64);
    s->q = aligned_alloc(64, ((rows * kp * bytes + 63) / 64) * 64 + 64);
    s->acc = aligned_alloc(64, ((rows * n * 4 + 63) / 64) * 64 + 64);
    s->sa = malloc(rows * sizeof(float) + 4);
    if (!s->row || !s->q || !s->acc || !s->sa) {
        free(s->row), free(s->q), free(s->acc), free(s->sa);
        return -1;
    }
    return 0;
}

static void scratch_free(struct scratch *s) { free(s->row), free(s->q), free(s->acc), free(s->sa); }

// Output pixel p's im2col row of a conv, gathered from the channels-last input into row (k floats
// in (ky, kx, c) order, zeros where the window lies in the padding).
static void gather_patch(size_t c, size_t h, size_t w_in, size_t kh, size_t kw, size_t sh, size_t sw, size_t ph,
                         size_t pw, size_t wo, const float *x_hwc, size_t p, float *row) {
    const size_t oy = p / wo, ox = p % wo;
    for (size_t ky = 0; ky < kh; ky++) {
        long iy = (long)(oy * sh + ky) - (long)ph;
        for (size_t kx = 0; kx < kw; kx++) {
            long ix = (long)(ox * sw + kx) - (long)pw;
            float *dst = row + (ky * kw + kx) * c;
            if (iy < 0 || iy >= (long)h || ix < 0 || ix >= (long)w_in) memset(dst, 0, c * sizeof(float));
            else memcpy(dst, x_hwc + ((size_t)iy * w_in + (size_t)ix) * c, c * sizeof(float));
        }
    }
}

// Quantizes output pixel p's im2col row ((ky, kx, c) order) of a padded or multi-tap conv into
// q, straight from the channels-last input: its amax is the largest of its taps' per-pixel amax
// (pix_amax, NaN for a pixel holding NaN), and each tap's c channels are quantized in place of a
// gathered copy. The same bits as gathering the row and calling the row quantizer: the maximum of
// the same values, then the same element step. A row touching NaN is gathered and quantized the
// ordinary way. Returns the row's scale.
static float quantize_patch(const kernel_table *P, int bits, int32_t qmax, size_t c, size_t h, size_t w_in,
                            size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t wo,
                            const float *x_hwc, const float *pix_amax, size_t p, size_t kp, float *row, void *q) {
    const size_t oy = p / wo, ox = p % wo, k = c * kh * kw, bytes = bits == 8 ? 1 : 2;
    float amax = 0;
    int nan = 0;
    for (size_t ky = 0; ky < kh; ky++) {
        long iy = (long)(oy * sh + ky) - (long)ph;
        if (iy < 0 || iy >= (long)h) continue;
        for (size_t kx = 0; kx < kw; kx++) {
            long ix = (long)(ox * sw + kx) - (long)pw;
            if (ix < 0 || ix >= (long)w_in) continue;
            float a = pix_amax[(size_t)iy * w_in + (size_t)ix];
            nan |= a != a;
            amax = a > amax ? a : amax;
        }
    }
    if (nan) {  // gather the row, then the row quantizer
        gather_patch(c, h, w_in, kh, kw, sh, sw, ph, pw, wo, x_hwc, p, row);
        return P->quantize_row(bits, k, kp, qmax, row, q);
    }
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * bytes);
        return 0;
    }
    const float inv = (float)qmax / amax;
    for (size_t ky = 0; ky < kh; ky++) {
        long iy = (long)(oy * sh + ky) - (long)ph;
        for (size_t kx = 0; kx < kw; kx++) {
            long ix = (long)(ox * sw + kx) - (long)pw;
            char *dst = (char *)q + (ky * kw + kx) * c * bytes;
            if (iy < 0 || iy >= (long)h || ix < 0 || ix >= (long)w_in) memset(dst, 0, c * bytes);
            else P->quantize_span(bits, c, qmax, inv, x_hwc + ((size_t)iy * w_in + (size_t)ix) * c, dst);
        }
    }
    memset((char *)q + k * bytes, 0, (kp - k) * bytes);
    return amax / (float)qmax;
}

int dloral_int_conv2d(const kernel_table *T, int bits, const dloral_conv_geometry *geometry, const float *x_hwc,
                      const dloral_int_layer_weights *weights, float *out, size_t p0, size_t p1,
                      const dloral_int_weights *prepared) {
    const size_t c = geometry->c, h = geometry->h, w_in = geometry->w, kh = geometry->kh, kw = geometry->kw;
    const size_t sh = geometry->sh, sw = geometry->sw, ph = geometry->ph, pw = geometry->pw, ho = geometry->ho,
                 wo = geometry->wo;
    const size_t n = weights->n, kp = weights->kp;
    const int8_t *w = weights->rows;
    const float *w_scales = weights->scales, *bias = weights->bias;
    if (p1 <= p0 || n == 0) return 0;
    const kernel_table *P = T;
    const size_t k = c * kh * kw, bytes = bits == 8 ? 1 : 2, plane = ho * wo;
    const int32_t qmax = dloral_activation_qmax(bits, kp);
    const int direct = kh == 1 && kw == 1 && ph == 0 && pw == 0;
    const size_t rows_per_block = int_layer_block_rows(bits, kp, n);
    struct scratch s;
    if (scratch_alloc(&s, k, rows_per_block, kp, n, bits) != 0) return -1;
    // Per input pixel, max|x| over its channels, for the input rows this range of outputs reads.
    float *pix_amax = NULL;
    if (!direct) {
        pix_amax = malloc(h * w_in * sizeof(float) + 4);
        if (!pix_amax) {
            scratch_free(&s);
            return -1;
        }
        long iy0 = (long)((p0 / wo) * sh) - (long)ph, iy1 = (long)(((p1 - 1) / wo) * sh + kh) - (long)ph;
        if (iy0 < 0) iy0 = 0;
        if (iy1 > (long)h) iy1 = (long)h;
        for (size_t i = (size_t)iy0 * w_in; i < (size_t)(iy1 > iy0 ? iy1 : iy0) * w_in; i++)
            pix_amax[i] = P->pixel_amax(c, x_hwc + i * c);
    }
    dloral_int_weights *own;
    const int8_t *wp = weights_for_call(packing_for(P, bits), prepared, p1 - p0, n, kp, w, &own);
    for (size_t p = p0; p < p1; p += rows_per_block) {
        size_t rows = p1 - p < rows_per_block ? p1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++) {
            void *qr = (char *)s.q + r * kp * bytes;
            if (direct) {
                size_t oy = (p + r) / wo, ox = (p + r) % wo;
                s.sa[r] = P->quantize_row(bits, k, kp, qmax, x_hwc + ((oy * sh) * w_in + ox * sw) * c, qr);
            } else {
                s.sa[r] = quantize_patch(P, bits, qmax, c, h, w_in, kh, kw, sh, sw, ph, pw, wo, x_hwc, pix_amax,
                                         p + r, kp, s.row, qr);
            }
        }
        gemm(P, bits, rows, n, kp, s.q, w, wp, s.acc);
        P->epilogue_conv(rows, n, s.acc, s.sa, w_scales, bias, out, plane, p);
    }
    free(pix_amax);
    dloral_int_weights_free(own);
    scratch_free(&s);
    return 0;
}

int dloral_int_linear(const kernel_table *T, int bits, size_t k, const float *x, size_t ldx, const dloral_int_layer_weights *weights, float *y,
                      size_t ldy, size_t r0, size_t r1, const dloral_int_weights *prepared) {
    const size_t n = weights->n, kp = weights->kp;
    const int8_t *w = weights->rows;
    const float *w_scales = weights->scales, *bias = weights->bias;
    if (r1 <= r0 || n == 0) return 0;
    const kernel_table *P = T;
    const size_t bytes = bits == 8 ? 1 : 2;
    const int32_t qmax = dloral_activation_qmax(bits, kp);
    const size_t rows_per_block = int_layer_block_rows(bits, kp, n);
    struct scratch s;
    if (scratch_alloc(&s, k, rows_per_block, kp, n, bits) != 0) return -1;
    dloral_int_weights *own;
    const int8_t *wp = weights_for_call(packing_for(P, bits), prepared, r1 - r0, n, kp, w, &own);
    for (size_t p = r0; p < r1; p += rows_per_block) {
        size_t rows = r1 - p < rows_per_block ? r1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++)
            s.sa[r] = P->quantize_row(bits, k, kp, qmax, x + (p + r) * ldx, (char *)s.q + r * kp * bytes);
        gemm(P, bits, rows, n, kp, s.q, w, wp, s.acc);
        P->epilogue_linear(rows, n, s.acc, s.sa, w_scales, bias, y + p * ldy, ldy);
    }
    dloral_int_weights_free(own);
    scratch_free(&s);
    return 0;
}

// MARK: - Block scales (§4.3)

// One block of `real` values (the rest of its `block` columns zero): §4.1's rule with qmax 127,
// the row quantizer's bits. Its amax is the path's pixel_amax (the maximum does not depend on the
// order), its elements the path's span; a block holding NaN goes through the row quantizer.
// Returns the block's scale.
static float quantize_block(const kernel_table *P, size_t block, size_t real, const float *x, int8_t *q) {
    float scale;
    if (P->quantize_full_block && real == block && block % 32 == 0 && P->quantize_full_block(block, x, q, &scale)) return scale;
    const float amax = real ? P->pixel_amax(real, x) : 0.0f;
    if (amax != amax) return P->quantize_row(8, real, block, 127, x, q);
    if (row_is_zero(127, amax)) {
        memset(q, 0, block);
        return 0;
    }
    P->quantize_span(8, real, 127, 127.0f / amax, x, q);
    memset(q + real, 0, block - real);
    return amax / 127.0f;
}

static void quantize_blocks(const kernel_table *P, size_t block, size_t k, size_t kp, const float *x, int8_t *q,
                            float *sa) {
    for (size_t b = 0, first = 0; first < kp; b++, first += block) {
        size_t real = k > first ? (k - first < block ? k - first : block) : 0;
        sa[b] = quantize_block(P, block, real, x + first, q + first);
    }
}

void dloral_quantize_row_blocks(const kernel_table *T, size_t block, size_t k, size_t kp, const float *x, int8_t *q, float *sa) {
    const kernel_table *P = T;
    quantize_blocks(P, block, k, kp, x, q, sa);
}

// The block GEMM on the weights prepared with the level's pack_blocks (wp), when there are enough
// rows for it, else on the plain weights.
static void gemm_blocks(const kernel_table *T, size_t m, size_t n, size_t kp, size_t block, const int8_t *a,
                        const float *sa, const int8_t *w, const int8_t *wp, const float *sw, const float *bias,
                        float *y, size_t rs, size_t cs) {
    if (wp && m >= T->pack_blocks.min_rows) T->gemm_blocks_packed(m, n, kp, block, a, sa, w, wp, sw, bias, y, rs, cs);
    else T->gemm_blocks(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
}

void dloral_gemm_i8i8_blocks(const kernel_table *T, size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                             const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs) {
    dloral_int_weights *own;
    const int8_t *wp = weights_for_call(&T->pack_blocks, NULL, m, n, kp, w, &own);
    gemm_blocks(T, m, n, kp, block, a, sa, w, wp, sw, bias, y, rs, cs);
    dloral_int_weights_free(own);
}

// Scratch of one block-scale layer call: a gathered im2col row, the quantized rows and their
// per-block scales.
struct block_scratch {
    float *row;
    int8_t *q;
    float *sa;
};

static int block_scratch_alloc(struct block_scratch *s, size_t k, size_t rows, size_t kp, size_t block) {
    s->row = malloc(k * sizeof(float) + 4);
    s->q = aligned_alloc(64, ((rows * kp + 63) / 64) * 64 + 64);
    s->sa = malloc(rows * (kp / block) * sizeof(float) + 4);
    if (!s->row || !s->q || !s->sa) {
        free(s->row), free(s->q), free(s->sa);
        return -1;
    }
    return 0;
}

static void block_scratch_free(struct block_scratch *s) { free(s->row), free(s->q), free(s->sa); }

// Rows per block of a block-scale layer: the quantized rows within about 512 KiB of L2 (the
// outputs go straight to their destination, so unlike int_layer_block_rows n does not limit
// them), whole 16-row tiles, 16 to 256.
size_t int_layer_block_scale_rows(size_t kp) {
    size_t rows = (512u * 1024u) / (kp + 1);
    rows = rows < 16 ? 16 : rows > 256 ? 256 : rows;
    return rows & ~(size_t)15;
}

int dloral_int_block_conv2d(const kernel_table *T, size_t block, const dloral_conv_geometry *geometry, const float *x_hwc,
                            const dloral_int_layer_weights *weights, float *out, size_t p0, size_t p1,
                            const dloral_int_weights *prepared) {
    const size_t c = geometry->c, h = geometry->h, w_in = geometry->w, kh = geometry->kh, kw = geometry->kw;
    const size_t sh = geometry->sh, sw = geometry->sw, ph = geometry->ph, pw = geometry->pw, ho = geometry->ho,
                 wo = geometry->wo;
    const size_t n = weights->n, kp = weights->kp;
    const int8_t *w = weights->rows;
    const float *w_scales = weights->scales, *bias = weights->bias;
    if (p1 <= p0 || n == 0) return 0;
    if (block == 0 || kp % block != 0) return -2;
    const size_t k = c * kh * kw, plane = ho * wo, nb = kp / block;
    const int direct = kh == 1 && kw == 1 && ph == 0 && pw == 0;
    const size_t rows_per_block = int_layer_block_scale_rows(kp);
    struct block_scratch s;
    if (block_scratch_alloc(&s, k, rows_per_block, kp, block) != 0) return -1;
    const kernel_table *P = T;
    dloral_int_weights *own;
    const int8_t *wp = weights_for_call(&P->pack_blocks, prepared, p1 - p0, n, kp, w, &own);
    // With whole blocks per tap (c a multiple of block, as in every SD layer past the first),
    // each block is quantized where it lies in the input: no gathered copy.
    const int per_tap = !direct && c % block == 0;
    for (size_t p = p0; p < p1; p += rows_per_block) {
        size_t rows = p1 - p < rows_per_block ? p1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++) {
            const size_t oy = (p + r) / wo, ox = (p + r) % wo;
            const float *src = x_hwc + ((oy * sh) * w_in + ox * sw) * c;
            int8_t *qr = s.q + r * kp;
            float *sar = s.sa + r * nb;
            if (per_tap) {
                for (size_t ky = 0, b = 0; ky < kh; ky++) {
                    long iy = (long)(oy * sh + ky) - (long)ph;
                    for (size_t kx = 0; kx < kw; kx++) {
                        long ix = (long)(ox * sw + kx) - (long)pw;
                        const int inside = iy >= 0 && iy < (long)h && ix >= 0 && ix < (long)w_in;
                        const float *tap = inside ? x_hwc + ((size_t)iy * w_in + (size_t)ix) * c : NULL;
                        for (size_t ch = 0; ch < c; ch += block, b++)
                            sar[b] = quantize_block(P, block, tap ? block : 0, tap ? tap + ch : NULL, qr + b * block);
                    }
                }
                memset(qr + k, 0, kp - k);
                for (size_t b = k / block; b < nb; b++) sar[b] = 0;
                continue;
            }
            if (!direct) {  // the im2col row gathered, zero padding included
                gather_patch(c, h, w_in, kh, kw, sh, sw, ph, pw, wo, x_hwc, p + r, s.row);
                src = s.row;
            }
            quantize_blocks(P, block, k, kp, src, qr, sar);
        }
        gemm_blocks(P, rows, n, kp, block, s.q, s.sa, w, wp, w_scales, bias, out + p, 1, plane);
    }
    dloral_int_weights_free(own);
    block_scratch_free(&s);
    return 0;
}

int dloral_int_block_linear(const kernel_table *T, size_t block, size_t k, const float *x, size_t ldx, const dloral_int_layer_weights *weights,
                            float *y, size_t ldy, size_t r0, size_t r1, const dloral_int_weights *prepared) {
    const size_t n = weights->n, kp = weights->kp;
    const int8_t *w = weights->rows;
    const float *w_scales = weights->scales, *bias = weights->bias;
    if (r1 <= r0 || n == 0) return 0;
    if (block == 0 || kp % block != 0) return -2;
    const size_t nb = kp / block, rows_per_block = int_layer_block_scale_rows(kp);
    struct block_scratch s;
    if (block_scratch_alloc(&s, 0, rows_per_block, kp, block) != 0) return -1;
    const kernel_table *P = T;
    dloral_int_weights *own;
    const int8_t *wp = weights_for_call(&P->pack_blocks, prepared, r1 - r0, n, kp, w, &own);
    for (size_t p = r0; p < r1; p += rows_per_block) {
        size_t rows = r1 - p < rows_per_block ? r1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++) quantize_blocks(P, block, k, kp, x + (p + r) * ldx, s.q + r * kp, s.sa + r * nb);
        gemm_blocks(P, rows, n, kp, block, s.q, s.sa, w, wp, w_scales, bias, y + p * ldy, ldy, 1);
    }
    dloral_int_weights_free(own);
    block_scratch_free(&s);
    return 0;
}

void dloral_chw_to_hwc(const kernel_table *T, size_t c, size_t hw, const float *src, float *dst) {
    dloral_chw_to_hwc_pixels(T, c, hw, src, dst, 0, hw);
}

void dloral_chw_to_hwc_pixels(const kernel_table *T, size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end) {
    T->chw_to_hwc(c, hw, src, dst, first, end);
}
