// The polynomial core of the kernels' exp, shared by generic/norm.c's exp (softmax, SiLU) and
// generic/activation.c's exp(−x²/2) (GELU), so both run the one sequence of operations on every path.
//
// After range reduction x = n·ln 2 + r with |r| ≤ ln2 / 2 (n = rint(x·LOG2E), r from the two-part
// ln 2 below), e^r − 1 = r + r²·P(r), with P Cephes's expf polynomial evaluated by Horner with
// fused steps from EXP_P0, then one fused r + P·(r·r). The scalar, AVX2, AVX-512 and NEON forms
// perform the same operations in the same order, so they give the same bits.
#ifndef DLORAL_EXP_POLY_H
#define DLORAL_EXP_POLY_H

#include <math.h>

#pragma STDC FP_CONTRACT OFF

#define LOG2E 1.44269504088896341f
#define LN2_HI 0.693359375f
#define LN2_LO -2.12194440e-4f
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f

#define EXP_POLY_INLINE static inline __attribute__((always_inline))

// e^r − 1 for the reduced argument r.
EXP_POLY_INLINE float exp_poly_scalar(float r) {
    float p = EXP_P0;
    p = fmaf(p, r, EXP_P1);
    p = fmaf(p, r, EXP_P2);
    p = fmaf(p, r, EXP_P3);
    p = fmaf(p, r, EXP_P4);
    p = fmaf(p, r, EXP_P5);
    return fmaf(p, r * r, r);
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2,fma"))) EXP_POLY_INLINE __m256 exp_poly_avx2(__m256 r) {
    __m256 p = _mm256_set1_ps(EXP_P0);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_P5));
    return _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r);
}

__attribute__((target("avx512f"))) EXP_POLY_INLINE __m512 exp_poly_avx512(__m512 r) {
    __m512 p = _mm512_set1_ps(EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EXP_P5));
    return _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r);
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>

// vfmaq_f32(a, b, c) is a + b·c, rounded once: fmaf(b, c, a).
EXP_POLY_INLINE float32x4_t exp_poly_neon(float32x4_t r) {
    float32x4_t p = vdupq_n_f32(EXP_P0);
    p = vfmaq_f32(vdupq_n_f32(EXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(EXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(EXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(EXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(EXP_P5), p, r);
    return vfmaq_f32(r, p, vmulq_f32(r, r));
}
#endif

#endif
