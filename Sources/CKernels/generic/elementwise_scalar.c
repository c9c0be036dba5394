// Portable fallback. fmaf is correctly rounded, so it equals the hardware FMA paths bit for bit.
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <string.h>

// Products and sums stay separate roundings on every path (no contraction into FMA), so the
// energies below come out bit-identical to the vector paths.
#pragma STDC FP_CONTRACT OFF

static inline uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

void axpy_f32_scalar(size_t n, float a, const float *x, float *y) {
    for (size_t i = 0; i < n; i++) y[i] = fmaf(a, x[i], y[i]);
}

uint16_t f32_to_f16_one(float value) {
    uint32_t u = bits_of(value);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t absu = u & 0x7FFFFFFF;
    if (absu >= 0x7F800000) {  // Inf or NaN (NaN: quiet, keep top payload bits)
        return sign | (absu > 0x7F800000 ? (uint16_t)(0x7E00 | ((absu >> 13) & 0x1FF)) : 0x7C00);
    }
    if (absu >= 0x477FF000) return sign | 0x7C00;  // rounds to ≥ 65520: overflow to Inf
    if (absu < 0x38800000) {  // below the smallest normal half: subnormal or zero
        if (absu < 0x33000000) return sign;  // < 2^-25: rounds to zero (ties to even at 2^-25 → 0)
        uint32_t mantissa = (absu & 0x7FFFFF) | 0x800000;
        int shift = 126 - (int)(absu >> 23);  // 14..24
        uint32_t half = mantissa >> shift;
        uint32_t rest = mantissa & ((1u << shift) - 1);
        uint32_t midpoint = 1u << (shift - 1);
        if (rest > midpoint || (rest == midpoint && (half & 1))) half++;
        return sign | (uint16_t)half;
    }
    uint32_t rebased = absu - 0x38000000;  // exponent 127-15
    uint32_t half = rebased >> 13;
    uint32_t rest = rebased & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return sign | (uint16_t)half;
}

float f16_to_f32_one(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    if (exponent == 0) {
        if (mantissa == 0) return float_of(sign);
        float value = (float)mantissa * 0x1p-24f;  // exact
        return sign ? -value : value;
    }
    // Inf, or NaN made quiet with its payload kept (a signaling NaN gets the quiet bit), as
    // vcvtph2ps and the arm64 FCVT do.
    if (exponent == 31) return float_of(sign | 0x7F800000 | (mantissa << 13) | (mantissa ? 0x400000u : 0));
    return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

uint16_t f32_to_bf16_one(float value) {
    uint32_t u = bits_of(value);
    if ((u & 0x7FFFFFFF) > 0x7F800000) return (uint16_t)((u >> 16) | 0x0040);
    return (uint16_t)((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

void f32_to_f16_scalar(size_t n, const float *src, uint16_t *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_f16_one(src[i]);
}

void f16_to_f32_scalar(size_t n, const uint16_t *src, float *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32_one(src[i]);
}

void f32_to_bf16_scalar(size_t n, const float *src, uint16_t *dst) {
    for (size_t i = 0; i < n; i++) dst[i] = f32_to_bf16_one(src[i]);
}

void quantize_i8_scalar(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]) {
    double signal[8] = {0}, noise[8] = {0};
    for (size_t g = 0; g < groups; g++) {
        const float *x = src + g * group_size;
        float max_abs = 0;
        for (size_t i = 0; i < group_size; i++) {
            float a = fabsf(x[i]);
            if (a > max_abs) max_abs = a;
        }
        float s = max_abs == 0 ? 1.0f : max_abs / 127.0f;
        scales[g] = s;
        for (size_t i = 0; i < group_size; i++) {
            float r = rintf(x[i] / s);
            if (r > 127.0f) r = 127.0f;
            if (r < -127.0f) r = -127.0f;
            q[g * group_size + i] = (int8_t)r;
            float back = r * s;
            double dx = (double)x[i];
            double d = dx - (double)back;
            size_t lane = (g * group_size + i) & 7;
            double sq = dx * dx;
            double nq = d * d;
            signal[lane] = signal[lane] + sq;
            noise[lane] = noise[lane] + nq;
        }
    }
    for (int l = 0; l < 8; l++) {
        energy[0] += signal[l];
        energy[1] += noise[l];
    }
}

void energy_lanes_finish(size_t i, size_t n, const float *ref, const float *approx, double signal[8], double noise[8],
                         double energy[2]) {
    for (; i < n; i++) {
        double dx = (double)ref[i];
        double d = dx - (double)approx[i];
        double sq = dx * dx;
        double nq = d * d;
        signal[i & 7] = signal[i & 7] + sq;
        noise[i & 7] = noise[i & 7] + nq;
    }
    for (int l = 0; l < 8; l++) {
        energy[0] += signal[l];
        energy[1] += noise[l];
    }
}

void error_energy_scalar(size_t n, const float *ref, const float *approx, double energy[2]) {
    double signal[8] = {0}, noise[8] = {0};
    energy_lanes_finish(0, n, ref, approx, signal, noise, energy);
}
