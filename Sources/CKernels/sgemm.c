// Single-precision GEMM (dloral_sgemm): Goto/BLIS blocking with packed operands, one shared
// driver, and a register tile per path (AVX2/FMA 6×16, NEON 6×16, scalar fmaf 6×16, AVX-512F
// 8×32).
//
// Arithmetic (the same on every path and for any thread count, tile, MC or NC): k is cut into
// blocks of KC = DLORAL_SGEMM_KC consecutive indices, and for each C element and block in turn
//   S = +0;  for p in the block, increasing:  S = fma(op(A)[i][p], op(B)[p][j], S)
//   first block:  C = beta == 0 ? alpha·S : fma(alpha, S, beta·C)
//   later blocks: C = fma(alpha, S, C)
// (the write-back after each block, in the tile). The work is split over rows or columns of C,
// never over k, and fmaf, vfmadd and fmla all round once, so the bits do not depend on the path
// or DLORAL_THREADS. Summing each block separately keeps the rounding error near that of a
// KC-term sum plus a k/KC-term sum, like BLAS libraries, rather than that of one k-term chain.
//
// Loops (outermost first): jc over NC columns → pc over KC of k (pack B: KC×NC into NR-wide
// slivers) → ic over MC rows (pack A: MC×KC into MR-tall slivers) → jr over NR slivers → ir over
// MR slivers → tile. Edge tiles run on a zero-padded MR×NR scratch tile and write back only the
// valid part. The packed buffers are per thread, allocated once.
//
// Tiles: a path is an sgemm_kernel (its tile function, MR × NR, binary16 converter and loop nest).
// The loop nest and the packing are written once, as always-inline functions of MR, NR, MC and NC,
// and compiled once per tile shape (run_region_6x16, run_region_8x32), so that each shape gets
// packing loops with constant trip counts and strides.
//
// Threads: a pool of persistent workers, created lazily and sleeping on a condition variable
// when idle. A call cuts C into a few wide ranges of NR columns (when n ≥ m) or MR rows
// (otherwise) that the caller and the woken workers take first come, first served; each runs the
// whole loop nest on its range. Small problems run on the caller's thread, as does a call made
// while the pool is busy with another caller's GEMM. Which thread computes an element never
// changes its value.
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

#if defined(__x86_64__)
#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))
#endif

// MARK: - Problem and driver

typedef struct sgemm_problem sgemm_problem;

// A path: its register tile (the function and its shape, MR rows × NR columns of C), its binary16
// converter, and the loop nest compiled for that shape (with its MC and NC).
typedef struct {
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

// The whole result when k or alpha is 0: C = 0 when beta is 0 (C not read), else beta·C.
static void scale_c(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    for (size_t i = i0; i < i1; i++) {
        float *row = P->c + i * P->ldc;
        if (P->beta == 0) {
            for (size_t j = j0; j < j1; j++) row[j] = 0;
        } else {
            for (size_t j = j0; j < j1; j++) row[j] = P->beta * row[j];
        }
    }
}

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

static pthread_key_t buffers_key;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void buffers_free(void *p) {
    sgemm_buffers *buf = p;
    free(buf->a);
    free(buf->b);
    free(buf);
}

static void buffers_key_make(void) {
    if (pthread_key_create(&buffers_key, buffers_free) != 0) {
        fputs("dloral_sgemm: pthread_key_create failed\n", stderr);
        abort();
    }
}

static sgemm_buffers *thread_buffers(void) {
    pthread_once(&buffers_once, buffers_key_make);
    sgemm_buffers *buf = pthread_getspecific(buffers_key);
    if (buf) return buf;
    buf = malloc(sizeof *buf);
    // aligned_alloc wants a multiple of the alignment.
    float *a = aligned_alloc(64, (MC_MAX * KC * sizeof(float) + 63) / 64 * 64);
    float *b = aligned_alloc(64, ((KC * NC_MAX + NC_MAX) * sizeof(float) + 63) / 64 * 64);
    if (!buf || !a || !b || pthread_setspecific(buffers_key, buf) != 0) {
        fputs("dloral_sgemm: out of memory for the packing buffers\n", stderr);
        abort();
    }
    buf->a = a;
    buf->b = b;
    return buf;
}

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
    sgemm_buffers *buf = thread_buffers();
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

static void run_region_6x16(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    run_region_tiled(P, i0, i1, j0, j1, MR6, NR16, SGEMM_MC, SGEMM_NC);
}

#if defined(__x86_64__)
// Runs only where the AVX-512 tile does, so it is compiled for AVX-512 too: the packing copies
// move whole zmm registers (a few percent on the SD shapes). It only moves data; no arithmetic.
AVX512 static void run_region_8x32(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    run_region_tiled(P, i0, i1, j0, j1, MR8, NR32, SGEMM512_MC, SGEMM512_NC);
}
#endif

static void run_region(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    P->kernel->region(P, i0, i1, j0, j1);
}

// MARK: - Thread pool

// A job is C cut into `chunks` contiguous ranges of `chunk_units` units (NR columns when
// split_cols, else MR rows), handed out first come, first served, so that a worker that wakes
// late or runs on a busy core takes fewer. Each range runs the whole loop nest (run_region), so
// it packs the other operand again: ranges stay wide enough to keep that to a few percent.
static struct {
    pthread_mutex_t busy;  // held by the caller whose GEMM the pool is running
    pthread_mutex_t lock;  // guards everything below except `next`
    pthread_cond_t wake;   // workers: a new generation was posted
    pthread_cond_t done;   // caller: active reached 0
    int workers;           // started, numbered 1…workers (the caller is part 0)
    unsigned long generation;
    int open;    // workers may still join the current job
    int active;  // workers working on it
    int parts;   // threads for this job: the caller and the workers numbered below parts
    // The current job; the problem is the caller's, dereferenced only by workers that joined
    // (the caller waits for them to leave).
    const sgemm_problem *problem;
    int split_cols;
    size_t chunk_units, chunks;
    size_t next;  // next chunk to hand out (atomic)
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, NULL, 0, 0, 0, 0};

// Takes chunks of the current job until there are none left.
static void run_chunks(const sgemm_problem *P, int split_cols, size_t chunk_units, size_t chunks) {
    const size_t mr = P->kernel->mr, nr = P->kernel->nr;
    const size_t unit = split_cols ? nr : mr, extent = split_cols ? P->n : P->m;
    for (;;) {
        size_t chunk = __atomic_fetch_add(&pool.next, 1, __ATOMIC_RELAXED);
        if (chunk >= chunks) return;
        size_t lo = chunk * chunk_units * unit, hi = lo + chunk_units * unit;
        if (hi > extent) hi = extent;
        if (split_cols) run_region(P, 0, P->m, lo, hi);
        else run_region(P, lo, hi, 0, P->n);
    }
}

static int forced_threads = 0;  // dloral_threads_force; 0 = automatic
static int auto_threads = 0;    // DLORAL_THREADS, else online CPUs capped at 8; 0 = not read yet

static int thread_count(void) {
    int n = __atomic_load_n(&forced_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
    n = __atomic_load_n(&auto_threads, __ATOMIC_RELAXED);
    if (n > 0) return n;
    const char *env = getenv("DLORAL_THREADS");
    long v = env && *env ? strtol(env, NULL, 10) : 0;
    if (v <= 0) {
        v = sysconf(_SC_NPROCESSORS_ONLN);
        if (v > 8) v = 8;
    }
    if (v < 1) v = 1;
    if (v > SGEMM_MAX_THREADS) v = SGEMM_MAX_THREADS;
    __atomic_store_n(&auto_threads, (int)v, __ATOMIC_RELAXED);
    return (int)v;
}

typedef struct {
    int index;
    unsigned long seen;
} worker_start;

static void *worker_main(void *arg) {
    worker_start start = *(worker_start *)arg;
    free(arg);
    unsigned long seen = start.seen;
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        if (!pool.open || start.index >= pool.parts) continue;  // too late, or not needed
        pool.active++;
        const sgemm_problem *P = pool.problem;
        int split_cols = pool.split_cols;
        size_t chunk_units = pool.chunk_units, chunks = pool.chunks;
        pthread_mutex_unlock(&pool.lock);
        run_chunks(P, split_cols, chunk_units, chunks);
        pthread_mutex_lock(&pool.lock);
        if (--pool.active == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

// In a forked child the workers are gone: start over (the parent's locks may look held).
static void pool_after_fork_child(void) {
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.workers = 0;
    pool.open = 0;
    pool.active = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void atfork_register(void) { pthread_atfork(NULL, NULL, pool_after_fork_child); }

// Starts workers until there are `wanted` (called with pool.lock held); returns how many there are.
static int pool_grow(int wanted) {
    while (pool.workers < wanted) {
        worker_start *start = malloc(sizeof *start);
        if (!start) break;
        start->index = pool.workers + 1;
        start->seen = pool.generation;
        pthread_t thread;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int rc = pthread_create(&thread, &attr, worker_main, start);
        pthread_attr_destroy(&attr);
        if (rc != 0) {
            free(start);
            break;
        }
        pool.workers++;
    }
    return pool.workers;
}

// Runs P on up to `parts` threads (the caller and parts − 1 workers), or on the caller alone when
// the pool is busy with another caller's GEMM.
static void pool_run(const sgemm_problem *P, int split_cols, int parts) {
    if (pthread_mutex_trylock(&pool.busy) != 0) {
        run_region(P, 0, P->m, 0, P->n);
        return;
    }
    // Chunks: a multiple of parts (up to 3 per thread) no narrower than 512 columns or 384 rows,
    // unless that leaves fewer than one per thread.
    const size_t mr = P->kernel->mr, nr = P->kernel->nr;
    const size_t unit = split_cols ? nr : mr, extent = split_cols ? P->n : P->m;
    const size_t units = (extent + unit - 1) / unit, min_units = split_cols ? 512 / nr : 384 / mr;
    size_t per_thread = units / ((size_t)parts * min_units);
    if (per_thread < 1) per_thread = 1;
    if (per_thread > 3) per_thread = 3;
    size_t chunk_units = (units + (size_t)parts * per_thread - 1) / ((size_t)parts * per_thread);
    size_t chunks = (units + chunk_units - 1) / chunk_units;

    pthread_once(&atfork_once, atfork_register);
    pthread_mutex_lock(&pool.lock);
    pool_grow(parts - 1);
    pool.problem = P;
    pool.split_cols = split_cols;
    pool.chunk_units = chunk_units;
    pool.chunks = chunks;
    __atomic_store_n(&pool.next, 0, __ATOMIC_RELAXED);
    pool.parts = parts;
    pool.open = 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    run_chunks(P, split_cols, chunk_units, chunks);

    // All chunks are taken: close the job (a worker waking now has nothing to do) and wait for
    // the workers still on theirs.
    pthread_mutex_lock(&pool.lock);
    pool.open = 0;
    while (pool.active > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pool.problem = NULL;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
}

void dloral_threads_force(int n) {
    if (n > SGEMM_MAX_THREADS) n = SGEMM_MAX_THREADS;
    __atomic_store_n(&forced_threads, n > 0 ? n : 0, __ATOMIC_RELAXED);
}

int dloral_threads(void) { return thread_count(); }

// The floats of B (k × n) packed whole for this kernel: its panels, for jc then pc.
static size_t packed_b_floats(const sgemm_kernel *kernel, size_t n, size_t k) {
    const size_t nr = kernel->nr;
    size_t total = 0;
    for (size_t jc = 0; jc < n; jc += kernel->nc) {
        const size_t nc = n - jc < kernel->nc ? n - jc : kernel->nc;
        for (size_t pc = 0; pc < k; pc += KC) {
            const size_t kc = k - pc < KC ? k - pc : KC;
            total += (nc + nr - 1) / nr * b_stride(kc, nr);
        }
    }
    return total;
}

// Packs P's B whole (run_region_tiled in its packing-only mode); NULL when out of memory.
static sgemm_packed *pack_whole_b(sgemm_problem *P) {
    sgemm_packed *packed = malloc(sizeof *packed);
    const size_t floats = packed_b_floats(P->kernel, P->n, P->k);
    float *panels = aligned_alloc(64, ((floats ? floats : 1) * sizeof(float) + 63) / 64 * 64);
    if (!packed || !panels) {
        free(packed);
        free(panels);
        return NULL;
    }
    *packed = (sgemm_packed){P->kernel, P->n, P->k, panels};
    P->pack_b_into = panels;
    if (P->k > 0) run_region(P, 0, 1, 0, P->n);
    return packed;
}

void sgemm_packed_free(sgemm_packed *packed) {
    if (!packed) return;
    free(packed->panels);
    free(packed);
}

void sgemm_serial_packed(size_t m, float alpha, const float *a, size_t lda, const sgemm_packed *b, float beta, float *c,
                         size_t ldc) {
    const size_t n = b->n, k = b->k;
    if (m == 0 || n == 0) return;
    sgemm_problem P = {0, 0, m, n, k, alpha, beta, a, lda, NULL, 0, c, ldc, b->kernel, 0, 0, NULL, b->panels, NULL};
    if (k == 0 || alpha == 0) {
        scale_c(&P, 0, m, 0, n);
        return;
    }
    run_region(&P, 0, m, 0, n);
}

static void sgemm_drive(const sgemm_operands *X, const sgemm_kernel *kernel) {
    const size_t m = X->m, n = X->n, k = X->k;
    if ((m == 0 && !X->pack_b_into) || n == 0) return;
    sgemm_problem P = {X->trans_a != 0, X->trans_b != 0, m, n, k, X->alpha, X->beta, (const float *)X->a, X->lda,
                       (const float *)X->b, X->ldb, X->c, X->ldc, kernel, X->a_half != 0, X->b_half != 0, X->conv,
                       NULL, NULL};
    if (X->pack_b_into) {
        *X->pack_b_into = pack_whole_b(&P);
        return;
    }
    if (k == 0 || X->alpha == 0) {  // C = beta·C; A and B are not read
        scale_c(&P, 0, m, 0, n);
        return;
    }
    int split_cols = n >= m;
    size_t units = split_cols ? (n + kernel->nr - 1) / kernel->nr : (m + kernel->mr - 1) / kernel->mr;
    int parts = thread_count();
    if ((size_t)parts > units) parts = (int)units;
    if ((double)m * (double)n * (double)k < SGEMM_INLINE_MACS || X->serial) parts = 1;
    if (parts <= 1) run_region(&P, 0, m, 0, n);
    else pool_run(&P, split_cols, parts);
}

// MARK: - Scalar tile

// The reference tile: S[r][j] = fused chain over p < kc of a[p·6 + r]·b[p·16 + j] from +0, then
// C = alpha·S when beta is 0 (C not read), else fma(alpha, S, beta·C).
static void sgemm_tile_scalar(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha, float beta) {
    float acc[MR6][NR16];
    for (size_t r = 0; r < MR6; r++) {
        for (size_t j = 0; j < NR16; j++) acc[r][j] = 0.0f;
    }
    for (size_t p = 0; p < kc; p++, a += MR6, b += NR16) {
        for (size_t r = 0; r < MR6; r++) {
            const float x = a[r];
            for (size_t j = 0; j < NR16; j++) acc[r][j] = fmaf(x, b[j], acc[r][j]);
        }
    }
    for (size_t r = 0; r < MR6; r++) {
        float *row = c + r * ldc;
        if (beta == 0) {
            for (size_t j = 0; j < NR16; j++) row[j] = alpha * acc[r][j];
        } else {
            for (size_t j = 0; j < NR16; j++) row[j] = fmaf(alpha, acc[r][j], beta * row[j]);
        }
    }
}

static const sgemm_kernel kernel_scalar = {MR6, NR16, sgemm_tile_scalar, f16_to_f32_scalar, run_region_6x16, SGEMM_NC};

void sgemm_scalar(const sgemm_operands *X) { sgemm_drive(X, &kernel_scalar); }

// MARK: - AVX2 tile

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

// 12 ymm accumulators (6 rows × 2 halves of 8 columns); per p two loads of B and six broadcasts
// of A. vfmadd231ps rounds once, as fmaf does.
//
// The k loop is inline assembly with the accumulators in registers: SwiftPM compiles C at -O0 in
// debug builds, where the same loop written with intrinsics keeps every vector on the stack and
// runs at 3% of the FMA peak. The assembly is what clang -O2 makes of that intrinsics loop.
#define SGEMM_AVX2_STEP(P)                                          \
    "vmovaps " #P "*64(%[b]), %%ymm12\n\t"                          \
    "vmovaps " #P "*64+32(%[b]), %%ymm13\n\t"                       \
    "vbroadcastss " #P "*24(%[a]), %%ymm14\n\t"                     \
    "vfmadd231ps %%ymm12, %%ymm14, %[c00]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm14, %[c01]\n\t"                      \
    "vbroadcastss " #P "*24+4(%[a]), %%ymm15\n\t"                   \
    "vfmadd231ps %%ymm12, %%ymm15, %[c10]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm15, %[c11]\n\t"                      \
    "vbroadcastss " #P "*24+8(%[a]), %%ymm14\n\t"                   \
    "vfmadd231ps %%ymm12, %%ymm14, %[c20]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm14, %[c21]\n\t"                      \
    "vbroadcastss " #P "*24+12(%[a]), %%ymm15\n\t"                  \
    "vfmadd231ps %%ymm12, %%ymm15, %[c30]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm15, %[c31]\n\t"                      \
    "vbroadcastss " #P "*24+16(%[a]), %%ymm14\n\t"                  \
    "vfmadd231ps %%ymm12, %%ymm14, %[c40]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm14, %[c41]\n\t"                      \
    "vbroadcastss " #P "*24+20(%[a]), %%ymm15\n\t"                  \
    "vfmadd231ps %%ymm12, %%ymm15, %[c50]\n\t"                      \
    "vfmadd231ps %%ymm13, %%ymm15, %[c51]\n\t"

AVX2 static void sgemm_tile_avx2(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha, float beta) {
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    // rax holds kc mod 4 for the tail loop (GCC allows 30 operands, and "+" counts twice).
    __asm__ volatile(
        "mov %[kc], %%rax\n\t"
        "and $3, %%eax\n\t"
        "shr $2, %[kc]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        SGEMM_AVX2_STEP(0)
        SGEMM_AVX2_STEP(1)
        SGEMM_AVX2_STEP(2)
        SGEMM_AVX2_STEP(3)
        "add $96, %[a]\n\t"
        "add $256, %[b]\n\t"
        "dec %[kc]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %%rax, %%rax\n\t"
        "jz 4f\n"
        "3:\n\t"
        SGEMM_AVX2_STEP(0)
        "add $24, %[a]\n\t"
        "add $64, %[b]\n\t"
        "dec %%rax\n\t"
        "jnz 3b\n"
        "4:\n\t"
        : [c00] "+x"(c00), [c01] "+x"(c01), [c10] "+x"(c10), [c11] "+x"(c11), [c20] "+x"(c20), [c21] "+x"(c21),
          [c30] "+x"(c30), [c31] "+x"(c31), [c40] "+x"(c40), [c41] "+x"(c41), [c50] "+x"(c50), [c51] "+x"(c51),
          [a] "+r"(a), [b] "+r"(b), [kc] "+r"(kc)
        :
        : "rax", "xmm12", "xmm13", "xmm14", "xmm15", "cc", "memory");
    // Write-back: C = alpha·S, or fma(alpha, S, beta·C).
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
#define SGEMM_AVX2_OUT(R, LO, HI)                                                                  \
    do {                                                                                          \
        float *row = c + (R) * ldc;                                                               \
        if (beta == 0) {                                                                          \
            _mm256_storeu_ps(row, _mm256_mul_ps(va, LO));                                         \
            _mm256_storeu_ps(row + 8, _mm256_mul_ps(va, HI));                                     \
        } else {                                                                                  \
            _mm256_storeu_ps(row, _mm256_fmadd_ps(va, LO, _mm256_mul_ps(vb, _mm256_loadu_ps(row))));         \
            _mm256_storeu_ps(row + 8, _mm256_fmadd_ps(va, HI, _mm256_mul_ps(vb, _mm256_loadu_ps(row + 8)))); \
        }                                                                                         \
    } while (0)
    SGEMM_AVX2_OUT(0, c00, c01);
    SGEMM_AVX2_OUT(1, c10, c11);
    SGEMM_AVX2_OUT(2, c20, c21);
    SGEMM_AVX2_OUT(3, c30, c31);
    SGEMM_AVX2_OUT(4, c40, c41);
    SGEMM_AVX2_OUT(5, c50, c51);
#undef SGEMM_AVX2_OUT
}
#undef SGEMM_AVX2_STEP

static const sgemm_kernel kernel_avx2 = {MR6, NR16, sgemm_tile_avx2, f16_to_f32_avx2, run_region_6x16, SGEMM_NC};

void sgemm_avx2(const sgemm_operands *X) { sgemm_drive(X, &kernel_avx2); }

// MARK: - AVX-512 tile

// 8 rows × 32 columns: 16 zmm accumulators, row r in zmm(2r) (columns 0–15) and zmm(2r+1)
// (16–31); per p two loads of B (zmm16, zmm17) and eight broadcasts of A (zmm18 and zmm19 in
// turn). vfmadd231ps rounds once, as fmaf does. The whole tile, write-back included, is inline
// assembly: for the reason given at the AVX2 tile, and because 16 read-write accumulator operands
// would count as 32 of the 30 GCC allows in one statement.
//
// 8 rows rather than 12 (24 accumulators, the most that fit with B and the broadcasts): both run
// the k loop at the FMA peak from L1/L2, but the channel counts of the networks (128 … 1280) are
// multiples of 8 and not of 12, and 8 × 32 measured a few percent faster on the SD shapes.
//
// X(P, R, LO, HI, T): row R's accumulators and its broadcast register.
#define SGEMM_512_ROWS(X, P)                                                                         \
    X(P, 0, 0, 1, 18) X(P, 1, 2, 3, 19) X(P, 2, 4, 5, 18) X(P, 3, 6, 7, 19) X(P, 4, 8, 9, 18)         \
    X(P, 5, 10, 11, 19) X(P, 6, 12, 13, 18) X(P, 7, 14, 15, 19)
#define SGEMM_512_ZERO(P, R, LO, HI, T)                   \
    "vpxord %%zmm" #LO ", %%zmm" #LO ", %%zmm" #LO "\n\t" \
    "vpxord %%zmm" #HI ", %%zmm" #HI ", %%zmm" #HI "\n\t"
// Step p + P: S[R] += A[p + P][R] · B[p + P].
#define SGEMM_512_FMA(P, R, LO, HI, T)                       \
    "vbroadcastss " #P "*32+" #R "*4(%[a]), %%zmm" #T "\n\t" \
    "vfmadd231ps %%zmm16, %%zmm" #T ", %%zmm" #LO "\n\t"     \
    "vfmadd231ps %%zmm17, %%zmm" #T ", %%zmm" #HI "\n\t"
#define SGEMM_512_STEP(P)                      \
    "vmovaps " #P "*128(%[b]), %%zmm16\n\t"    \
    "vmovaps " #P "*128+64(%[b]), %%zmm17\n\t" \
    SGEMM_512_ROWS(SGEMM_512_FMA, P)
// Write-back of row R (alpha in zmm16, beta in zmm17), then c moves to the next row:
// C = alpha·S when beta is 0 (C not read), else fma(alpha, S, beta·C).
#define SGEMM_512_OUT0(P, R, LO, HI, T)              \
    "vmulps %%zmm16, %%zmm" #LO ", %%zmm" #LO "\n\t" \
    "vmulps %%zmm16, %%zmm" #HI ", %%zmm" #HI "\n\t" \
    "vmovups %%zmm" #LO ", (%[c])\n\t"               \
    "vmovups %%zmm" #HI ", 64(%[c])\n\t"             \
    "add %[ldc], %[c]\n\t"
#define SGEMM_512_OUT(P, R, LO, HI, T)                \
    "vmulps (%[c]), %%zmm17, %%zmm18\n\t"            \
    "vmulps 64(%[c]), %%zmm17, %%zmm19\n\t"          \
    "vfmadd231ps %%zmm16, %%zmm" #LO ", %%zmm18\n\t" \
    "vfmadd231ps %%zmm16, %%zmm" #HI ", %%zmm19\n\t" \
    "vmovups %%zmm18, (%[c])\n\t"                    \
    "vmovups %%zmm19, 64(%[c])\n\t"                  \
    "add %[ldc], %[c]\n\t"

AVX512 static void sgemm_tile_avx512(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha,
                                     float beta) {
    const size_t ldc_bytes = ldc * sizeof(float);
    const int beta_zero = beta == 0;
    // rax holds kc mod 4 for the tail loop.
    __asm__ volatile(
        SGEMM_512_ROWS(SGEMM_512_ZERO, 0)
        "mov %[kc], %%rax\n\t"
        "and $3, %%eax\n\t"
        "shr $2, %[kc]\n\t"
        "jz 2f\n\t"
        ".p2align 5\n"
        "1:\n\t"
        SGEMM_512_STEP(0)
        SGEMM_512_STEP(1)
        SGEMM_512_STEP(2)
        SGEMM_512_STEP(3)
        "add $128, %[a]\n\t"
        "add $512, %[b]\n\t"
        "dec %[kc]\n\t"
        "jnz 1b\n"
        "2:\n\t"
        "test %%rax, %%rax\n\t"
        "jz 4f\n"
        "3:\n\t"
        SGEMM_512_STEP(0)
        "add $32, %[a]\n\t"
        "add $128, %[b]\n\t"
        "dec %%rax\n\t"
        "jnz 3b\n"
        "4:\n\t"
        "vbroadcastss %[alpha], %%zmm16\n\t"
        "vbroadcastss %[beta], %%zmm17\n\t"
        "test %[beta_zero], %[beta_zero]\n\t"
        "jz 5f\n\t"
        SGEMM_512_ROWS(SGEMM_512_OUT0, 0)
        "jmp 6f\n"
        "5:\n\t"
        SGEMM_512_ROWS(SGEMM_512_OUT, 0)
        "6:\n\t"
        "vzeroupper\n\t"
        : [a] "+r"(a), [b] "+r"(b), [kc] "+r"(kc), [c] "+r"(c)
        : [ldc] "r"(ldc_bytes), [alpha] "m"(alpha), [beta] "m"(beta), [beta_zero] "r"(beta_zero)
        : "rax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "cc", "memory");
}
#undef SGEMM_512_ROWS
#undef SGEMM_512_ZERO
#undef SGEMM_512_FMA
#undef SGEMM_512_STEP
#undef SGEMM_512_OUT0
#undef SGEMM_512_OUT

static const sgemm_kernel kernel_avx512 = {MR8, NR32, sgemm_tile_avx512, f16_to_f32_avx2, run_region_8x32, SGEMM512_NC};

void sgemm_avx512(const sgemm_operands *X) { sgemm_drive(X, &kernel_avx512); }
#endif

// MARK: - NEON tile

#if defined(__aarch64__)
#include <arm_neon.h>

// 24 q-register accumulators (6 rows × 4 quarters of 16 columns); fmla by element is fused.
static void sgemm_tile_neon(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha, float beta) {
    float32x4_t acc[MR6][4];
    for (int r = 0; r < MR6; r++) {
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_f32(0.0f);
    }
    for (size_t p = 0; p < kc; p++, a += MR6, b += NR16) {
        const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
        const float32x4_t a0 = vld1q_f32(a);
        const float32x2_t a4 = vld1_f32(a + 4);
#define SGEMM_NEON_ROW(R, FMA, V, L)              \
        acc[R][0] = FMA(acc[R][0], b0, V, L);      \
        acc[R][1] = FMA(acc[R][1], b1, V, L);      \
        acc[R][2] = FMA(acc[R][2], b2, V, L);      \
        acc[R][3] = FMA(acc[R][3], b3, V, L);
        SGEMM_NEON_ROW(0, vfmaq_laneq_f32, a0, 0)
        SGEMM_NEON_ROW(1, vfmaq_laneq_f32, a0, 1)
        SGEMM_NEON_ROW(2, vfmaq_laneq_f32, a0, 2)
        SGEMM_NEON_ROW(3, vfmaq_laneq_f32, a0, 3)
        SGEMM_NEON_ROW(4, vfmaq_lane_f32, a4, 0)
        SGEMM_NEON_ROW(5, vfmaq_lane_f32, a4, 1)
#undef SGEMM_NEON_ROW
    }
    for (int r = 0; r < MR6; r++) {  // C = alpha·S, or fma(alpha, S, beta·C)
        float *row = c + r * ldc;
        for (int q = 0; q < 4; q++) {
            float32x4_t out = beta == 0 ? vmulq_n_f32(acc[r][q], alpha)
                                        : vfmaq_n_f32(vmulq_n_f32(vld1q_f32(row + 4 * q), beta), acc[r][q], alpha);
            vst1q_f32(row + 4 * q, out);
        }
    }
}

static const sgemm_kernel kernel_neon = {MR6, NR16, sgemm_tile_neon, f16_to_f32_neon, run_region_6x16, SGEMM_NC};

void sgemm_neon(const sgemm_operands *X) { sgemm_drive(X, &kernel_neon); }
#endif
