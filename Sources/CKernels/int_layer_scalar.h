// The scalar steps of the integer layers' row quantizer and epilogues (generic/int_layer.c):
// every vector path finishes its rows with these, so tails round exactly as the scalar level does.
#ifndef DLORAL_INT_LAYER_SCALAR_H
#define DLORAL_INT_LAYER_SCALAR_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// MARK: - Row quantizer

static inline int32_t clamp_q(int32_t v, int32_t qmax) { return v > qmax ? qmax : (v < -qmax ? -qmax : v); }

// rint(p) clamped to [−qmax, qmax], and −qmax for a NaN product (a NaN input, or an infinite
// one, whose row then has an infinite amax and inv 0): Formats/dlrt.md §4.1, what the x86 vector
// conversions give (NaN converts to INT32_MIN there), written out for the scalar path and NEON.
static inline int32_t round_q(float p, int32_t qmax) { return p != p ? -qmax : clamp_q((int32_t)lrintf(p), qmax); }

// max(amax, |x[i]|) over i in [from, k).
static inline float absmax_from(const float *x, size_t from, size_t k, float amax) {
    for (size_t i = from; i < k; i++) {
        float a = fabsf(x[i]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

// A row quantizes to zeros with scale 0 when its amax is 0 (or NaN) or so small that qmax / amax
// overflows float32 (amax under about 3.7e-37 for int8): Formats/dlrt.md §4.1. Without the second
// case the infinite inverse would make each path round x · inf its own way.
static inline int row_is_zero(int32_t qmax, float amax) {
    return !(amax > 0) || !isfinite((float)qmax / amax);
}

// Quantizes x[from, k) with inv = qmax / amax and zeroes the padding [k, kp); every path finishes
// its rows here, so the tails round exactly as the scalar path does.
static inline void quantize_from(int bits, size_t from, size_t k, size_t kp, int32_t qmax, float inv, const float *x, void *q) {
    if (bits == 8) {
        int8_t *q8 = q;
        for (size_t i = from; i < k; i++) q8[i] = (int8_t)round_q(x[i] * inv, qmax);
        memset(q8 + k, 0, kp - k);
    } else {
        int16_t *q16 = q;
        for (size_t i = from; i < k; i++) q16[i] = (int16_t)round_q(x[i] * inv, qmax);
        memset(q16 + k, 0, (kp - k) * 2);
    }
}

// q[0 … n) = clamp(rint(x · inv)) with a known inverse scale: the element step of the row
// quantizer, for a row gathered in pieces (dloral_int_conv2d). Each path's span gives the bits of
// its row quantizer, element by element.
static inline void quantize_span_scalar(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    quantize_from(bits, 0, n, n, qmax, inv, x, q);
}

// max|x[i]| over i < n for one pixel's channels, or NaN when any x[i] is NaN (the caller then
// quantizes that row the ordinary way). Without NaN the maximum does not depend on the order.
static inline float pixel_amax_scalar(size_t n, const float *x) {
    float amax = 0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a != a) return NAN;
        amax = a > amax ? a : amax;
    }
    return amax;
}

static inline float quantize_row_scalar(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
    float amax = absmax_from(x, 0, k, 0);
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * (bits == 8 ? 1 : 2));
        return 0;
    }
    quantize_from(bits, 0, k, kp, qmax, (float)qmax / amax, x, q);
    return amax / (float)qmax;
}

// MARK: - Epilogues: y = fma((float)acc, sa·sw, bias)

// Conv: acc [rows][n] → out[j·plane + p + r].
static inline void epilogue_conv_scalar(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                 const float *bias, float *out, size_t plane, size_t p) {
    for (size_t j = 0; j < n; j++) {
        float b = bias ? bias[j] : 0.0f, s = sw[j];
        float *o = out + j * plane + p;
        for (size_t r = 0; r < rows; r++) o[r] = fmaf((float)acc[r * n + j], sa[r] * s, b);
    }
}

// Linear: acc [rows][n] → y[(r0 + r)·ldy + j].
static inline void epilogue_linear_scalar(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                   const float *bias, float *y, size_t ldy) {
    for (size_t r = 0; r < rows; r++) {
        float *o = y + r * ldy;
        for (size_t j = 0; j < n; j++) o[j] = fmaf((float)acc[r * n + j], sa[r] * sw[j], bias ? bias[j] : 0.0f);
    }
}

static inline void chw_to_hwc_scalar(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end) {
    // Tiles of 8 channels × 64 pixels keep both sides within a few cache lines.
    for (size_t p0 = first; p0 < end; p0 += 64) {
        size_t p1 = p0 + 64 < end ? p0 + 64 : end;
        for (size_t c0 = 0; c0 < c; c0 += 8) {
            size_t c1 = c0 + 8 < c ? c0 + 8 : c;
            for (size_t p = p0; p < p1; p++)
                for (size_t ch = c0; ch < c1; ch++) dst[p * c + ch] = src[ch * hw + p];
        }
    }
}

#endif
