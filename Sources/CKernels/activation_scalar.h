// The scalar GELU (generic/activation.c describes the arithmetic) and its coefficient tables:
// the vector kernels read the same tables and finish their tails with these functions.
#ifndef DLORAL_ACTIVATION_SCALAR_H
#define DLORAL_ACTIVATION_SCALAR_H

#include "exp_poly.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

#define T_MAX 12.0f
// LOG2E, LN2_HI, LN2_LO and Cephes's expf polynomial (e^r = 1 + r + r²·P(r) on |r| ≤ ln2 / 2):
// exp_poly.h, the same operations as generic/norm.c's exp.

// Intervals 0 and 1 (t < 1) hold Q itself, the others G.
enum { G_DEGREE = 9, G_INTERVALS = 8, Q_INTERVALS = 2 };

// c_i: the centre of interval i (multiples of 2^−12, so t − c_i is exact on the interval).
static const float g_centre[G_INTERVALS] __attribute__((aligned(32))) = {
    0.0f, 0.766845703125f, 1.4755859375f, 2.500732421875f, 3.475830078125f, 4.4638671875f, 5.550537109375f, 8.9892578125f,
};

// C[k][i]: the coefficient of d^k on interval i, Q on intervals 0 and 1, G on the others
// (Tools/fit/gelu_coefficients.py).
static const float g_coef[G_DEGREE + 1][G_INTERVALS] __attribute__((aligned(32))) = {
    {5.000000000e-01f, 2.215866297e-01f, 3.069303036e-01f, 3.533483148e-01f, 3.718966842e-01f, 3.813658357e-01f,
     3.870858252e-01f, 3.941781223e-01f},
    {-3.989422917e-01f, -2.973145247e-01f, 7.223413140e-02f, 2.727962285e-02f, 1.298917364e-02f, 6.975043099e-03f,
     3.928751219e-03f, 1.023662160e-03f},
    {4.382526129e-07f, 1.139971837e-01f, -3.871814162e-02f, -1.148444600e-02f, -4.471518565e-03f, -2.008611336e-03f,
     -9.531158139e-04f, -1.631744817e-04f},
    {6.648419797e-02f, 2.041300386e-02f, 1.707308926e-02f, 4.066634458e-03f, 1.313837478e-03f, 4.987447173e-04f,
     2.009268501e-04f, 2.287778443e-05f},
    {4.282310692e-05f, -2.291296795e-02f, -6.607854273e-03f, -1.285795355e-03f, -3.487676440e-04f, -1.129517914e-04f,
     -3.887441198e-05f, -2.981120815e-06f},
    {-1.013338659e-02f, 4.521403753e-04f, 2.318091691e-03f, 3.735864302e-04f, 8.601680020e-05f, 2.428464904e-05f,
     7.164890576e-06f, 3.688538754e-07f},
    {3.179563500e-04f, 2.997902688e-03f, -7.510963478e-04f, -1.012225403e-04f, -2.040870459e-05f, -4.676309345e-06f,
     -1.270106850e-06f, -4.239484852e-08f},
    {9.054869297e-04f, -3.807114845e-04f, 2.284746879e-04f, 2.604402289e-05f, 4.327300303e-06f, 0.000000000e+00f,
     0.000000000e+00f, 4.874414206e-09f},
    {0.000000000e+00f, -2.874972997e-04f, -6.769334868e-05f, -6.877703981e-06f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, -7.493695109e-10f},
    {0.000000000e+00f, 4.694004383e-05f, 1.709982644e-05f, 1.479502771e-06f, 0.000000000e+00f, 0.000000000e+00f,
     0.000000000e+00f, 8.364604148e-11f},
};

// MARK: - Scalar

static inline float gelu_scalar(float x) {
    const float magnitude = fabsf(x);
    const float t = magnitude < T_MAX ? magnitude : T_MAX;  // the AVX2 min's operand order: NaN → T_MAX
    // E = exp(−t²/2) = 2^n·(1 + p).
    const float s = t * t;
    const float e = fmaf(t, t, -s);
    const float a = -0.5f * s;
    const float n = rintf(a * LOG2E);
    const float r = fmaf(n, -LN2_HI, a) + fmaf(n, -LN2_LO, -0.5f * e);
    const float p = exp_poly_scalar(r);
    // The polynomial of t's interval.
    const float u = t + (t < 1.0f ? t : 1.0f);
    int i = (int)u;
    i = i < G_INTERVALS - 1 ? i : G_INTERVALS - 1;
    const float d = t - g_centre[i];
    float g = g_coef[G_DEGREE][i];
    for (int k = G_DEGREE - 1; k >= 0; k--) g = fmaf(g, d, g_coef[k][i]);
    // n in [−104, 0]: 2^n is a normal float.
    const int32_t bits = ((int32_t)n + 127) << 23;
    float power;
    memcpy(&power, &bits, sizeof power);
    const int direct = i < Q_INTERVALS;
    const float v = fmaf(g, direct ? 0.0f : p, g) * (direct ? t : power);
    const float negative = x < -T_MAX ? -0.0f : -v;
    return x < 0.0f ? negative : x - v;
}

static inline void gelu_run_scalar(size_t n, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = gelu_scalar(x[i]);
}

// One row of GEGLU: y[j] = h[j]·gelu(g[j]).
static inline void geglu_row_scalar(size_t n, const float *h, const float *g, float *y) {
    for (size_t j = 0; j < n; j++) y[j] = h[j] * gelu_scalar(g[j]);
}

static inline void geglu_scalar(size_t rows, size_t half, const float *x, float *y) {
    for (size_t r = 0; r < rows; r++) geglu_row_scalar(half, x + r * 2 * half, x + r * 2 * half + half, y + r * half);
}

#endif
