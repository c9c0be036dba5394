// The kernels of every path, as the tables in backend/kernel_table.c name them.
#ifndef DLORAL_KERNELS_INTERNAL_H
#define DLORAL_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dloral_kernels.h"

void axpy_f32_scalar(size_t n, float a, const float *x, float *y);
void f32_to_f16_scalar(size_t n, const float *src, uint16_t *dst);
void f16_to_f32_scalar(size_t n, const uint16_t *src, float *dst);
void f32_to_bf16_scalar(size_t n, const float *src, uint16_t *dst);
uint16_t f32_to_f16_one(float value);
float f16_to_f32_one(uint16_t bits);
uint16_t f32_to_bf16_one(float value);
void quantize_i8_scalar(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]);
void error_energy_scalar(size_t n, const float *ref, const float *approx, double energy[2]);
// error_energy's 8 double lanes (element i into lane i mod 8): adds elements [i, n) to them as
// the scalar path does, then the lanes in order into energy. Every path ends its sums here.
void energy_lanes_finish(size_t i, size_t n, const float *ref, const float *approx, double signal[8], double noise[8],
                         double energy[2]);

#if defined(__x86_64__)
void axpy_f32_avx2(size_t n, float a, const float *x, float *y);
void f32_to_f16_avx2(size_t n, const float *src, uint16_t *dst);
void f16_to_f32_avx2(size_t n, const uint16_t *src, float *dst);
void f32_to_bf16_avx2(size_t n, const float *src, uint16_t *dst);
void quantize_i8_avx2(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]);
void error_energy_avx2(size_t n, const float *ref, const float *approx, double energy[2]);
#endif

#if defined(__aarch64__)
void axpy_f32_neon(size_t n, float a, const float *x, float *y);
void f32_to_f16_neon(size_t n, const float *src, uint16_t *dst);
void f16_to_f32_neon(size_t n, const uint16_t *src, float *dst);
void f32_to_bf16_neon(size_t n, const float *src, uint16_t *dst);
void quantize_i8_neon(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]);
void error_energy_neon(size_t n, const float *ref, const float *approx, double energy[2]);
#endif

// Integer GEMM (generic/int8_gemm_scalar.c, arch/).
void gemm_i8i8_i32_scalar(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
void gemm_i16i8_i32_scalar(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);
// int8 × int8 with block scales (dloral_gemm_i8i8_blocks in dloral_int_layer.h).
#define GEMM_BLOCKS_ARGS                                                                              \
    size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa, const int8_t *w, \
        const float *sw, const float *bias, float *y, size_t rs, size_t cs
void gemm_i8i8_blocks_scalar(GEMM_BLOCKS_ARGS);
#if defined(__x86_64__)
void gemm_i8i8_blocks_avx2(GEMM_BLOCKS_ARGS);
// Below level amx: w as int16 panels of 8 rows (pack_block_panels, panels [p0, p1); wp of
// block_panels_bytes) for the outputs-in-lanes kernel (int8_gemm_avx2.c).
size_t block_panels_bytes(size_t n, size_t kp);
void pack_block_panels(size_t n, size_t kp, const int8_t *w, int16_t *wp, size_t p0, size_t p1);
// The same two with the packed panels as bytes (the tables' weight_packing and gemm_blocks_packed).
void pack_block_panels_i8(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t p0, size_t p1);
void gemm_i8i8_blocks_avx2_packed(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                  const int8_t *w, const int8_t *wp, const float *sw, const float *bias, float *y,
                                  size_t rs, size_t cs);
void gemm_i8i8_blocks_avx2_panels(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                  const int8_t *w, const int16_t *wp, const float *sw, const float *bias, float *y,
                                  size_t rs, size_t cs);
// Level amx, m ≥ AMX_MIN_ROWS: w packed by amx_pack_weights(8, …) into wp (arch/x86/amx/gemm_amx.c).
void gemm_i8i8_blocks_amx_packed(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                                 const int8_t *w, const int8_t *wp, const float *sw, const float *bias, float *y,
                                 size_t rs, size_t cs);
#elif defined(__aarch64__)
void gemm_i8i8_blocks_neon(GEMM_BLOCKS_ARGS);
#endif
#if defined(__x86_64__)
void gemm_i8i8_i32_avx2(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
void gemm_i16i8_i32_avx2(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);
// AVX-VNNI with the outputs in lanes on weights prepared once per layer call (vnni_kernels.h): the
// panels' size (the same in both encodings, arch/x86/vnni/vnni_panels.c).
size_t vnni_panels_bytes(size_t n, size_t kp);
// The VNNI kernels in the VEX encoding (vnni_vex.c, AVX-VNNI) and the EVEX one (vnni_evex.c,
// AVX512-VNNI): int8 and int16 activations, the panels of 8 weight rows for the outputs-in-lanes
// kernel (panels [p0, p1)) and the product on them (w read only if its scratch allocation fails).
#define VNNI_ENCODING_DECLS(suffix)                                                                              \
    void gemm_i8i8_i32##suffix(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);    \
    void gemm_i16i8_i32##suffix(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);  \
    void pack_panels##suffix(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t p0, size_t p1);           \
    void gemm_i8i8_i32_panels##suffix(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w,          \
                                      const int8_t *wp, int32_t *c);
VNNI_ENCODING_DECLS(_vnni_vex)
VNNI_ENCODING_DECLS(_vnni_evex)
#undef VNNI_ENCODING_DECLS
// AMX-INT8 tiles (arch/x86/amx/gemm_amx.c): only at level amx (the OS must have granted the
// process tile data, which the probe asks for). gemm_i8i8_i32_amx packs w for the tiles on every
// call; for several calls with the same w, amx_pack_weights packs it once (a malloc'd buffer to
// free(); NULL when out of memory) and gemm_i8i8_i32_amx_packed uses it (and reads w only if its
// scratch allocation fails, for the EVEX VNNI kernel). Same bits as the scalar kernel. Under
// AMX_MIN_ROWS rows, packing the weights takes longer than the VNNI kernel takes for the whole
// product (crossover between 8 and 16 rows at the SD layer shapes): the amx table sends those
// products to the VNNI kernel.
enum { AMX_MIN_ROWS = 16 };
void gemm_i8i8_i32_amx(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
// For `bits`-bit activations (16: the weight row sums are stored after the tiles too).
int8_t *amx_pack_weights(int bits, size_t n, size_t kp, const int8_t *w);
// amx_pack_weights in pieces: the buffer's size, and the panels of 16 weight rows [panel0,
// panel1) packed into it (threads may pack disjoint ranges at once).
size_t amx_packed_weight_bytes(size_t n, size_t kp, int bits);
void amx_pack_weight_panels(int bits, size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t panel0, size_t panel1);
// Both for int8 and for int16 activations (the tables' weight_packing).
size_t amx_packed_bytes_i8(size_t n, size_t kp);
size_t amx_packed_bytes_i16(size_t n, size_t kp);
void amx_pack_panels_i8(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t panel0, size_t panel1);
void amx_pack_panels_i16(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t panel0, size_t panel1);
// int16 × int8 on the same tiles (two int8 products, arch/x86/amx/gemm_amx.c), with the same packed weights.
void gemm_i16i8_i32_amx(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);
void gemm_i16i8_i32_amx_packed(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, const int8_t *wp,
                               int32_t *c);
void gemm_i8i8_i32_amx_packed(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, const int8_t *wp,
                              int32_t *c);
#endif
#if defined(__aarch64__)
// The SDOT kernel must only run where the CPU has dotprod (CPU_ARM_DOTPROD); SMULL runs anywhere.
void gemm_i8i8_i32_neon_sdot(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
void gemm_i8i8_i32_neon_smull(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
void gemm_i16i8_i32_neon(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);
#endif

// generic/int_layer.c's GEMM for a layer call: dloral_gemm_i8i8_i32 / dloral_gemm_i16i8_i32 (bits 8 /
// 16), on prepared's packed weights when they are w's (the same bits).
#include "dloral_int_layer.h"
void int_gemm_prepared(const struct dloral_kernels *T, int bits, size_t m, size_t n, size_t kp, const void *a, const int8_t *w,
                       const dloral_int_weights *prepared, int32_t *c);
// The rows per block the layer drivers quantize and multiply at a time (generic/int_layer.c): per-row
// scales for `bits`-bit activations against n weight rows, and block scales. The benchmarks time
// the kernels at these blocks.
size_t int_layer_block_rows(int bits, size_t kp, size_t n);
size_t int_layer_block_scale_rows(size_t kp);

// Single-precision GEMM (generic/sgemm.c, sgemm_loops.h): one driver, a register tile per path.
// The tile, MR × NR (6 × 16 on the scalar, AVX2 and NEON paths, 8 × 32 on AVX-512):
// S[r][j] (r < MR, j < NR) = fused chain from +0 over p < kc of a[p·MR + r]·b[p·NR + j];
// then c[r·ldc + j] = alpha·S when beta is 0 (c not read), else fma(alpha, S, beta·c).
typedef void (*sgemm_tile_fn)(size_t kc, const float *a, const float *b, float *c, size_t ldc, float alpha, float beta);
// Widens n binary16 values to fp32 (exact): the path's f16_to_f32.
typedef void (*sgemm_widen_fn)(size_t n, const uint16_t *src, float *dst);
// One call's operands (dloral_sgemm_typed's arguments).
typedef struct {
    int trans_a, trans_b, a_half, b_half;
    size_t m, n, k;
    float alpha;
    const void *a;
    size_t lda;
    const void *b;
    size_t ldb;
    float beta;
    float *c;
    size_t ldc;
    const dloral_conv_geometry *conv;  // dloral_sconv2d: B is this convolution's im2col of b
    int serial;                        // 1: on the calling thread only (the same bits)
} sgemm_operands;
// dloral_sgemm on the calling thread only, whatever the size (for callers that split their own
// work over threads, as attention's do).
void sgemm_serial(const struct dloral_kernels *T, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc);
// An operand B (k × n) packed once, in the panels dloral_sgemm would pack it into, for many
// products with different A (attention's K and V, shared by all the query blocks of a head). It
// holds the path it was packed for; products with it run on that path, with the bits of
// dloral_sgemm on the unpacked B.
typedef struct sgemm_packed sgemm_packed;
// NULL when out of memory.
sgemm_packed *sgemm_pack_b(const struct dloral_kernels *T, int trans_b, size_t n, size_t k, const float *b, size_t ldb);
void sgemm_packed_free(sgemm_packed *packed);
// sgemm_serial with op(B) the packed operand (its n and k).
void sgemm_serial_packed(size_t m, float alpha, const float *a, size_t lda, const sgemm_packed *b, float beta, float *c,
                         size_t ldc);

// GroupNorm / SiLU / softmax / LayerNorm steps (generic/norm.c, norm_scalar.h for the scalar
// level), per path.
#define NORM_DECLS(suffix)                                                                              \
    void moments##suffix(size_t count, const float *x, double *mean, double *variance);                \
    void normalize##suffix(size_t n, const float *x, float mean, float rstd, float scale, float shift, \
                           int silu, float *y);                                                         \
    void silu_run##suffix(size_t n, const float *x, float *y);                                          \
    void exp_run##suffix(size_t n, const float *x, float *y);                                           \
    float exp_sum##suffix(size_t n, float *p, float shift);                                             \
    float peak##suffix(size_t n, const float *p);
// GELU / GEGLU (generic/activation.c), per path.
#define ACTIVATION_DECLS(suffix)                                      \
    void gelu_run##suffix(size_t n, const float *x, float *y);        \
    void geglu##suffix(size_t rows, size_t half, const float *x, float *y);
// The integer layers' quantizer and epilogues (generic/int_layer.c), per path.
#define INT_LAYER_DECLS(suffix)                                                                                  \
    void quantize_span##suffix(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q);           \
    float pixel_amax##suffix(size_t n, const float *x);                                                          \
    float quantize_row##suffix(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q);           \
    void epilogue_conv##suffix(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,     \
                               const float *bias, float *out, size_t plane, size_t p);                          \
    void epilogue_linear##suffix(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,   \
                                 const float *bias, float *y, size_t ldy);
#if defined(__x86_64__)
NORM_DECLS(_avx2)
ACTIVATION_DECLS(_avx2)
INT_LAYER_DECLS(_avx2)
void layer_affine_avx2(size_t n, const float *x, float mean, float rstd, const float *w, const float *b, float *y);
void transpose_out_avx2(size_t rows, size_t pixels, const float *t, float *y, size_t ldy);
int quantize_full_block_avx2(size_t block, const float *x, int8_t *q, float *scale);
void chw_to_hwc_avx2(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end);
void normalize_avx512(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu, float *y);
void silu_run_avx512(size_t n, const float *x, float *y);
float exp_sum_avx512(size_t n, float *p, float shift);
ACTIVATION_DECLS(_avx512)
void quantize_span_avx512(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q);
float quantize_row_avx512(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q);
// The AVX2 row quantizer with the element step `span` (quantize_span_avx2 or _avx512).
float quantize_row_avx2_with(void (*span)(int, size_t, int32_t, float, const float *, void *), int bits, size_t k,
                             size_t kp, int32_t qmax, const float *x, void *q);
#endif
#if defined(__aarch64__)
NORM_DECLS(_neon)
ACTIVATION_DECLS(_neon)
INT_LAYER_DECLS(_neon)
#endif
#undef NORM_DECLS
#undef ACTIVATION_DECLS
#undef INT_LAYER_DECLS

// GroupNorm internals (generic/norm.c) at the level T, for Tests/KernelCheck/
// kernel_check.c, which checks them against the documented arithmetic bit for bit: the double
// moments of dloral_group_norm (count ≥ 1 elements; mean and biased variance before rounding),
// and the exp of its SiLU, elementwise (x may be y).
void norm_moments(const struct dloral_kernels *T, size_t count, const float *x, double *mean, double *variance);
void norm_exp(const struct dloral_kernels *T, size_t n, const float *x, float *y);

#endif
