// Integer Conv2d and Linear layers for the DLoRAL engine: fp32 activations are quantized per row
// on the fly (int8 or int16), multiplied by int8 weight rows with an integer GEMM
// (dloral_gemm_i8i8_i32 / dloral_gemm_i16i8_i32), and dequantized with bias in the epilogue.
//
// Weights are the `rows_k32` matrices of Formats/dlrt.md §4 with one scale per output channel
// (`int8_channel`): row n, column (y·KW + x)·C + c, Kp columns, zero padded.
//
// Every path (AVX2, NEON, scalar) gives bit-identical outputs: the quantization uses one float
// multiply and round-half-even, the GEMM is exact integer arithmetic, and the epilogue is one
// fused multiply-add per element, y = fma((float)acc, sa·sw, bias), in all of them.
#ifndef DLORAL_INT_LAYER_H
#define DLORAL_INT_LAYER_H

#include <stddef.h>
#include <stdint.h>

/// Largest integer magnitude of an activation quantized to `bits` (8 or 16) for a GEMM over `kp`
/// columns against int8 weights in [−127, 127]: 127 for int8; for int16 the largest q with
/// kp·q·127 < 2^31 (so the int32 sum is always exact), capped at 32767 — 1467 at kp = 11520.
int32_t dloral_activation_qmax(int bits, size_t kp);

/// Quantizes one row of `k` floats to `bits` (8: int8_t, 16: int16_t) into `q` (kp elements, the
/// tail k … kp−1 zeroed): amax = max|x|, scale = amax / qmax, q = clamp(rint(x · (qmax / amax)),
/// −qmax, qmax). Returns the scale (0 for an all-zero row, whose q are all 0).
float dloral_quantize_row(int bits, size_t k, size_t kp, const float *x, void *q);

/// One image of a Conv2d (groups 1, dilation 1) on the integer path, output pixels [p0, p1) only
/// (call with disjoint ranges from several threads to split the work).
///
/// - x_hwc: the input image channels-last, [H][W][C] floats.
/// - w: int8 rows [n][kp] in (ky, kx, c) column order; w_scales: [n]; bias: [n] or NULL.
/// - out: [n][ho·wo] floats (NCHW of one image); pixel p of channel j goes to out[j·ho·wo + p].
/// Returns 0, or −1 when scratch memory cannot be allocated (nothing is written then).
int dloral_int_conv2d(int bits, size_t c, size_t h, size_t w_in, size_t kh, size_t kw,
                      size_t sh, size_t sw, size_t ph, size_t pw, size_t ho, size_t wo,
                      const float *x_hwc, size_t n, size_t kp, const int8_t *w,
                      const float *w_scales, const float *bias, float *out, size_t p0, size_t p1);

/// Linear on the integer path for rows [r0, r1) of x ([rows][k] floats, row stride ldx):
/// y[r][j] = dequant(Σ_k q(x[r])·w[j]) + bias[j], y row-major with row stride ldy.
/// Returns 0, or −1 when scratch memory cannot be allocated.
int dloral_int_linear(int bits, size_t k, const float *x, size_t ldx, size_t n, size_t kp,
                      const int8_t *w, const float *w_scales, const float *bias, float *y, size_t ldy,
                      size_t r0, size_t r1);

/// Transposes one image from [C][HW] (NCHW) to [HW][C] (channels-last).
void dloral_chw_to_hwc(size_t c, size_t hw, const float *src, float *dst);

/// dloral_chw_to_hwc for pixels [first, end) only (so threads can share one transpose).
void dloral_chw_to_hwc_pixels(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end);

#endif
