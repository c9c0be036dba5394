// GroupNorm with an optional fused SiLU (dloral_group_norm) and SiLU alone (dloral_silu).
//
// The AVX2, NEON and scalar paths give the same bits: the scalar code performs the vector code's
// operations in the same order (its 8 double accumulators are AVX2's two 4-lane vectors and
// NEON's four 2-lane ones; every multiply-add that is fused in one is fmaf in the others, every
// other operation rounds on its own; the clamps are the same compare-and-select), so a result
// never depends on which path ran or how the caller split the groups. Elementwise steps
// (normalisation, SiLU) do not depend on the vector width: the vector loops finish with the
// scalar code.
//
// Moments: mean = Σx / n and variance = Σ(x − mean)² / n, both summed in double in 8 lanes
// (element i of each full block of 8 into lane i mod 8; the lanes combined as
// ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)); the tail added after in order), as
// torch.nn.functional.group_norm defines them (biased variance), with far less rounding than a
// float sum. rstd = 1 / sqrt(variance + eps) in double; both rounded to float once.
// Normalisation: t = ((x − mean)·rstd)·scale + shift, each operation rounded (no fusion).
// SiLU: t / (1 + exp(−t)) with exp below.
//
// exp(x) (about 1 ulp): +inf above ln(FLT_MAX) as in float (so SiLU of t < −88.72 is −0, as in
// PyTorch), and +0 below −87.3 (where float's own exp is subnormal, under 1.2e-38, or 0: so a
// softmax gives a −inf logit weight 0, and an all −inf row NaN, as PyTorch); otherwise
// n = rint(x·log2 e) in [−126, 128], r = x − n·ln2 (ln 2 in two parts, two fused steps), e^r by a
// degree-7 polynomial (Cephes's expf coefficients, Horner with fused steps), times 2^⌊n/2⌋ and
// then 2^(n − ⌊n/2⌋) (exact scalings built in the exponent bits). NaN passes through.
#include "dloral_kernels.h"
#include "kernel_table.h"
#include "kernels_internal.h"
#include "norm_scalar.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

// MARK: - Entry points

void dloral_group_norm_stats(const kernel_table *T, size_t count, const float *x, float eps, float *mean, float *rstd) {
    double m = 0, variance = 0;
    if (count > 0) T->norm_moments(count, x, &m, &variance);
    *mean = (float)m;
    *rstd = (float)(1.0 / sqrt(variance + (double)eps));
}


void dloral_layer_norm(const kernel_table *T, size_t d, const float *x, const float *weight, const float *bias, float eps, float *y,
                       size_t r0, size_t r1) {
    if (d == 0) return;
    for (size_t r = r0; r < r1; r++) {
        double m = 0, variance = 0;
        T->norm_moments(d, x + r * d, &m, &variance);
        const float mean = (float)m, rstd = (float)(1.0 / sqrt(variance + (double)eps));
        T->layer_affine(d, x + r * d, mean, rstd, weight, bias, y + r * d);
    }
}

void dloral_group_norm_moments(const kernel_table *T, size_t count, const float *x, float *mean, float *variance) {
    double m = 0, v = 0;
    if (count > 0) T->norm_moments(count, x, &m, &v);
    *mean = (float)m;
    *variance = (float)v;
}

void dloral_group_norm_apply(const kernel_table *T, size_t channels, size_t spatial, const float *x, float mean, float rstd,
                             const float *scale, const float *shift, int silu, float *y) {
    if (channels * spatial == 0) return;
    for (size_t c = 0; c < channels; c++) {
        const float s = scale ? scale[c] : 1.0f, b = shift ? shift[c] : 0.0f;
        T->norm_normalize(spatial, x + c * spatial, mean, rstd, s, b, silu, y + c * spatial);
    }
}

void dloral_group_norm(const kernel_table *T, size_t channels, size_t spatial, const float *x, const float *scale, const float *shift,
                       float eps, int silu, float *y) {
    const size_t count = channels * spatial;
    if (count == 0) return;
    float m, rstd;
    dloral_group_norm_stats(T, count, x, eps, &m, &rstd);
    dloral_group_norm_apply(T, channels, spatial, x, m, rstd, scale, shift, silu, y);
}


void dloral_group_norm_nhwc(const kernel_table *T, size_t channels, size_t spatial, const float *x, const float *mean, const float *rstd,
                            const float *scale, const float *shift, int silu, float *y, size_t p0, size_t p1) {
    float t[8 * NHWC_PIXELS];
    for (size_t p = p0; p < p1; p += NHWC_PIXELS) {
        const size_t pixels = p1 - p < NHWC_PIXELS ? p1 - p : NHWC_PIXELS;
        for (size_t c0 = 0; c0 < channels; c0 += 8) {
            const size_t rows = channels - c0 < 8 ? channels - c0 : 8;
            for (size_t j = 0; j < rows; j++) {
                const size_t c = c0 + j;
                T->norm_normalize(pixels, x + c * spatial + p, mean[c], rstd[c], scale ? scale[c] : 1.0f,
                               shift ? shift[c] : 0.0f, silu, t + j * NHWC_PIXELS);
            }
            T->norm_transpose_out(rows, pixels, t, y + p * channels + c0, channels);
        }
    }
}

void dloral_silu(const kernel_table *T, size_t n, const float *x, float *y) { T->silu(n, x, y); }

void dloral_softmax(const kernel_table *T, size_t n, float *p) {
    if (n == 0) return;
    float peak = T->peak(n, p);
    if (peak == -INFINITY) peak = 0;  // all −inf: every e is 0, the sum 0 and the row NaN, as in PyTorch
    const float sum = T->exp_sum(n, p, peak);
    const float inverse = 1.0f / sum;
    for (size_t i = 0; i < n; i++) p[i] = p[i] * inverse;
}

void norm_moments(const kernel_table *T, size_t count, const float *x, double *mean, double *variance) {
    T->norm_moments(count, x, mean, variance);
}

void norm_exp(const kernel_table *T, size_t n, const float *x, float *y) { T->exp(n, x, y); }
