// The loop nest and packing of dloral_sgemm (generic/sgemm.c describes them), written once as
// always-inline functions of the tile shape and compiled once per shape: generic/sgemm_loops.c for
// the 6 × 16 tile, arch/x86/avx512/sgemm_avx512.c for the 8 × 32 one (with AVX-512 moves).
#ifndef DLORAL_SGEMM_LOOPS_H
#define DLORAL_SGEMM_LOOPS_H

#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

// Products and sums stay as written (the only fused operations are the explicit fmaf / FMA).
#pragma STDC FP_CONTRACT OFF

// The tile of the scalar, AVX2 and NEON paths: 6 rows × 16 columns of C.
#define MR6 6
#define NR16 16
// Cache blocking: a KC×NR sliver of packed B (16 KiB) stays in L1 while the MC×KC block of packed
// A (144 KiB) streams from L2, and the KC×NC panel of packed B (1 MiB) stays in L2 between the MC
// blocks. MC and NC change speed only, never the bits; -D overrides them for tuning. KC is part
// of the result (DLORAL_SGEMM_KC). On a 2-core Xeon with 48 KiB L1d and 2 MiB L2 per core, KC
// 256–512, MC 96–288 and NC 1024–4096 were all within the measurement noise of each other.
#ifndef SGEMM_MC
#define SGEMM_MC 144
#endif
#ifndef SGEMM_NC
#define SGEMM_NC 1024
#endif
#if SGEMM_MC % MR6 != 0 || SGEMM_NC % NR16 != 0
#error "SGEMM_MC must be a multiple of 6 and SGEMM_NC of 16"
#endif

// The AVX-512 tile: 8 rows × 32 columns (16 zmm accumulators). Its KC×NR sliver of B is 32 KiB,
// still inside a 48 KiB L1d; the MC×KC block of A and the KC×NC panel of B are as above.
#define MR8 8
#define NR32 32
#ifndef SGEMM512_MC
#define SGEMM512_MC 144
#endif
#ifndef SGEMM512_NC
#define SGEMM512_NC 1024
#endif
#if SGEMM512_MC % MR8 != 0 || SGEMM512_NC % NR32 != 0
#error "SGEMM512_MC must be a multiple of 8 and SGEMM512_NC of 32"
#endif

#define KC ((size_t)DLORAL_SGEMM_KC)  // part of the arithmetic contract: not a tuning knob
// The largest tile and blocks of any path: sizes of the scratch tile and the packing buffers.
#define MR_MAX 8
#define NR_MAX 32
#define MC_MAX ((size_t)(SGEMM_MC > SGEMM512_MC ? SGEMM_MC : SGEMM512_MC))
#define NC_MAX ((size_t)(SGEMM_NC > SGEMM512_NC ? SGEMM_NC : SGEMM512_NC))

// Below this many multiply-adds a call runs on the caller's thread (waking a worker costs more).
#ifndef SGEMM_INLINE_MACS
#define SGEMM_INLINE_MACS (96.0 * 96.0 * 96.0)
#endif
#define SGEMM_MAX_THREADS 64

// The loop nest and packing, inlined into one function per tile shape.
#define TILED static inline __attribute__((always_inline))

// MARK: - Problem and driver

typedef struct sgemm_problem sgemm_problem;

// A path: its register tile (the function and its shape, MR rows × NR columns of C), its binary16
// converter, and the loop nest compiled for that shape (with its MC and NC).
typedef struct sgemm_kernel {
    size_t mr, nr;
    sgemm_tile_fn tile;
    // Widens binary16 operands exactly to fp32 as they are packed.
    sgemm_widen_fn widen;
    // C rows [i0, i1) × columns [j0, j1), the whole loop nest, on the calling thread.
    void (*region)(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1);
    size_t nc;  // the region's NC (the width of a packed panel of B)
} sgemm_kernel;

struct sgemm_problem {
    int trans_a, trans_b;
    size_t m, n, k;
    float alpha, beta;
    const float *a;
    size_t lda;
    const float *b;
    size_t ldb;
    float *c;
    size_t ldc;
    const sgemm_kernel *kernel;
    // A or B holds IEEE binary16 elements (a, b then point at uint16_t), widened exactly to fp32
    // as they are packed, by the kernel's converter.
    int a_half, b_half;
    // When set, B is not stored: op(B) is the im2col matrix of this convolution's input image
    // (b points at the [C, H, W] image), gathered straight into the packed panels.
    const dloral_conv_geometry *conv;
    // When set, B is this whole packed operand (regions then span all of n): its panels are used
    // as they are, in the order run_region_tiled walks them.
    const float *packed_b;
    // When set, run_region_tiled only packs B, panel after panel, from here on.
    float *pack_b_into;
};

// A whole packed B: the panels run_region_tiled packs, for jc then pc, one after the other.
struct sgemm_packed {
    const sgemm_kernel *kernel;
    size_t n, k;
    float *panels;
};

// Packed B is written a row of k at a time: the pieces of one row go to NR-wide slivers
// b_stride floats apart. At KC·NR floats (a multiple of 4 KiB) they would all fall in the same
// few L1 sets and evict each other; one extra cache line per sliver spreads them.
// (Slivers stay 64-byte aligned for NR a multiple of 16; at most NC / 16 of them in a panel.)
TILED size_t b_stride(size_t kc, size_t nr) { return kc * nr + 16; }

// Widening binary16 to fp32 is exact, so packing a half operand gives the same packed floats as
// packing its widened copy: the result is that of dloral_sgemm on the widened matrix.
#define HALF_PIECE 64  // halves widened at a time into a stack buffer


TILED void pack_half(const uint16_t *src, size_t ld, int lanes_contiguous, size_t lane0, size_t lanes, size_t p0,
                     size_t kc, size_t width, size_t stride, sgemm_widen_fn widen, float *dst);

// Packs rows [i0, i0+mc) × columns [p0, p0+kc) of op(A) into MR-tall slivers:
// dst[s·MR·kc + p·MR + r] = op(A)[i0 + s·MR + r][p0 + p], zero past row m.
TILED void pack_a(const sgemm_problem *P, size_t i0, size_t mc, size_t p0, size_t kc, float *dst, const size_t mr) {
    const size_t lda = P->lda;
    if (P->a_half) {
        pack_half((const uint16_t *)P->a, lda, P->trans_a, i0, mc, p0, kc, mr, mr * kc, P->kernel->widen, dst);
        return;
    }
    for (size_t s = 0; s < mc; s += mr) {
        size_t rows = mc - s < mr ? mc - s : mr;
        float *d = dst + s * kc;
        if (P->trans_a) {  // op(A)[i][p] = a[p·lda + i]: MR contiguous floats per p
            const float *src = P->a + p0 * lda + i0 + s;
            if (rows == mr) {
                for (size_t p = 0; p < kc; p++, src += lda, d += mr) {
                    for (size_t r = 0; r < mr; r++) d[r] = src[r];
                }
            } else {
                for (size_t p = 0; p < kc; p++, src += lda, d += mr) {
                    size_t r = 0;
                    for (; r < rows; r++) d[r] = src[r];
                    for (; r < mr; r++) d[r] = 0;
                }
            }
        } else {  // op(A)[i][p] = a[i·lda + p]: interleave MR rows
            const float *src = P->a + (i0 + s) * lda + p0;
            if (rows == mr) {
                // Rows of A are read in short pieces: fetch the next sliver's while packing this one.
                const float *ahead = s + 2 * mr <= mc ? src + mr * lda : NULL;
                for (size_t q = 0; q < kc; q += 16) {
                    if (ahead) {
                        for (size_t r = 0; r < mr; r++) __builtin_prefetch(ahead + r * lda + q);
                    }
                    const size_t end = q + 16 < kc ? q + 16 : kc;
                    for (size_t p = q; p < end; p++, d += mr) {
                        for (size_t r = 0; r < mr; r++) d[r] = src[r * lda + p];
                    }
                }
            } else {
                for (size_t p = 0; p < kc; p++, d += mr) {
                    size_t r = 0;
                    for (; r < rows; r++) d[r] = src[r * lda + p];
                    for (; r < mr; r++) d[r] = 0;
                }
            }
        }
    }
}

TILED void pack_b_conv(const sgemm_problem *P, size_t p0, size_t kc, size_t j0, size_t nc, float *dst,
                       const size_t nr);

// Packs rows [p0, p0+kc) × columns [j0, j0+nc) of op(B) into NR-wide slivers:
// dst[s·b_stride(kc, NR) + p·NR + c] = op(B)[p0 + p][j0 + s·NR + c], zero past column n.
TILED void pack_b(const sgemm_problem *P, size_t p0, size_t kc, size_t j0, size_t nc, float *dst, const size_t nr) {
    const size_t ldb = P->ldb;
    if (P->conv) {
        pack_b_conv(P, p0, kc, j0, nc, dst, nr);
        return;
    }
    if (P->b_half) {
        pack_half((const uint16_t *)P->b, ldb, !P->trans_b, j0, nc, p0, kc, nr, b_stride(kc, nr), P->kernel->widen, dst);
        return;
    }
    const size_t stride = b_stride(kc, nr);
    if (!P->trans_b) {  // op(B)[p][j] = b[p·ldb + j]: read B row by row (sequential streams)
        const size_t full = nc / nr, cols = nc - full * nr;
        const float *src = P->b + p0 * ldb + j0;
        for (size_t p = 0; p < kc; p++, src += ldb) {
            float *d = dst + p * nr;
            for (size_t s = 0; s < full; s++) memcpy(d + s * stride, src + s * nr, nr * sizeof(float));
            if (cols) {
                memcpy(d + full * stride, src + full * nr, cols * sizeof(float));
                memset(d + full * stride + cols, 0, (nr - cols) * sizeof(float));
            }
        }
        return;
    }
    for (size_t s = 0; s < nc; s += nr) {  // op(B)[p][j] = b[j·ldb + p]: gather NR rows of b
        size_t cols = nc - s < nr ? nc - s : nr;
        float *d = dst + s / nr * stride;
        const float *src = P->b + (j0 + s) * ldb + p0;
        size_t c = 0;
        for (; c + 4 <= cols; c += 4) {
            const float *s0 = src + c * ldb, *s1 = s0 + ldb, *s2 = s1 + ldb, *s3 = s2 + ldb;
            float *dc = d + c;
            for (size_t p = 0; p < kc; p++, dc += nr) {
                dc[0] = s0[p];
                dc[1] = s1[p];
                dc[2] = s2[p];
                dc[3] = s3[p];
            }
        }
        for (; c < cols; c++) {
            const float *sc = src + c * ldb;
            for (size_t p = 0; p < kc; p++) d[p * nr + c] = sc[p];
        }
        for (; c < nr; c++) {
            for (size_t p = 0; p < kc; p++) d[p * nr + c] = 0;
        }
    }
}

// pack_a / pack_b for a binary16 operand: the same layout, widened a piece at a time. The
// operand is seen as `lanes` lanes (rows of op(A), or columns of op(B)) from lane0, cut into
// slivers of `width` (MR or NR) `stride` floats apart: dst[s·stride + p·width + l] = element
// (lane0 + s·width + l, p0 + p), zero past the last lane. That element is src[(p0 + p)·ld + lane]
// when a sliver's lanes are contiguous in memory for each p (trans_a for A, !trans_b for B), else
// src[lane·ld + p0 + p].
TILED void pack_half(const uint16_t *src, size_t ld, int lanes_contiguous, size_t lane0, size_t lanes, size_t p0,
                     size_t kc, size_t width, size_t stride, sgemm_widen_fn widen, float *dst) {
    float piece[HALF_PIECE];
    for (size_t s = 0; s < lanes; s += width) {
        const size_t valid = lanes - s < width ? lanes - s : width;
        float *d = dst + s / width * stride;
        if (lanes_contiguous) {  // `valid` contiguous halves per p
            for (size_t p = 0; p < kc; p++, d += width) {
                widen(valid, src + (p0 + p) * ld + lane0 + s, piece);
                size_t l = 0;
                for (; l < valid; l++) d[l] = piece[l];
                for (; l < width; l++) d[l] = 0;
            }
        } else {  // each lane is a stored row: widen a piece of it, interleave
            for (size_t l = 0; l < width; l++) {
                if (l >= valid) {
                    for (size_t p = 0; p < kc; p++) d[p * width + l] = 0;
                    continue;
                }
                const uint16_t *row = src + (lane0 + s + l) * ld + p0;
                for (size_t q = 0; q < kc; q += HALF_PIECE) {
                    const size_t len = kc - q < HALF_PIECE ? kc - q : HALF_PIECE;
                    widen(len, row + q, piece);
                    for (size_t p = 0; p < len; p++) d[(q + p) * width + l] = piece[p];
                }
            }
        }
    }
}

// pack_b for a convolution (implicit GEMM): op(B)[p][j] with p = (ch·kh + i)·kw + t (the weight's
// [C, kh, kw] order) and j = oy·wo + ox (output pixels, row-major) is the input pixel
// (oy·sh − ph + i, ox·sw − pw + t) of channel ch, or 0 in the padding: the im2col matrix, packed
// without being stored. Pixels are taken an output row at a time; at stride 1 the inside of a row
// is one contiguous run of the input row, copied in pieces that end at the NR-wide sliver edges.
TILED void pack_b_conv(const sgemm_problem *P, size_t p0, size_t kc, size_t j0, size_t nc, float *dst,
                       const size_t nr) {
    const dloral_conv_geometry *g = P->conv;
    const float *image = P->b;
    const size_t taps = g->kh * g->kw, stride = b_stride(kc, nr);
    for (size_t p = 0; p < kc; p++) {
        const size_t row = p0 + p, ch = row / taps, i = row % taps / g->kw, t = row % g->kw;
        const float *plane = image + ch * g->h * g->w;
        float *d = dst + p * nr;  // + sliver·stride + column
        size_t jj = 0;            // pixel index within [j0, j0 + nc)
        while (jj < nc) {
            const size_t j = j0 + jj, oy = j / g->wo, ox0 = j % g->wo;
            size_t run = g->wo - ox0;
            if (run > nc - jj) run = nc - jj;
            const long iy = (long)(oy * g->sh) - (long)g->ph + (long)i;
            // Output pixels ox of this row read input column ox·sw − pw + t; inside the image for
            // ox in [lo, hi).
            size_t lo = ox0, hi = ox0 + run;
            if (iy < 0 || iy >= (long)g->h) {
                hi = lo;  // the whole run is padding
            } else {
                while (lo < hi && (long)(lo * g->sw) - (long)g->pw + (long)t < 0) lo++;
                while (hi > lo && (long)((hi - 1) * g->sw) - (long)g->pw + (long)t >= (long)g->w) hi--;
            }
            const float *src = iy >= 0 && iy < (long)g->h ? plane + (size_t)iy * g->w : NULL;
            size_t ox = ox0;
            while (ox < ox0 + run) {
                // Up to the end of the current sliver, of the padding / inside stretch, and of the run.
                const size_t at = jj + (ox - ox0), column = at % nr;
                float *out = d + at / nr * stride + column;
                size_t end = ox + (nr - column);
                const size_t stretch = ox < lo ? lo : ox < hi ? hi : ox0 + run;
                if (end > stretch) end = stretch;
                const size_t count = end - ox;
                if (ox < lo || ox >= hi) {
                    memset(out, 0, count * sizeof(float));
                } else if (g->sw == 1) {
                    // Mostly whole slivers: a copy of constant size, inlined (a libc call per
                    // sliver costs as much as the copy).
                    const float *in = src + ox - g->pw + t;
                    if (count == nr) memcpy(out, in, nr * sizeof(float));
                    else memcpy(out, in, count * sizeof(float));
                } else {
                    for (size_t q = 0; q < count; q++) out[q] = src[(ox + q) * g->sw - g->pw + t];
                }
                ox = end;
            }
            jj += run;
        }
        // Zero the columns of the last sliver past nc.
        if (nc % nr) {
            float *out = d + nc / nr * stride + nc % nr;
            memset(out, 0, (nr - nc % nr) * sizeof(float));
        }
    }
}

// Per-thread packing buffers (aligned to 64 bytes), allocated on first use and freed when the
// thread exits; big enough for every kernel's blocks.
typedef struct {
    float *a;  // MC × KC
    float *b;  // KC × NC, NR-wide slivers b_stride apart
} sgemm_buffers;

// The calling thread's packing buffers (generic/sgemm_loops.c).
sgemm_buffers *sgemm_thread_buffers(void);

// One mc × nc block of C from packed A (mc × kc) and packed B (kc × nc), written back with beta
// (the caller's beta for the first k block, 1 for the others).
TILED void macro_kernel(const sgemm_problem *P, size_t kc, size_t mc, size_t nc, const float *pa, const float *pb,
                        float *c, float beta, const size_t mr, const size_t nr) {
    const size_t ldc = P->ldc;
    const sgemm_tile_fn tile = P->kernel->tile;
    for (size_t jr = 0; jr < nc; jr += nr) {
        size_t cols = nc - jr < nr ? nc - jr : nr;
        const float *b = pb + jr / nr * b_stride(kc, nr);
        for (size_t ir = 0; ir < mc; ir += mr) {
            size_t rows = mc - ir < mr ? mc - ir : mr;
            const float *a = pa + ir * kc;
            float *ct = c + ir * ldc + jr;
            // The tile ends by reading or writing C, which is mostly out of cache: fetch the
            // next tile's rows while this one computes (every 64-byte line of an NR-float row).
            float *next = ir + mr < mc ? ct + mr * ldc : jr + nr < nc ? c + jr + nr : NULL;
            if (next) {
                size_t next_rows = ir + mr < mc ? (mc - ir - mr < mr ? mc - ir - mr : mr) : (mc < mr ? mc : mr);
                for (size_t r = 0; r < next_rows; r++) {
                    for (size_t j = 0; j < nr; j += 16) __builtin_prefetch(next + r * ldc + j, 1);
                    __builtin_prefetch(next + r * ldc + nr - 1, 1);
                }
            }
            if (rows == mr && cols == nr) {
                tile(kc, a, b, ct, ldc, P->alpha, beta);
            } else {
                float t[MR_MAX * NR_MAX] __attribute__((aligned(64)));
                if (beta != 0) {
                    memset(t, 0, mr * nr * sizeof(float));
                    for (size_t r = 0; r < rows; r++) memcpy(t + r * nr, ct + r * ldc, cols * sizeof(float));
                }
                tile(kc, a, b, t, nr, P->alpha, beta);
                for (size_t r = 0; r < rows; r++) memcpy(ct + r * ldc, t + r * nr, cols * sizeof(float));
            }
        }
    }
}

// The whole loop nest on C rows [i0, i1) × columns [j0, j1), on the calling thread, for an
// MR × NR tile with MC × NC blocks.
TILED void run_region_tiled(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1, const size_t mr,
                            const size_t nr, const size_t mc_block, const size_t nc_block) {
    if (i0 >= i1 || j0 >= j1) return;
    sgemm_buffers *buf = sgemm_thread_buffers();
    size_t panel = 0;  // floats of the whole packed B before this panel
    for (size_t jc = j0; jc < j1; jc += nc_block) {
        size_t nc = j1 - jc < nc_block ? j1 - jc : nc_block;
        for (size_t pc = 0; pc < P->k; pc += KC) {
            size_t kc = P->k - pc < KC ? P->k - pc : KC;
            const float *pb = buf->b;
            if (P->pack_b_into) {  // packing only
                pack_b(P, pc, kc, jc, nc, P->pack_b_into + panel, nr);
                panel += (nc + nr - 1) / nr * b_stride(kc, nr);
                continue;
            }
            if (P->packed_b) {
                pb = P->packed_b + panel;
                panel += (nc + nr - 1) / nr * b_stride(kc, nr);
            } else {
                pack_b(P, pc, kc, jc, nc, buf->b, nr);
            }
            const float beta = pc == 0 ? P->beta : 1.0f;
            for (size_t ic = i0; ic < i1; ic += mc_block) {
                size_t mc = i1 - ic < mc_block ? i1 - ic : mc_block;
                pack_a(P, ic, mc, pc, kc, buf->a, mr);
                macro_kernel(P, kc, mc, nc, buf->a, pb, P->c + ic * P->ldc + jc, beta, mr, nr);
            }
        }
    }
}

// The loop nest for the 6 × 16 tile (generic/sgemm_loops.c).
void sgemm_region_6x16(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1);
// dloral_sgemm_typed's operands on `kernel` (generic/sgemm.c).
void sgemm_drive(const sgemm_operands *X, const sgemm_kernel *kernel);

// The tiles (each with its loop nest): the scalar one (generic/sgemm_loops.c), AVX2 and AVX-512
// (arch/x86/…), NEON (arch/arm/neon).
extern const sgemm_kernel sgemm_kernel_scalar;
#if defined(__x86_64__)
extern const sgemm_kernel sgemm_kernel_avx2, sgemm_kernel_avx512;
#elif defined(__aarch64__)
extern const sgemm_kernel sgemm_kernel_neon;
#endif

#endif
