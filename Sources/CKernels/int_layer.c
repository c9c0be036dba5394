// Integer Conv2d / Linear layers (dloral_int_layer.h): per-row activation quantization, integer
// GEMM, fused dequantization with bias. One driver for every path (scalar, AVX2, NEON); only the
// row quantizer, the GEMM and the epilogue differ, and they give the same bits on every path
// (checked by Tools/neon/kernel_check.c, for NEON under qemu-user).
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include "kernels_internal.h"
#include "transpose_avx2.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int32_t dloral_activation_qmax(int bits, size_t kp) {
    if (bits == 8) return 127;
    if (kp == 0) return 32767;
    // Largest q with kp·q·127 ≤ 2^31 − 1.
    uint64_t q = (uint64_t)2147483647u / ((uint64_t)kp * 127u);
    return q > 32767 ? 32767 : (int32_t)q;
}

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
static void quantize_span_scalar(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    quantize_from(bits, 0, n, n, qmax, inv, x, q);
}

// max|x[i]| over i < n for one pixel's channels, or NaN when any x[i] is NaN (the caller then
// quantizes that row the ordinary way). Without NaN the maximum does not depend on the order.
static float pixel_amax_scalar(size_t n, const float *x) {
    float amax = 0;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a != a) return NAN;
        amax = a > amax ? a : amax;
    }
    return amax;
}

static float quantize_row_scalar(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
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
static void epilogue_conv_scalar(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                 const float *bias, float *out, size_t plane, size_t p) {
    for (size_t j = 0; j < n; j++) {
        float b = bias ? bias[j] : 0.0f, s = sw[j];
        float *o = out + j * plane + p;
        for (size_t r = 0; r < rows; r++) o[r] = fmaf((float)acc[r * n + j], sa[r] * s, b);
    }
}

// Linear: acc [rows][n] → y[(r0 + r)·ldy + j].
static void epilogue_linear_scalar(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                   const float *bias, float *y, size_t ldy) {
    for (size_t r = 0; r < rows; r++) {
        float *o = y + r * ldy;
        for (size_t j = 0; j < n; j++) o[j] = fmaf((float)acc[r * n + j], sa[r] * sw[j], bias ? bias[j] : 0.0f);
    }
}

// MARK: - AVX2

#if defined(__x86_64__)
#include <immintrin.h>
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static void quantize_span_avx2(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    const __m256 vinv = _mm256_set1_ps(inv);
    const __m256i hi = _mm256_set1_epi32(qmax), lo = _mm256_set1_epi32(-qmax);
    size_t i = 0;
    if (bits == 8) {
        // 32 at a time: the saturating packs (int32 → int16 → int8) clamp to [−128, 127], one
        // vpmaxsb makes it [−127, 127] = clamp(·, −qmax, qmax), and vpermd puts the 32 bytes
        // (interleaved by the in-lane packs) back in order for one store.
        const __m256i floor8 = _mm256_set1_epi8(-127), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (; i + 32 <= n; i += 32) {
            __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
            __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), vinv));
            __m256i v2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 16), vinv));
            __m256i v3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 24), vinv));
            __m256i p8 = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
            p8 = _mm256_max_epi8(_mm256_permutevar8x32_epi32(p8, order), floor8);
            _mm256_storeu_si256((__m256i *)((int8_t *)q + i), p8);
        }
    }
    const size_t nv = n & ~(size_t)7;
    for (; i < nv; i += 8) {
        // cvtps2dq rounds half to even (MXCSR default), as lrintf does.
        __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
        v = _mm256_max_epi32(_mm256_min_epi32(v, hi), lo);
        __m256i p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(v, v), 0x08);  // 8 × int16 in the low half
        if (bits == 8) {
            __m128i p8 = _mm_packs_epi16(_mm256_castsi256_si128(p16), _mm256_castsi256_si128(p16));
            _mm_storel_epi64((__m128i *)((int8_t *)q + i), p8);
        } else {
            _mm_storeu_si128((__m128i *)((int16_t *)q + i), _mm256_castsi256_si128(p16));
        }
    }
    quantize_from(bits, nv, n, n, qmax, inv, x, q);
}

// One whole block of §4.3 (block a multiple of 32, every column real): amax in vector lanes,
// then quantize_span_avx2's element step with 127 / amax: the bits of the row quantizer on the
// block. Returns 0, writing nothing, when the block holds a NaN (the caller then takes the row
// quantizer), else 1 with the block's scale in *scale.
AVX2 static int quantize_full_block_avx2(size_t block, const float *x, int8_t *q, float *scale) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 m0 = _mm256_setzero_ps(), m1 = m0, nan = m0;
    for (size_t i = 0; i < block; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(m0, _mm256_andnot_ps(signmask, a));
        m1 = _mm256_max_ps(m1, _mm256_andnot_ps(signmask, b));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return 0;
    const __m256 m = _mm256_max_ps(m0, m1);  // no NaN: the maximum does not depend on the order
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    const float amax = _mm_cvtss_f32(h);
    if (row_is_zero(127, amax)) {
        memset(q, 0, block);
        *scale = 0;
        return 1;
    }
    quantize_span_avx2(8, block, 127, 127.0f / amax, x, q);
    *scale = amax / 127.0f;
    return 1;
}

#define AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,f16c")))

// quantize_span_avx2 on 16 lanes at the avx512 level: the same product and rounding
// (vcvtps2dq, half to even), then the clamp to [−qmax, qmax] in int32 before a narrowing that
// cannot saturate — the values the AVX2 packs and vpmaxsb give (a NaN or overflow converts to
// INT32_MIN in both, then −qmax). The tail is the AVX2 code's.
AVX512 static void quantize_span_avx512(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    const __m512 vinv = _mm512_set1_ps(inv);
    const __m512i hi = _mm512_set1_epi32(qmax), lo = _mm512_set1_epi32(-qmax);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
        v = _mm512_max_epi32(_mm512_min_epi32(v, hi), lo);
        if (bits == 8) _mm_storeu_si128((__m128i *)((int8_t *)q + i), _mm512_cvtepi32_epi8(v));
        else _mm256_storeu_si256((__m256i *)((int16_t *)q + i), _mm512_cvtepi32_epi16(v));
    }
    if (i < n) quantize_span_avx2(bits, n - i, qmax, inv, x + i, bits == 8 ? (void *)((int8_t *)q + i) : (void *)((int16_t *)q + i));
}

AVX2 static float pixel_amax_avx2(size_t n, const float *x) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps(), nan = _mm256_setzero_ps();
    const size_t nv = n & ~(size_t)7;
    for (size_t i = 0; i < nv; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(signmask, v));
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
    if (_mm256_movemask_ps(nan)) return NAN;
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float amax = 0;
    for (int t = 0; t < 8; t++) amax = lanes[t] > amax ? lanes[t] : amax;
    const float rest = pixel_amax_scalar(n - nv, x + nv);
    if (rest != rest) return NAN;
    return rest > amax ? rest : amax;
}

AVX2 static float quantize_row_avx2(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
    const __m256 signmask = _mm256_set1_ps(-0.0f);
    __m256 vmax = _mm256_setzero_ps();
    size_t kv = k & ~(size_t)7, i = 0;
    for (; i < kv; i += 8) vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(signmask, _mm256_loadu_ps(x + i)));
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float amax = 0;
    for (int t = 0; t < 8; t++) amax = lanes[t] > amax ? lanes[t] : amax;
    amax = absmax_from(x, i, k, amax);
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * (bits == 8 ? 1 : 2));
        return 0;
    }
    float inv = (float)qmax / amax;
    if (kernels_level() >= LEVEL_AVX512) quantize_span_avx512(bits, k, qmax, inv, x, q);
    else quantize_span_avx2(bits, k, qmax, inv, x, q);
    quantize_from(bits, k, k, kp, qmax, inv, x, q);  // the zero tail
    return amax / (float)qmax;
}

// Blocks of 8 rows × 8 channels: eight loads of acc rows, an 8×8 transpose, then per channel one
// FMA over 8 consecutive output pixels (vcvtdq2ps rounds to nearest even like the C conversion;
// sa·sw is the scalar path's float product).
AVX2 static void epilogue_conv_avx2(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                    const float *bias, float *out, size_t plane, size_t p) {
    const size_t r8 = rows & ~(size_t)7, n8 = n & ~(size_t)7;
    for (size_t j = 0; j < n8; j += 8) {
        for (size_t r = 0; r < r8; r += 8) {
            __m256 block[8], col[8];
            for (int t = 0; t < 8; t++) block[t] = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(acc + (r + t) * n + j)));
            transpose8(block, col);
            const __m256 vsa = _mm256_loadu_ps(sa + r);
            for (int t = 0; t < 8; t++) {
                const __m256 b = _mm256_set1_ps(bias ? bias[j + t] : 0.0f);
                const __m256 scale = _mm256_mul_ps(vsa, _mm256_set1_ps(sw[j + t]));
                const __m256 v = _mm256_cvtepi32_ps(_mm256_castps_si256(col[t]));
                _mm256_storeu_ps(out + (j + t) * plane + p + r, _mm256_fmadd_ps(v, scale, b));
            }
        }
        for (size_t t = j; t < j + 8; t++) {  // the last rows mod 8
            float b = bias ? bias[t] : 0.0f, s = sw[t];
            float *o = out + t * plane + p;
            for (size_t r = r8; r < rows; r++) o[r] = __builtin_fmaf((float)acc[r * n + t], sa[r] * s, b);
        }
    }
    for (size_t j = n8; j < n; j++) {  // the last channels mod 8
        float b = bias ? bias[j] : 0.0f, s = sw[j];
        float *o = out + j * plane + p;
        for (size_t r = 0; r < rows; r++) o[r] = __builtin_fmaf((float)acc[r * n + j], sa[r] * s, b);
    }
}

AVX2 static void epilogue_linear_avx2(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                      const float *bias, float *y, size_t ldy) {
    const __m256 zero = _mm256_setzero_ps();
    for (size_t r = 0; r < rows; r++) {
        float *o = y + r * ldy;
        const int32_t *a = acc + r * n;
        const __m256 vs = _mm256_set1_ps(sa[r]);
        size_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256 scale = _mm256_mul_ps(vs, _mm256_loadu_ps(sw + j));
            __m256 b = bias ? _mm256_loadu_ps(bias + j) : zero;
            __m256 v = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(a + j)));
            _mm256_storeu_ps(o + j, _mm256_fmadd_ps(v, scale, b));
        }
        for (; j < n; j++) o[j] = __builtin_fmaf((float)a[j], sa[r] * sw[j], bias ? bias[j] : 0.0f);
    }
}
#endif

// MARK: - NEON (arm64)

#if defined(__aarch64__)
#include <arm_neon.h>

static void quantize_span_neon(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q) {
    const float32x4_t vinv = vdupq_n_f32(inv);
    const int32x4_t hi = vdupq_n_s32(qmax), lo = vdupq_n_s32(-qmax);
    const size_t kv = n & ~(size_t)7;
    for (size_t i = 0; i < kv; i += 8) {
        // One float multiply, then FCVTNS: round half to even, as lrintf in the default mode.
        // FCVTNS turns NaN into 0; §4.1 wants −qmax there (round_q), so NaN lanes take lo.
        const float32x4_t p0 = vmulq_f32(vld1q_f32(x + i), vinv), p1 = vmulq_f32(vld1q_f32(x + i + 4), vinv);
        int32x4_t v0 = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(p0), hi), lo);
        int32x4_t v1 = vmaxq_s32(vminq_s32(vcvtnq_s32_f32(p1), hi), lo);
        v0 = vbslq_s32(vceqq_f32(p0, p0), v0, lo);
        v1 = vbslq_s32(vceqq_f32(p1, p1), v1, lo);
        // |v| ≤ qmax ≤ 32767 (127 for int8): the narrowings are exact.
        const int16x8_t p16 = vcombine_s16(vmovn_s32(v0), vmovn_s32(v1));
        if (bits == 8) vst1_s8((int8_t *)q + i, vmovn_s16(p16));
        else vst1q_s16((int16_t *)q + i, p16);
    }
    quantize_from(bits, kv, n, n, qmax, inv, x, q);
}

static float pixel_amax_neon(size_t n, const float *x) {
    float32x4_t vmax = vdupq_n_f32(0.0f);
    uint32x4_t nan = vdupq_n_u32(0);
    const size_t nv = n & ~(size_t)3;
    for (size_t i = 0; i < nv; i += 4) {
        const float32x4_t v = vld1q_f32(x + i);
        vmax = vmaxnmq_f32(vmax, vabsq_f32(v));
        nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(v, v)));
    }
    if (vmaxvq_u32(nan)) return NAN;
    const float amax = vmaxnmvq_f32(vmax), rest = pixel_amax_scalar(n - nv, x + nv);
    if (rest != rest) return NAN;
    return rest > amax ? rest : amax;
}

static float quantize_row_neon(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q) {
    // max|x|: FMAXNM, like the scalar comparison, passes over a quiet NaN; for finite values the
    // maximum does not depend on the order.
    float32x4_t vmax = vdupq_n_f32(0.0f);
    const size_t kv = k & ~(size_t)7;
    for (size_t i = 0; i < kv; i += 4) vmax = vmaxnmq_f32(vmax, vabsq_f32(vld1q_f32(x + i)));
    const float amax = absmax_from(x, kv, k, vmaxnmvq_f32(vmax));
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * (bits == 8 ? 1 : 2));
        return 0;
    }
    const float inv = (float)qmax / amax;
    quantize_span_neon(bits, k, qmax, inv, x, q);
    quantize_from(bits, k, k, kp, qmax, inv, x, q);  // the zero tail
    return amax / (float)qmax;
}

// Conv: out[j·plane + p + r] = fma((float)acc[r][j], sa[r]·sw[j], bias[j]). Blocks of 4 rows × 4
// channels: four loads of acc rows, a 4×4 transpose (TRN1/TRN2), then per channel one FMLA over 4
// consecutive output pixels. SCVTF rounds to nearest even like the C conversion; sa·sw is the
// same float product as the scalar one (multiplication commutes exactly).
static void epilogue_conv_neon(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                               const float *bias, float *out, size_t plane, size_t p) {
    const size_t r4 = rows & ~(size_t)3, n4 = n & ~(size_t)3;
    for (size_t j = 0; j < n4; j += 4) {
        for (size_t r = 0; r < r4; r += 4) {
            const int32x4_t a0 = vld1q_s32(acc + r * n + j), a1 = vld1q_s32(acc + (r + 1) * n + j);
            const int32x4_t a2 = vld1q_s32(acc + (r + 2) * n + j), a3 = vld1q_s32(acc + (r + 3) * n + j);
            const int32x4_t t0 = vtrn1q_s32(a0, a1), t1 = vtrn2q_s32(a0, a1);
            const int32x4_t t2 = vtrn1q_s32(a2, a3), t3 = vtrn2q_s32(a2, a3);
            const int32x4_t col[4] = {
                vreinterpretq_s32_s64(vtrn1q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2))),
                vreinterpretq_s32_s64(vtrn1q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3))),
                vreinterpretq_s32_s64(vtrn2q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2))),
                vreinterpretq_s32_s64(vtrn2q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3))),
            };  // col[c] = acc[r … r+3][j + c]
            const float32x4_t vsa = vld1q_f32(sa + r);
            for (size_t c = 0; c < 4; c++) {
                const float32x4_t b = vdupq_n_f32(bias ? bias[j + c] : 0.0f);
                const float32x4_t scale = vmulq_n_f32(vsa, sw[j + c]);
                vst1q_f32(out + (j + c) * plane + p + r, vfmaq_f32(b, vcvtq_f32_s32(col[c]), scale));
            }
        }
        for (size_t c = j; c < j + 4; c++) {  // the last rows mod 4
            float b = bias ? bias[c] : 0.0f, s = sw[c];
            float *o = out + c * plane + p;
            for (size_t r = r4; r < rows; r++) o[r] = fmaf((float)acc[r * n + c], sa[r] * s, b);
        }
    }
    for (size_t j = n4; j < n; j++) {  // the last channels mod 4
        float b = bias ? bias[j] : 0.0f, s = sw[j];
        float *o = out + j * plane + p;
        for (size_t r = 0; r < rows; r++) o[r] = fmaf((float)acc[r * n + j], sa[r] * s, b);
    }
}

// Linear: y[r][j] = fma((float)acc[r][j], sa[r]·sw[j], bias[j]), 4 channels per FMLA.
static void epilogue_linear_neon(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                                 const float *bias, float *y, size_t ldy) {
    const float32x4_t zero = vdupq_n_f32(0.0f);
    for (size_t r = 0; r < rows; r++) {
        float *o = y + r * ldy;
        const int32_t *a = acc + r * n;
        size_t j = 0;
        for (; j + 4 <= n; j += 4) {
            const float32x4_t scale = vmulq_n_f32(vld1q_f32(sw + j), sa[r]);
            const float32x4_t b = bias ? vld1q_f32(bias + j) : zero;
            vst1q_f32(o + j, vfmaq_f32(b, vcvtq_f32_s32(vld1q_s32(a + j)), scale));
        }
        for (; j < n; j++) o[j] = fmaf((float)a[j], sa[r] * sw[j], bias ? bias[j] : 0.0f);
    }
}
#endif

// MARK: - Driver

typedef float (*quantize_row_fn)(int, size_t, size_t, int32_t, const float *, void *);
typedef void (*quantize_span_fn)(int, size_t, int32_t, float, const float *, void *);
typedef float (*pixel_amax_fn)(size_t, const float *);
typedef int (*quantize_full_block_fn)(size_t, const float *, int8_t *, float *);
typedef void (*epilogue_conv_fn)(size_t, size_t, const int32_t *, const float *, const float *, const float *, float *, size_t, size_t);
typedef void (*epilogue_linear_fn)(size_t, size_t, const int32_t *, const float *, const float *, const float *, float *, size_t);

struct int_path {
    quantize_row_fn quantize;
    quantize_span_fn span;
    pixel_amax_fn pixel_amax;
    epilogue_conv_fn conv_out;
    epilogue_linear_fn linear_out;
    quantize_full_block_fn full_block;  // NULL: quantize_block's general steps
};

static struct int_path pick_path(void) {
#if defined(__x86_64__)
    if (kernels_path() == PATH_AVX2)
        return (struct int_path){quantize_row_avx2,
                                 kernels_level() >= LEVEL_AVX512 ? quantize_span_avx512 : quantize_span_avx2,
                                 pixel_amax_avx2, epilogue_conv_avx2, epilogue_linear_avx2, quantize_full_block_avx2};
#elif defined(__aarch64__)
    if (kernels_path() == PATH_NEON)
        return (struct int_path){quantize_row_neon, quantize_span_neon, pixel_amax_neon, epilogue_conv_neon, epilogue_linear_neon, NULL};
#endif
    return (struct int_path){quantize_row_scalar, quantize_span_scalar, pixel_amax_scalar, epilogue_conv_scalar, epilogue_linear_scalar, NULL};
}

float dloral_quantize_row(int bits, size_t k, size_t kp, const float *x, void *q) {
    return pick_path().quantize(bits, k, kp, dloral_activation_qmax(bits, kp), x, q);
}

// The weights prepared once for all the row blocks of a layer call of `rows` rows: at level amx,
// int8 weights packed for the tiles (packing costs about as much as the tile products of a few
// dozen rows, and a call has up to tens of blocks); NULL on the other paths, for calls with
// fewer than AMX_MIN_ROWS rows (the AVX-VNNI kernel is faster there), or when out of memory (then
// each block's GEMM chooses for itself). Free with free().
static int8_t *prepare_weights(int bits, size_t rows, size_t n, size_t kp, const int8_t *w) {
#if defined(__x86_64__)
    if (rows >= AMX_MIN_ROWS && kernels_level() >= LEVEL_AMX) return amx_pack_weights(bits, n, kp, w);
#endif
    (void)bits, (void)rows, (void)n, (void)kp, (void)w;
    return NULL;
}

// prepare_weights shared by the threads of one layer call: the same packed bytes, each thread
// packing some of the 16-row panels.
struct dloral_int_weights {
    int bits;
    size_t n, kp;
    const int8_t *w;
    int8_t *packed;
};

// The `bits` of int8-activation weights prepared at levels avxvnni and avx512: panels of 8 rows
// for vpdpbusd with the outputs in lanes (pack_vnni_panels).
enum { VNNI_PANELS = -8 };

#if defined(__x86_64__)
// A preparation of `bytes` packed bytes under key `bits`, still to be packed; NULL when out of
// memory.
static dloral_int_weights *weights_alloc(int bits, size_t bytes, size_t n, size_t kp, const int8_t *w) {
    dloral_int_weights *prepared = malloc(sizeof *prepared);
    int8_t *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (prepared && packed) {
        *prepared = (dloral_int_weights){bits, n, kp, w, packed};
        return prepared;
    }
    free(prepared);
    free(packed);
    return NULL;
}
#endif

dloral_int_weights *dloral_int_weights_new(int bits, size_t rows, size_t n, size_t kp, const int8_t *w) {
#if defined(__x86_64__)
    const int level = kernels_level();
    if (bits == 8 && rows >= 4 && n > 0 && level >= LEVEL_AVXVNNI && level < LEVEL_AMX)
        return weights_alloc(VNNI_PANELS, vnni_panels_bytes(n, kp), n, kp, w);
    if (rows >= AMX_MIN_ROWS && n > 0 && level >= LEVEL_AMX)
        return weights_alloc(bits, amx_packed_weight_bytes(n, kp, bits), n, kp, w);
#endif
    (void)bits, (void)rows, (void)n, (void)kp, (void)w;
    return NULL;
}

size_t dloral_int_min_rows(void) {
#if defined(__x86_64__)
    if (kernels_level() >= LEVEL_AMX) return AMX_MIN_ROWS;
#endif
    return 1;
}

// The `bits` of block-scale weights prepared below level amx: int16 panels of 8 weight rows
// (pack_block_panels), which no int8_channel layer call matches.
enum { BLOCK_PANELS = -16 };

dloral_int_weights *dloral_int_block_weights_new(size_t rows, size_t n, size_t kp, const int8_t *w) {
#if defined(__x86_64__)
    if (kernels_level() >= LEVEL_AMX) return dloral_int_weights_new(8, rows, n, kp, w);
    if (kernels_path() == PATH_AVX2 && rows >= 4 && n > 0)
        return weights_alloc(BLOCK_PANELS, block_panels_bytes(n, kp), n, kp, w);
#endif
    (void)rows, (void)n, (void)kp, (void)w;
    return NULL;
}

size_t dloral_int_weights_pieces(const dloral_int_weights *prepared) {
    if (!prepared) return 0;
    return prepared->bits == BLOCK_PANELS || prepared->bits == VNNI_PANELS ? (prepared->n + 7) / 8 : (prepared->n + 15) / 16;
}

void dloral_int_weights_pack(dloral_int_weights *prepared, size_t first, size_t end) {
#if defined(__x86_64__)
    if (prepared && prepared->bits == BLOCK_PANELS)
        pack_block_panels(prepared->n, prepared->kp, prepared->w, (int16_t *)prepared->packed, first, end);
    else if (prepared && prepared->bits == VNNI_PANELS)
        pack_vnni_panels(prepared->n, prepared->kp, prepared->w, prepared->packed, first, end);
    else if (prepared)
        amx_pack_weight_panels(prepared->bits, prepared->n, prepared->kp, prepared->w, prepared->packed, first, end);
#endif
    (void)prepared, (void)first, (void)end;
}

// prepared's packed weights when they are those of this call, else NULL.
static const int8_t *prepared_for(const dloral_int_weights *prepared, int bits, size_t n, size_t kp, const int8_t *w) {
    return prepared && prepared->bits == bits && prepared->n == n && prepared->kp == kp && prepared->w == w
               ? prepared->packed
               : NULL;
}

void dloral_int_weights_free(dloral_int_weights *prepared) {
    if (!prepared) return;
    free(prepared->packed);
    free(prepared);
}

// wp: prepare_weights(bits, …, n, kp, w); vp: VNNI panels (dloral_int_weights_new at levels
// avxvnni and avx512), or NULL. Every kernel gives the same bits.
static void gemm(int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w, const int8_t *wp,
                 const int8_t *vp, int32_t *c) {
#if defined(__x86_64__)
    if (vp && bits == 8) {
        gemm_i8i8_i32_avxvnni_panels(m, n, kp, a, w, vp, c);
        return;
    }
    if (wp) {
        if (bits == 8) gemm_i8i8_i32_amx_packed(m, n, kp, a, w, wp, c);
        else gemm_i16i8_i32_amx_packed(m, n, kp, a, w, wp, c);
        return;
    }
#endif
    (void)wp, (void)vp;
    if (bits == 8) dloral_gemm_i8i8_i32(m, n, kp, a, w, c);
    else dloral_gemm_i16i8_i32(m, n, kp, a, w, c);
}

void int_gemm_prepared(int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w,
                       const dloral_int_weights *prepared, int32_t *c) {
    gemm(bits, m, n, kp, a, w, prepared_for(prepared, bits, n, kp, w), prepared_for(prepared, VNNI_PANELS, n, kp, w), c);
}

// Rows per block: the quantized block (rows·kp elements) stays within about 512 KiB of the 2 MiB
// L2, up to 256 rows, and the int32 results (rows·n) within about 512 KiB. (Against 256 KiB and
// 128 rows, this was about 15 % faster on two threads in Tools/bench/int_gemm_bench.c.)
size_t int_layer_block_rows(int bits, size_t kp, size_t n) {
    size_t bytes = bits == 8 ? 1 : 2;
    size_t rows = (512u * 1024u) / (kp * bytes + 1);
    size_t by_out = (512u * 1024u) / (n * 4 + 1);
    if (by_out < rows) rows = by_out;
    if (rows < 8) rows = 8;
    if (rows > 256) rows = 256;
    return rows;
}

struct scratch {
    float *row;
    void *q;
    int32_t *acc;
    float *sa;
};

static int scratch_alloc(struct scratch *s, size_t k, size_t rows, size_t kp, size_t n, int bits) {
    size_t bytes = bits == 8 ? 1 : 2;
    s->row = aligned_alloc(64, ((k * sizeof(float) + 63) / 64) * 64 + 64);
    s->q = aligned_alloc(64, ((rows * kp * bytes + 63) / 64) * 64 + 64);
    s->acc = aligned_alloc(64, ((rows * n * 4 + 63) / 64) * 64 + 64);
    s->sa = malloc(rows * sizeof(float) + 4);
    if (!s->row || !s->q || !s->acc || !s->sa) {
        free(s->row), free(s->q), free(s->acc), free(s->sa);
        return -1;
    }
    return 0;
}

static void scratch_free(struct scratch *s) { free(s->row), free(s->q), free(s->acc), free(s->sa); }

// Output pixel p's im2col row of a conv, gathered from the channels-last input into row (k floats
// in (ky, kx, c) order, zeros where the window lies in the padding).
static void gather_patch(size_t c, size_t h, size_t w_in, size_t kh, size_t kw, size_t sh, size_t sw, size_t ph,
                         size_t pw, size_t wo, const float *x_hwc, size_t p, float *row) {
    const size_t oy = p / wo, ox = p % wo;
    for (size_t ky = 0; ky < kh; ky++) {
        long iy = (long)(oy * sh + ky) - (long)ph;
        for (size_t kx = 0; kx < kw; kx++) {
            long ix = (long)(ox * sw + kx) - (long)pw;
            float *dst = row + (ky * kw + kx) * c;
            if (iy < 0 || iy >= (long)h || ix < 0 || ix >= (long)w_in) memset(dst, 0, c * sizeof(float));
            else memcpy(dst, x_hwc + ((size_t)iy * w_in + (size_t)ix) * c, c * sizeof(float));
        }
    }
}

// Quantizes output pixel p's im2col row ((ky, kx, c) order) of a padded or multi-tap conv into
// q, straight from the channels-last input: its amax is the largest of its taps' per-pixel amax
// (pix_amax, NaN for a pixel holding NaN), and each tap's c channels are quantized in place of a
// gathered copy. The same bits as gathering the row and calling the row quantizer: the maximum of
// the same values, then the same element step. A row touching NaN is gathered and quantized the
// ordinary way. Returns the row's scale.
static float quantize_patch(const struct int_path *P, int bits, int32_t qmax, size_t c, size_t h, size_t w_in,
                            size_t kh, size_t kw, size_t sh, size_t sw, size_t ph, size_t pw, size_t wo,
                            const float *x_hwc, const float *pix_amax, size_t p, size_t kp, float *row, void *q) {
    const size_t oy = p / wo, ox = p % wo, k = c * kh * kw, bytes = bits == 8 ? 1 : 2;
    float amax = 0;
    int nan = 0;
    for (size_t ky = 0; ky < kh; ky++) {
        long iy = (long)(oy * sh + ky) - (long)ph;
        if (iy < 0 || iy >= (long)h) continue;
        for (size_t kx = 0; kx < kw; kx++) {
            long ix = (long)(ox * sw + kx) - (long)pw;
            if (ix < 0 || ix >= (long)w_in) continue;
            float a = pix_amax[(size_t)iy * w_in + (size_t)ix];
            nan |= a != a;
            amax = a > amax ? a : amax;
        }
    }
    if (nan) {  // gather the row, then the row quantizer
        gather_patch(c, h, w_in, kh, kw, sh, sw, ph, pw, wo, x_hwc, p, row);
        return P->quantize(bits, k, kp, qmax, row, q);
    }
    if (row_is_zero(qmax, amax)) {
        memset(q, 0, kp * bytes);
        return 0;
    }
    const float inv = (float)qmax / amax;
    for (size_t ky = 0; ky < kh; ky++) {
        long iy = (long)(oy * sh + ky) - (long)ph;
        for (size_t kx = 0; kx < kw; kx++) {
            long ix = (long)(ox * sw + kx) - (long)pw;
            char *dst = (char *)q + (ky * kw + kx) * c * bytes;
            if (iy < 0 || iy >= (long)h || ix < 0 || ix >= (long)w_in) memset(dst, 0, c * bytes);
            else P->span(bits, c, qmax, inv, x_hwc + ((size_t)iy * w_in + (size_t)ix) * c, dst);
        }
    }
    memset((char *)q + k * bytes, 0, (kp - k) * bytes);
    return amax / (float)qmax;
}

int dloral_int_conv2d(int bits, size_t c, size_t h, size_t w_in, size_t kh, size_t kw,
                      size_t sh, size_t sw, size_t ph, size_t pw, size_t ho, size_t wo,
                      const float *x_hwc, size_t n, size_t kp, const int8_t *w,
                      const float *w_scales, const float *bias, float *out, size_t p0, size_t p1,
                      const dloral_int_weights *prepared) {
    if (p1 <= p0 || n == 0) return 0;
    const struct int_path P = pick_path();
    const size_t k = c * kh * kw, bytes = bits == 8 ? 1 : 2, plane = ho * wo;
    const int32_t qmax = dloral_activation_qmax(bits, kp);
    const int direct = kh == 1 && kw == 1 && ph == 0 && pw == 0;
    const size_t rows_per_block = int_layer_block_rows(bits, kp, n);
    struct scratch s;
    if (scratch_alloc(&s, k, rows_per_block, kp, n, bits) != 0) return -1;
    // Per input pixel, max|x| over its channels, for the input rows this range of outputs reads.
    float *pix_amax = NULL;
    if (!direct) {
        pix_amax = malloc(h * w_in * sizeof(float) + 4);
        if (!pix_amax) {
            scratch_free(&s);
            return -1;
        }
        long iy0 = (long)((p0 / wo) * sh) - (long)ph, iy1 = (long)(((p1 - 1) / wo) * sh + kh) - (long)ph;
        if (iy0 < 0) iy0 = 0;
        if (iy1 > (long)h) iy1 = (long)h;
        for (size_t i = (size_t)iy0 * w_in; i < (size_t)(iy1 > iy0 ? iy1 : iy0) * w_in; i++)
            pix_amax[i] = P.pixel_amax(c, x_hwc + i * c);
    }
    const int8_t *shared = prepared_for(prepared, bits, n, kp, w);
    int8_t *own = shared ? NULL : prepare_weights(bits, p1 - p0, n, kp, w);
    const int8_t *wp = shared ? shared : own;
    const int8_t *vp = prepared_for(prepared, VNNI_PANELS, n, kp, w);
    for (size_t p = p0; p < p1; p += rows_per_block) {
        size_t rows = p1 - p < rows_per_block ? p1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++) {
            void *qr = (char *)s.q + r * kp * bytes;
            if (direct) {
                size_t oy = (p + r) / wo, ox = (p + r) % wo;
                s.sa[r] = P.quantize(bits, k, kp, qmax, x_hwc + ((oy * sh) * w_in + ox * sw) * c, qr);
            } else {
                s.sa[r] = quantize_patch(&P, bits, qmax, c, h, w_in, kh, kw, sh, sw, ph, pw, wo, x_hwc, pix_amax,
                                         p + r, kp, s.row, qr);
            }
        }
        gemm(bits, rows, n, kp, s.q, w, wp, vp, s.acc);
        P.conv_out(rows, n, s.acc, s.sa, w_scales, bias, out, plane, p);
    }
    free(pix_amax);
    free(own);
    scratch_free(&s);
    return 0;
}

int dloral_int_linear(int bits, size_t k, const float *x, size_t ldx, size_t n, size_t kp,
                      const int8_t *w, const float *w_scales, const float *bias, float *y, size_t ldy,
                      size_t r0, size_t r1, const dloral_int_weights *prepared) {
    if (r1 <= r0 || n == 0) return 0;
    const struct int_path P = pick_path();
    const size_t bytes = bits == 8 ? 1 : 2;
    const int32_t qmax = dloral_activation_qmax(bits, kp);
    const size_t rows_per_block = int_layer_block_rows(bits, kp, n);
    struct scratch s;
    if (scratch_alloc(&s, k, rows_per_block, kp, n, bits) != 0) return -1;
    const int8_t *shared = prepared_for(prepared, bits, n, kp, w);
    int8_t *own = shared ? NULL : prepare_weights(bits, r1 - r0, n, kp, w);
    const int8_t *wp = shared ? shared : own;
    const int8_t *vp = prepared_for(prepared, VNNI_PANELS, n, kp, w);
    for (size_t p = r0; p < r1; p += rows_per_block) {
        size_t rows = r1 - p < rows_per_block ? r1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++)
            s.sa[r] = P.quantize(bits, k, kp, qmax, x + (p + r) * ldx, (char *)s.q + r * kp * bytes);
        gemm(bits, rows, n, kp, s.q, w, wp, vp, s.acc);
        P.linear_out(rows, n, s.acc, s.sa, w_scales, bias, y + p * ldy, ldy);
    }
    free(own);
    scratch_free(&s);
    return 0;
}

// MARK: - Block scales (§4.3)

// One block of `real` values (the rest of its `block` columns zero): §4.1's rule with qmax 127,
// the row quantizer's bits. Its amax is the path's pixel_amax (the maximum does not depend on the
// order), its elements the path's span; a block holding NaN goes through the row quantizer.
// Returns the block's scale.
static float quantize_block(const struct int_path *P, size_t block, size_t real, const float *x, int8_t *q) {
    float scale;
    if (P->full_block && real == block && block % 32 == 0 && P->full_block(block, x, q, &scale)) return scale;
    const float amax = real ? P->pixel_amax(real, x) : 0.0f;
    if (amax != amax) return P->quantize(8, real, block, 127, x, q);
    if (row_is_zero(127, amax)) {
        memset(q, 0, block);
        return 0;
    }
    P->span(8, real, 127, 127.0f / amax, x, q);
    memset(q + real, 0, block - real);
    return amax / 127.0f;
}

static void quantize_blocks(const struct int_path *P, size_t block, size_t k, size_t kp, const float *x, int8_t *q,
                            float *sa) {
    for (size_t b = 0, first = 0; first < kp; b++, first += block) {
        size_t real = k > first ? (k - first < block ? k - first : block) : 0;
        sa[b] = quantize_block(P, block, real, x + first, q + first);
    }
}

void dloral_quantize_row_blocks(size_t block, size_t k, size_t kp, const float *x, int8_t *q, float *sa) {
    const struct int_path P = pick_path();
    quantize_blocks(&P, block, k, kp, x, q, sa);
}

// The block-scale weights prepared for a call (dloral_int_block_weights_new), by kind: packed for
// the tiles (at level amx), or as int16 panels (below it); NULL for neither.
struct block_weights {
    const int8_t *tiles;
    const int16_t *panels;
};

static struct block_weights block_prepared_for(const dloral_int_weights *prepared, size_t n, size_t kp,
                                               const int8_t *w) {
    return (struct block_weights){prepared_for(prepared, 8, n, kp, w),
                                  (const int16_t *)prepared_for(prepared, BLOCK_PANELS, n, kp, w)};
}

// block_prepared_for, preparing the weights for this call alone (into *own, to free) when the
// caller did not.
static struct block_weights block_weights_for_call(const dloral_int_weights *prepared, size_t rows, size_t n,
                                                   size_t kp, const int8_t *w, dloral_int_weights **own) {
    struct block_weights wp = block_prepared_for(prepared, n, kp, w);
    *own = NULL;
    if (!wp.tiles && !wp.panels) {
        *own = dloral_int_block_weights_new(rows, n, kp, w);
        dloral_int_weights_pack(*own, 0, dloral_int_weights_pieces(*own));
        wp = block_prepared_for(*own, n, kp, w);
    }
    return wp;
}

static void gemm_blocks(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                        const int8_t *w, struct block_weights wp, const float *sw, const float *bias, float *y,
                        size_t rs, size_t cs) {
#if defined(__x86_64__)
    if (wp.tiles && m >= AMX_MIN_ROWS) {
        gemm_i8i8_blocks_amx_packed(m, n, kp, block, a, sa, w, wp.tiles, sw, bias, y, rs, cs);
        return;
    }
    if (wp.panels && m >= 4) {
        gemm_i8i8_blocks_avx2_panels(m, n, kp, block, a, sa, w, wp.panels, sw, bias, y, rs, cs);
        return;
    }
    if (kernels_path() == PATH_AVX2) {
        gemm_i8i8_blocks_avx2(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
        return;
    }
#elif defined(__aarch64__)
    if (kernels_path() == PATH_NEON) {
        gemm_i8i8_blocks_neon(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
        return;
    }
#endif
    (void)wp;
    gemm_i8i8_blocks_scalar(m, n, kp, block, a, sa, w, sw, bias, y, rs, cs);
}

void dloral_gemm_i8i8_blocks(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                             const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs) {
    dloral_int_weights *own;
    gemm_blocks(m, n, kp, block, a, sa, w, block_weights_for_call(NULL, m, n, kp, w, &own), sw, bias, y, rs, cs);
    dloral_int_weights_free(own);
}

// Scratch of one block-scale layer call: a gathered im2col row, the quantized rows and their
// per-block scales.
struct block_scratch {
    float *row;
    int8_t *q;
    float *sa;
};

static int block_scratch_alloc(struct block_scratch *s, size_t k, size_t rows, size_t kp, size_t block) {
    s->row = malloc(k * sizeof(float) + 4);
    s->q = aligned_alloc(64, ((rows * kp + 63) / 64) * 64 + 64);
    s->sa = malloc(rows * (kp / block) * sizeof(float) + 4);
    if (!s->row || !s->q || !s->sa) {
        free(s->row), free(s->q), free(s->sa);
        return -1;
    }
    return 0;
}

static void block_scratch_free(struct block_scratch *s) { free(s->row), free(s->q), free(s->sa); }

// Rows per block of a block-scale layer: the quantized rows within about 512 KiB of L2 (the
// outputs go straight to their destination, so unlike int_layer_block_rows n does not limit
// them), whole 16-row tiles, 16 to 256.
size_t int_layer_block_scale_rows(size_t kp) {
    size_t rows = (512u * 1024u) / (kp + 1);
    rows = rows < 16 ? 16 : rows > 256 ? 256 : rows;
    return rows & ~(size_t)15;
}

int dloral_int_block_conv2d(size_t block, size_t c, size_t h, size_t w_in, size_t kh, size_t kw,
                            size_t sh, size_t sw, size_t ph, size_t pw, size_t ho, size_t wo,
                            const float *x_hwc, size_t n, size_t kp, const int8_t *w,
                            const float *w_scales, const float *bias, float *out, size_t p0, size_t p1,
                            const dloral_int_weights *prepared) {
    if (p1 <= p0 || n == 0) return 0;
    if (block == 0 || kp % block != 0) return -2;
    const size_t k = c * kh * kw, plane = ho * wo, nb = kp / block;
    const int direct = kh == 1 && kw == 1 && ph == 0 && pw == 0;
    const size_t rows_per_block = int_layer_block_scale_rows(kp);
    struct block_scratch s;
    if (block_scratch_alloc(&s, k, rows_per_block, kp, block) != 0) return -1;
    dloral_int_weights *own;
    const struct block_weights wp = block_weights_for_call(prepared, p1 - p0, n, kp, w, &own);
    const struct int_path P = pick_path();
    // With whole blocks per tap (c a multiple of block, as in every SD layer past the first),
    // each block is quantized where it lies in the input: no gathered copy.
    const int per_tap = !direct && c % block == 0;
    for (size_t p = p0; p < p1; p += rows_per_block) {
        size_t rows = p1 - p < rows_per_block ? p1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++) {
            const size_t oy = (p + r) / wo, ox = (p + r) % wo;
            const float *src = x_hwc + ((oy * sh) * w_in + ox * sw) * c;
            int8_t *qr = s.q + r * kp;
            float *sar = s.sa + r * nb;
            if (per_tap) {
                for (size_t ky = 0, b = 0; ky < kh; ky++) {
                    long iy = (long)(oy * sh + ky) - (long)ph;
                    for (size_t kx = 0; kx < kw; kx++) {
                        long ix = (long)(ox * sw + kx) - (long)pw;
                        const int inside = iy >= 0 && iy < (long)h && ix >= 0 && ix < (long)w_in;
                        const float *tap = inside ? x_hwc + ((size_t)iy * w_in + (size_t)ix) * c : NULL;
                        for (size_t ch = 0; ch < c; ch += block, b++)
                            sar[b] = quantize_block(&P, block, tap ? block : 0, tap ? tap + ch : NULL, qr + b * block);
                    }
                }
                memset(qr + k, 0, kp - k);
                for (size_t b = k / block; b < nb; b++) sar[b] = 0;
                continue;
            }
            if (!direct) {  // the im2col row gathered, zero padding included
                gather_patch(c, h, w_in, kh, kw, sh, sw, ph, pw, wo, x_hwc, p + r, s.row);
                src = s.row;
            }
            quantize_blocks(&P, block, k, kp, src, qr, sar);
        }
        gemm_blocks(rows, n, kp, block, s.q, s.sa, w, wp, w_scales, bias, out + p, 1, plane);
    }
    dloral_int_weights_free(own);
    block_scratch_free(&s);
    return 0;
}

int dloral_int_block_linear(size_t block, size_t k, const float *x, size_t ldx, size_t n, size_t kp,
                            const int8_t *w, const float *w_scales, const float *bias, float *y, size_t ldy,
                            size_t r0, size_t r1, const dloral_int_weights *prepared) {
    if (r1 <= r0 || n == 0) return 0;
    if (block == 0 || kp % block != 0) return -2;
    const size_t nb = kp / block, rows_per_block = int_layer_block_scale_rows(kp);
    struct block_scratch s;
    if (block_scratch_alloc(&s, 0, rows_per_block, kp, block) != 0) return -1;
    dloral_int_weights *own;
    const struct block_weights wp = block_weights_for_call(prepared, r1 - r0, n, kp, w, &own);
    const struct int_path P = pick_path();
    for (size_t p = r0; p < r1; p += rows_per_block) {
        size_t rows = r1 - p < rows_per_block ? r1 - p : rows_per_block;
        for (size_t r = 0; r < rows; r++) quantize_blocks(&P, block, k, kp, x + (p + r) * ldx, s.q + r * kp, s.sa + r * nb);
        gemm_blocks(rows, n, kp, block, s.q, s.sa, w, wp, w_scales, bias, y + p * ldy, ldy, 1);
    }
    dloral_int_weights_free(own);
    block_scratch_free(&s);
    return 0;
}

void dloral_chw_to_hwc(size_t c, size_t hw, const float *src, float *dst) {
    dloral_chw_to_hwc_pixels(c, hw, src, dst, 0, hw);
}

static void chw_to_hwc_scalar(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end) {
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

#if defined(__x86_64__)
// 16 pixels at a time (a whole cache line of each channel), 8 channels per 8×8 transpose.
AVX2 static void chw_to_hwc_avx2(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end) {
    const size_t c8 = c & ~(size_t)7;
    size_t p = first;
    for (; p + 16 <= end; p += 16) {
        for (size_t c0 = 0; c0 < c8; c0 += 8)
            for (size_t half = 0; half < 16; half += 8) {
                __m256 rows[8], cols[8];
                for (int t = 0; t < 8; t++) rows[t] = _mm256_loadu_ps(src + (c0 + t) * hw + p + half);
                transpose8(rows, cols);
                for (int t = 0; t < 8; t++) _mm256_storeu_ps(dst + (p + half + t) * c + c0, cols[t]);
            }
        for (size_t q = p; q < p + 16; q++)  // the last channels mod 8
            for (size_t ch = c8; ch < c; ch++) dst[q * c + ch] = src[ch * hw + q];
    }
    chw_to_hwc_scalar(c, hw, src, dst, p, end);
}
#endif

void dloral_chw_to_hwc_pixels(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end) {
#if defined(__x86_64__)
    if (kernels_path() == PATH_AVX2) {
        chw_to_hwc_avx2(c, hw, src, dst, first, end);
        return;
    }
#endif
    chw_to_hwc_scalar(c, hw, src, dst, first, end);
}
