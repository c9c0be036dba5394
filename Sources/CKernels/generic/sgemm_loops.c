// The parts of dloral_sgemm that the tiles' descriptors name (sgemm_loops.h): the loop nest for
// the 6 × 16 tile, the per-thread packing buffers, and the scalar reference tile.
#include "sgemm_loops.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

// Products and sums stay as written (the only fused operations are the explicit fmaf / FMA).
#pragma STDC FP_CONTRACT OFF

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

sgemm_buffers *sgemm_thread_buffers(void) {
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


void sgemm_region_6x16(const sgemm_problem *P, size_t i0, size_t i1, size_t j0, size_t j1) {
    run_region_tiled(P, i0, i1, j0, j1, MR6, NR16, SGEMM_MC, SGEMM_NC);
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

const sgemm_kernel sgemm_kernel_scalar = {.mr = MR6, .nr = NR16, .tile = sgemm_tile_scalar,
                                        .widen = f16_to_f32_scalar, .region = sgemm_region_6x16, .nc = SGEMM_NC};
