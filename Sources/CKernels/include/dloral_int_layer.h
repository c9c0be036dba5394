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

#include "dloral_kernels.h"

/// Largest integer magnitude of an activation quantized to `bits` (8 or 16) for a GEMM over `kp`
/// columns against int8 weights in [−127, 127]: 127 for int8; for int16 the largest q with
/// kp·q·127 < 2^31 (so the int32 sum is always exact), capped at 32767 — 1467 at kp = 11520.
int32_t dloral_activation_qmax(int bits, size_t kp);

/// Quantizes one row of `k` floats to `bits` (8: int8_t, 16: int16_t) into `q` (kp elements, the
/// tail k … kp−1 zeroed): amax = max|x|, scale = amax / qmax, q = clamp(rint(x · (qmax / amax)),
/// −qmax, qmax). Returns the scale (0 for an all-zero row, whose q are all 0).
float dloral_quantize_row(const dloral_kernels *kernels, int bits, size_t k, size_t kp, const float *x, void *q);

/// An integer layer's weights prepared once for one layer call that several threads share (at
/// the amx level: packed for the tiles, about as costly as the tile products of a few dozen
/// rows; at levels avxvnni and avx512, for int8 activations: panels of 8 rows for the
/// outputs-in-lanes vpdpbusd kernel). Threads pack disjoint ranges of its pieces, then pass it to
/// dloral_int_conv2d / dloral_int_linear, which then do not prepare the weights themselves.
typedef struct dloral_int_weights dloral_int_weights;

/// The preparation for `bits`-bit activations, n × kp int8 weights w and calls of at least
/// `rows` rows per thread; NULL when this kernel level has nothing to prepare (or when out of
/// memory: the layer calls then prepare for themselves, with the same results).
dloral_int_weights *dloral_int_weights_new(const dloral_kernels *kernels, int bits, size_t rows, size_t n, size_t kp, const int8_t *w);

/// The fewest rows per thread worth giving one layer call: at the amx level AMX_MIN_ROWS (16;
/// with fewer, the call runs a kernel without the tiles, slower than one thread with twice the
/// rows on them), else 1.
size_t dloral_int_min_rows(const dloral_kernels *kernels);

/// How many pieces dloral_int_weights_pack splits the work into.
size_t dloral_int_weights_pieces(const dloral_int_weights *prepared);

/// Prepares pieces [first, end); every piece must be prepared before the weights are used.
void dloral_int_weights_pack(dloral_int_weights *prepared, size_t first, size_t end);

void dloral_int_weights_free(dloral_int_weights *prepared);

/// An integer layer's weights: n int8 rows of kp columns (Formats/dlrt.md §4; conv rows in
/// (ky, kx, c) column order), their scales (per row: [n]; for block scales: [n][kp/block]) and
/// bias ([n], or NULL for none).
typedef struct {
    size_t n, kp;
    const int8_t *rows;
    const float *scales;
    const float *bias;
} dloral_int_layer_weights;

/// One image of a Conv2d (groups 1, dilation 1) on the integer path, output pixels [p0, p1) only
/// (call with disjoint ranges from several threads to split the work).
///
/// - geometry: the convolution (its input [c][h][w], kernel, stride, padding, output ho × wo).
/// - x_hwc: the input image channels-last, [h][w][c] floats.
/// - out: [n][ho·wo] floats (NCHW of one image); pixel p of channel j goes to out[j·ho·wo + p].
/// - prepared: the weights prepared by dloral_int_weights_new / _pack at the same level, or NULL to
///   prepare them here (weights prepared at another level are not used).
/// Returns 0, or −1 when scratch memory cannot be allocated (nothing is written then).
int dloral_int_conv2d(const dloral_kernels *kernels, int bits, const dloral_conv_geometry *geometry, const float *x_hwc,
                      const dloral_int_layer_weights *weights, float *out, size_t p0, size_t p1,
                      const dloral_int_weights *prepared);

/// Linear on the integer path for rows [r0, r1) of x ([rows][k] floats, row stride ldx):
/// y[r][j] = dequant(Σ_k q(x[r])·w[j]) + bias[j], y row-major with row stride ldy. prepared: as
/// for dloral_int_conv2d. Returns 0, or −1 when scratch memory cannot be allocated.
int dloral_int_linear(const dloral_kernels *kernels, int bits, size_t k, const float *x, size_t ldx, const dloral_int_layer_weights *weights, float *y,
                      size_t ldy, size_t r0, size_t r1, const dloral_int_weights *prepared);

// MARK: - Block scales (Formats/dlrt.md §4.3)
//
// `int8_block` weights: one scale per output channel and block of `block` (32 or 64) columns,
// w_scales [n][kp/block]; kp a multiple of block. Activations are quantized to int8 per row and
// block with §4.1's rule applied to each block (s_a = 0 for an all-zero block), and
// y[j] = acc with acc = bias[j] (0 without bias), then for each block b in order
// acc = fma((float)Σ_{k ∈ b} q_a[k]·q_w[j][k], s_a[b]·s_w[j][b], acc).

/// Quantizes one row of `k` floats per block of `block` columns into q (kp int8, the tail k … kp−1
/// zeroed) and sa (kp/block scales).
void dloral_quantize_row_blocks(const dloral_kernels *kernels, size_t block, size_t k, size_t kp, const float *x, int8_t *q, float *sa);

/// The block GEMM with its epilogue: for i < m, j < n, y[i·rs + j·cs] = the §4.3 sum of the
/// int8 rows a[i] (kp columns, scales sa[i][kp/block]) and w[j] (scales sw[j][kp/block]).
void dloral_gemm_i8i8_blocks(const dloral_kernels *kernels, size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                             const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs);

/// The weights of an `int8_block` layer call prepared once for its threads (as
/// dloral_int_weights_new, with the same _pieces / _pack / _free): at level amx packed for the
/// tiles, on the other x86 levels as int16 panels for the outputs-in-lanes kernel; NULL where
/// nothing is prepared.
dloral_int_weights *dloral_int_block_weights_new(const dloral_kernels *kernels, size_t rows, size_t n, size_t kp, const int8_t *w);

/// dloral_int_conv2d for an `int8_block` weight (int8 activations). prepared: the weights from
/// dloral_int_block_weights_new, or NULL (then prepared for this call). Returns 0, −1 when scratch
/// memory cannot be allocated, −2 when kp is not a multiple of block (nothing is written then).
int dloral_int_block_conv2d(const dloral_kernels *kernels, size_t block, const dloral_conv_geometry *geometry, const float *x_hwc,
                            const dloral_int_layer_weights *weights, float *out, size_t p0, size_t p1,
                            const dloral_int_weights *prepared);

/// dloral_int_linear for an `int8_block` weight (int8 activations); prepared and the return value
/// as for dloral_int_block_conv2d.
int dloral_int_block_linear(const dloral_kernels *kernels, size_t block, size_t k, const float *x, size_t ldx, const dloral_int_layer_weights *weights,
                            float *y, size_t ldy, size_t r0, size_t r1, const dloral_int_weights *prepared);

/// Transposes one image from [C][HW] (NCHW) to [HW][C] (channels-last).
void dloral_chw_to_hwc(const dloral_kernels *kernels, size_t c, size_t hw, const float *src, float *dst);

/// dloral_chw_to_hwc for pixels [first, end) only (so threads can share one transpose).
void dloral_chw_to_hwc_pixels(const dloral_kernels *kernels, size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end);

#endif
