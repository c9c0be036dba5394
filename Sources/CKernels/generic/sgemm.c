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
// and compiled once per tile shape (sgemm_region_6x16, run_region_8x32), so that each shape gets
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernel_table.h"
#include "dloral_thread_pool.h"
#include "sgemm_loops.h"

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

static void run_region(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    P->kernel->region(P, i0, i1, j0, j1);
}

// MARK: - Threads

// A job is C cut into `chunks` contiguous ranges of `chunk_units` units (NR columns when
// split_cols, else MR rows), tasks of the shared pool (dloral_parallel_for) taken first come,
// first served, so that a worker that wakes late or runs on a busy core takes fewer. Each range
// runs the whole loop nest (run_region), so it packs the other operand again: ranges stay wide
// enough to keep that to a few percent.
typedef struct {
    const sgemm_problem *problem;
    int split_cols;
    size_t chunk_units;
} sgemm_job;

static void run_chunk(void *context, size_t chunk) {
    const sgemm_job *job = context;
    const sgemm_problem *P = job->problem;
    const size_t unit = job->split_cols ? P->kernel->nr : P->kernel->mr, extent = job->split_cols ? P->n : P->m;
    size_t lo = chunk * job->chunk_units * unit, hi = lo + job->chunk_units * unit;
    if (hi > extent) hi = extent;
    if (job->split_cols) run_region(P, 0, P->m, lo, hi);
    else run_region(P, lo, hi, 0, P->n);
}

// Runs P on up to `parts` threads (the caller and parts − 1 workers of the pool).
static void pool_run(const sgemm_problem *P, int split_cols, int parts) {
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
    sgemm_job job = {P, split_cols, chunk_units};
    dloral_thread_pool_run(chunks, parts, run_chunk, &job);
}

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
    sgemm_problem P = {.m = m, .n = n, .k = k, .alpha = alpha, .beta = beta, .a = a, .lda = lda, .c = c, .ldc = ldc,
                       .kernel = b->kernel, .packed_b = b->panels};
    if (k == 0 || alpha == 0) {
        scale_c(&P, 0, m, 0, n);
        return;
    }
    run_region(&P, 0, m, 0, n);
}

void sgemm_drive(const sgemm_operands *X, const sgemm_kernel *kernel) {
    const size_t m = X->m, n = X->n, k = X->k;
    if (m == 0 || n == 0) return;
    sgemm_problem P = {.trans_a = X->trans_a != 0, .trans_b = X->trans_b != 0, .m = m, .n = n, .k = k,
                       .alpha = X->alpha, .beta = X->beta, .a = (const float *)X->a, .lda = X->lda,
                       .b = (const float *)X->b, .ldb = X->ldb, .c = X->c, .ldc = X->ldc, .kernel = kernel,
                       .a_half = X->a_half != 0, .b_half = X->b_half != 0, .conv = X->conv};
    if (k == 0 || X->alpha == 0) {  // C = beta·C; A and B are not read
        scale_c(&P, 0, m, 0, n);
        return;
    }
    int split_cols = n >= m;
    size_t units = split_cols ? (n + kernel->nr - 1) / kernel->nr : (m + kernel->mr - 1) / kernel->mr;
    int parts = dloral_threads();
    if ((size_t)parts > units) parts = (int)units;
    if ((double)m * (double)n * (double)k < SGEMM_INLINE_MACS || X->serial) parts = 1;
    if (parts <= 1) run_region(&P, 0, m, 0, n);
    else pool_run(&P, split_cols, parts);
}

// MARK: - Entry points

void dloral_sgemm(const kernel_table *T, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    dloral_sgemm_typed(T, trans_a, trans_b, 0, 0, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void dloral_sgemm_typed(const kernel_table *T, int trans_a, int trans_b, int a_half, int b_half, size_t m, size_t n, size_t k, float alpha,
                        const void *a, size_t lda, const void *b, size_t ldb, float beta, float *c, size_t ldc) {
    const sgemm_operands operands = {.trans_a = trans_a, .trans_b = trans_b, .a_half = a_half, .b_half = b_half,
                                     .m = m, .n = n, .k = k, .alpha = alpha, .a = a, .lda = lda, .b = b, .ldb = ldb,
                                     .beta = beta, .c = c, .ldc = ldc};
    sgemm_drive(&operands, T->sgemm);
}

void sgemm_serial(const kernel_table *T, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc) {
    const sgemm_operands operands = {.trans_a = trans_a, .trans_b = trans_b, .m = m, .n = n, .k = k, .alpha = alpha,
                                     .a = a, .lda = lda, .b = b, .ldb = ldb, .beta = beta, .c = c, .ldc = ldc,
                                     .serial = 1};
    sgemm_drive(&operands, T->sgemm);
}

sgemm_packed *sgemm_pack_b(const kernel_table *T, int trans_b, size_t n, size_t k, const float *b, size_t ldb) {
    if (n == 0) return NULL;
    sgemm_problem P = {.trans_b = trans_b != 0, .n = n, .k = k, .alpha = 1.0f, .b = b, .ldb = ldb,
                       .kernel = T->sgemm};
    return pack_whole_b(&P);
}

void dloral_sconv2d(const kernel_table *T, int w_half, size_t o, const void *weight, const dloral_conv_geometry *g, const float *image,
                    float beta, float *out) {
    const size_t n = g->ho * g->wo, k = g->c * g->kh * g->kw;
    const sgemm_operands operands = {.a_half = w_half, .m = o, .n = n, .k = k, .alpha = 1.0f, .a = weight, .lda = k,
                                     .b = image, .ldb = n, .beta = beta, .c = out, .ldc = n, .conv = g};
    sgemm_drive(&operands, T->sgemm);
}
