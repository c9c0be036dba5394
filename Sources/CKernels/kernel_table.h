// The kernel tables: one per level (and per variant of a level, e.g. the VNNI encoding), filled in
// backend/kernel_table.c, immutable. The public entry points (generic/) take the table to use as
// their first argument (the public dloral_kernels context) and look their kernels up in it; kernels never look anything up themselves, so the table is the
// only place where a level says which kernel runs, including policies such as "below small_rows
// rows, another kernel".
#ifndef DLORAL_KERNEL_TABLE_H
#define DLORAL_KERNEL_TABLE_H

#include <stddef.h>
#include <stdint.h>

struct sgemm_kernel;

typedef enum { KERNEL_ARCH_GENERIC, KERNEL_ARCH_X86, KERNEL_ARCH_ARM } kernel_arch;

typedef void (*gemm_i8i8_fn)(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
typedef void (*gemm_i16i8_fn)(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);

// How a level prepares the int8 weights of one integer layer call for its threads (generic/
// generic/int_layer.c): pack == NULL when it prepares nothing.
typedef struct {
    size_t min_rows;    // calls of fewer rows (per thread) are not worth preparing for
    size_t panel_rows;  // weight rows per piece (threads pack disjoint ranges of pieces)
    int per_call;       // 1: worth preparing even for one unshared call (the tiles), 0: only when shared
    size_t (*bytes)(size_t n, size_t kp);
    void (*pack)(size_t n, size_t kp, const int8_t *w, int8_t *wp, size_t piece0, size_t piece1);
} weight_packing;

// The public dloral_kernels context (dloral_kernels.h) is a pointer to one of these.
typedef struct dloral_kernels {
    const char *name;     // the level, as dloral_kernels_name() and DLORAL_KERNELS name it
    const char *variant;  // which kernels within the level, for diagnostics (e.g. "avxvnni-vex")
    kernel_arch arch;
    unsigned requires;    // the CPU features (cpu_features.h) every kernel here needs

    // Elementwise (dloral_kernels.h).
    void (*axpy_f32)(size_t n, float a, const float *x, float *y);
    void (*f32_to_f16)(size_t n, const float *src, uint16_t *dst);
    void (*f16_to_f32)(size_t n, const uint16_t *src, float *dst);
    void (*f32_to_bf16)(size_t n, const float *src, uint16_t *dst);
    void (*quantize_i8)(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales,
                        double energy[2]);
    void (*error_energy)(size_t n, const float *ref, const float *approx, double energy[2]);

    // Integer GEMM: gemm_i8i8 / gemm_i16i8 for products of at least small_rows rows, the _small
    // kernels below that (small_rows 0: the first ones always).
    size_t small_rows;
    gemm_i8i8_fn gemm_i8i8, gemm_i8i8_small;
    gemm_i16i8_fn gemm_i16i8, gemm_i16i8_small;
    // Weights prepared for an integer layer call, per activation width and for block scales, and
    // the products on them.
    weight_packing pack_i8, pack_i16, pack_blocks;
    void (*gemm_i8i8_packed)(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, const int8_t *wp,
                             int32_t *c);
    void (*gemm_i16i8_packed)(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, const int8_t *wp,
                              int32_t *c);
    void (*gemm_blocks)(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                        const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs);
    void (*gemm_blocks_packed)(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                               const int8_t *w, const int8_t *wp, const float *sw, const float *bias, float *y,
                               size_t rs, size_t cs);

    // Integer layers: the row quantizer (quantize_full_block NULL: the general steps) and the
    // epilogues (generic/int_layer.c), and the NCHW → NHWC transpose.
    float (*quantize_row)(int bits, size_t k, size_t kp, int32_t qmax, const float *x, void *q);
    void (*quantize_span)(int bits, size_t n, int32_t qmax, float inv, const float *x, void *q);
    float (*pixel_amax)(size_t n, const float *x);
    int (*quantize_full_block)(size_t block, const float *x, int8_t *q, float *scale);
    void (*epilogue_conv)(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                          const float *bias, float *out, size_t plane, size_t p);
    void (*epilogue_linear)(size_t rows, size_t n, const int32_t *acc, const float *sa, const float *sw,
                            const float *bias, float *y, size_t ldy);
    void (*chw_to_hwc)(size_t c, size_t hw, const float *src, float *dst, size_t first, size_t end);

    // Single-precision GEMM: the register tile and its loop nest (sgemm_loops.h).
    const struct sgemm_kernel *sgemm;

    // GroupNorm, SiLU, softmax, LayerNorm (generic/norm.c).
    void (*norm_moments)(size_t count, const float *x, double *mean, double *variance);
    void (*norm_normalize)(size_t n, const float *x, float mean, float rstd, float scale, float shift, int silu,
                           float *y);
    void (*silu)(size_t n, const float *x, float *y);
    void (*exp)(size_t n, const float *x, float *y);
    float (*exp_sum)(size_t n, float *p, float shift);
    float (*peak)(size_t n, const float *p);
    void (*layer_affine)(size_t n, const float *x, float mean, float rstd, const float *w, const float *b, float *y);
    void (*norm_transpose_out)(size_t rows, size_t pixels, const float *t, float *y, size_t ldy);

    // GELU and GEGLU (generic/activation.c).
    void (*gelu)(size_t n, const float *x, float *y);
    void (*geglu)(size_t rows, size_t half, const float *x, float *y);
} kernel_table;

// The table of level `name` for a CPU with `features` (its preferred variant there), or NULL when
// the name is unknown, of another architecture, or the CPU lacks what every variant needs.
const kernel_table *kernel_table_named(const char *name, unsigned features);

// The highest level a CPU with `features` can run.
const kernel_table *kernel_table_best(unsigned features);

#endif
