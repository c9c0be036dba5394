// The scalar GroupNorm / SiLU / softmax steps (generic/norm.c), in the order every vector path
// performs them: the vector kernels finish their tails with these, so tails round as the
// scalar level does. The arithmetic is described in generic/norm.c.
#ifndef DLORAL_NORM_SCALAR_H
#define DLORAL_NORM_SCALAR_H

#include "exp_poly.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

// The float just above ln(FLT_MAX) = 88.722839052…: exp of anything larger is +inf by the select
// below; exp(EXP_HI) itself overflows to +inf in the final scaling (e^r·2^128 with r > 0).
#define EXP_HI 88.72283935546875f
#define EXP_LO -87.3f

// MARK: - Scalar

static inline float exp_scalar(float input) {
    // min/max in the AVX2 operand order: a NaN x is returned as it is.
    float x = EXP_HI < input ? EXP_HI : input;
    x = EXP_LO > x ? EXP_LO : x;
    const float n = rintf(x * LOG2E);
    float r = fmaf(n, -LN2_HI, x);
    r = fmaf(n, -LN2_LO, r);
    const float y = exp_poly_scalar(r) + 1.0f;
    // n in [−126, 128]; for a NaN x the conversion gives garbage, and y is NaN anyway.
    const int32_t ni = (int32_t)n, half = ni >> 1;
    const int32_t bits1 = (half + 127) << 23, bits2 = (ni - half + 127) << 23;
    float scale1, scale2;
    memcpy(&scale1, &bits1, sizeof scale1);
    memcpy(&scale2, &bits2, sizeof scale2);
    const float result = (y * scale1) * scale2;
    const float high = input > EXP_HI ? INFINITY : result;
    return input < EXP_LO ? 0.0f : high;
}

static inline float silu_scalar(float t) { return t / (1.0f + exp_scalar(-t)); }

static inline double lanes_sum_scalar(const double lane[8]) {
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

static inline void moments_scalar(size_t count, const float *x, double *mean, double *variance) {
    const size_t full = count / 8 * 8;
    double lane[8] = {0};
    for (size_t i = 0; i < full; i += 8) {
        for (int l = 0; l < 8; l++) lane[l] = lane[l] + (double)x[i + l];
    }
    double sum = lanes_sum_scalar(lane);
    for (size_t i = full; i < count; i++) sum = sum + (double)x[i];
    const double m = sum / (double)count;
    memset(lane, 0, sizeof lane);
    for (size_t i = 0; i < full; i += 8) {
        for (int l = 0; l < 8; l++) {
            const double d = (double)x[i + l] - m;
            lane[l] = lane[l] + d * d;
        }
    }
    double squares = lanes_sum_scalar(lane);
    for (size_t i = full; i < count; i++) {
        const double d = (double)x[i] - m;
        squares = squares + d * d;
    }
    *mean = m;
    *variance = squares / (double)count;
}

static inline void normalize_scalar(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
                             float *y) {
    for (size_t i = 0; i < n; i++) {
        float t = (x[i] - mean) * rstd;
        t = t * scale + shift;
        y[i] = silu ? silu_scalar(t) : t;
    }
}

static inline void silu_run_scalar(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = silu_scalar(x[i]);
}

static inline void exp_run_scalar(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = exp_scalar(x[i]);
}

// Softmax's middle pass: p[i] = exp(p[i] − shift), returning Σ p[i] summed in 16 float lanes
// (element i of each full block of 16 into lane i mod 16; lane l + lane l+8 for l < 8, then
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)); the tail added after in order).
static inline float exp_sum_tail(size_t from, size_t n, float *p, float shift, float sum) {
    for (size_t i = from; i < n; i++) {
        p[i] = exp_scalar(p[i] - shift);
        sum = sum + p[i];
    }
    return sum;
}

// Softmax's first pass: the largest p[i] (`p[i] > peak` passes over NaN), −inf for none. The
// result does not depend on the order (up to the sign of a zero maximum, which no exp(x − m)
// can tell apart), so the vector paths compare lane by lane.
static inline float peak_scalar(size_t n, const float *p) {
    float peak = -INFINITY;
    for (size_t i = 0; i < n; i++) peak = p[i] > peak ? p[i] : peak;
    return peak;
}

// The 16 lanes of exp_sum combined: lane l + lane l+8 into 8, then
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
static inline float lanes16_sum(const float lane[16]) {
    float v[8];
    for (int l = 0; l < 8; l++) v[l] = lane[l] + lane[l + 8];
    return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline float exp_sum_scalar(size_t n, float *p, float shift) {
    const size_t full = n / 16 * 16;
    float lane[16] = {0};
    for (size_t i = 0; i < full; i += 16) {
        for (int l = 0; l < 16; l++) {
            p[i + l] = exp_scalar(p[i + l] - shift);
            lane[l] = lane[l] + p[i + l];
        }
    }
    return exp_sum_tail(full, n, p, shift, lanes16_sum(lane));
}

// LayerNorm's elementwise step: y = ((x − mean)·rstd)·w[j] + b[j], each operation rounded (w, b
// NULL for 1, 0: the step is then skipped, which rounds the same).
static inline void layer_affine_scalar(size_t n, const float *x, float mean, float rstd, const float *w, const float *b,
                                float *y) {
    for (size_t j = 0; j < n; j++) {
        float t = (x[j] - mean) * rstd;
        if (w) t = t * w[j];
        if (b) t = t + b[j];
        y[j] = t;
    }
}


// Pixels per block of dloral_group_norm_nhwc: 8 channels × 256 pixels of normalised values (8 KiB)
// wait in L1 for their transposition. Each channel is read in runs of 1 KiB: with 64 pixels the
// runs were too short for the prefetcher and the fused pass was slower than GroupNorm and a
// transpose apart (107 against 101 ms for 128 × 512²; 78 ms with 256).
enum { NHWC_PIXELS = 256 };

// y[p·ldy + j] = t[j·NHWC_PIXELS + p] for p < pixels, j < rows (rows ≤ 8).
static inline void transpose_out_scalar(size_t rows, size_t pixels, const float *t, float *y, size_t ldy) {
    for (size_t p = 0; p < pixels; p++)
        for (size_t j = 0; j < rows; j++) y[p * ldy + j] = t[j * NHWC_PIXELS + p];
}

#endif
