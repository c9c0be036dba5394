// The kernel levels: one table per level and variant, lowest level first within each
// architecture, and the choice among them. Adding a level is a folder of kernels under arch/ and
// a table here (with the features it requires, cpu_features.h).
#include "cpu_features.h"
#include "dloral_kernels.h"
#include "kernel_table.h"
#include "kernels_internal.h"
#include "sgemm_loops.h"

// The scalar steps are static inline in these headers (the vector kernels finish their tails
// with them); the scalar table takes its own copies.
#include "activation_scalar.h"
#include "int_layer_scalar.h"
#include "norm_scalar.h"

#include <stdlib.h>
#include <strings.h>

#define NO_PACKING {0, 0, 0, NULL, NULL}

// MARK: - Scalar (every CPU: the reference)

#define SCALAR_ELEMENTWISE                                                                                 \
    .axpy_f32 = axpy_f32_scalar, .f32_to_f16 = f32_to_f16_scalar, .f16_to_f32 = f16_to_f32_scalar,         \
    .f32_to_bf16 = f32_to_bf16_scalar, .quantize_i8 = quantize_i8_scalar, .error_energy = error_energy_scalar

static const kernel_table scalar = {
    .name = "scalar", .variant = "scalar", .arch = KERNEL_ARCH_GENERIC, .requires = 0,
    SCALAR_ELEMENTWISE,
    .small_rows = 0,
    .gemm_i8i8 = gemm_i8i8_i32_scalar, .gemm_i8i8_small = gemm_i8i8_i32_scalar,
    .gemm_i16i8 = gemm_i16i8_i32_scalar, .gemm_i16i8_small = gemm_i16i8_i32_scalar,
    .pack_i8 = NO_PACKING, .pack_i16 = NO_PACKING, .pack_blocks = NO_PACKING,
    .gemm_blocks = gemm_i8i8_blocks_scalar,
    .quantize_row = quantize_row_scalar, .quantize_span = quantize_span_scalar, .pixel_amax = pixel_amax_scalar,
    .quantize_full_block = NULL, .epilogue_conv = epilogue_conv_scalar, .epilogue_linear = epilogue_linear_scalar,
    .chw_to_hwc = chw_to_hwc_scalar,
    .sgemm = &sgemm_kernel_scalar,
    .norm_moments = moments_scalar, .norm_normalize = normalize_scalar, .silu = silu_run_scalar,
    .exp = exp_run_scalar, .exp_sum = exp_sum_scalar, .peak = peak_scalar, .layer_affine = layer_affine_scalar,
    .norm_transpose_out = transpose_out_scalar,
    .gelu = gelu_run_scalar, .geglu = geglu_scalar,
};

// MARK: - x86-64

#if defined(__x86_64__)
// What every x86-64 vector level shares: the AVX2 elementwise, layer and norm kernels.
#define X86_COMMON                                                                                          \
    .arch = KERNEL_ARCH_X86,                                                                                \
    .axpy_f32 = axpy_f32_avx2, .f32_to_f16 = f32_to_f16_avx2, .f16_to_f32 = f16_to_f32_avx2,                \
    .f32_to_bf16 = f32_to_bf16_avx2, .quantize_i8 = quantize_i8_avx2, .error_energy = error_energy_avx2,    \
    .gemm_blocks = gemm_i8i8_blocks_avx2, .pixel_amax = pixel_amax_avx2,                                    \
    .quantize_full_block = quantize_full_block_avx2, .epilogue_conv = epilogue_conv_avx2,                   \
    .epilogue_linear = epilogue_linear_avx2, .chw_to_hwc = chw_to_hwc_avx2, .norm_moments = moments_avx2,   \
    .exp = exp_run_avx2, .peak = peak_avx2, .layer_affine = layer_affine_avx2,                              \
    .norm_transpose_out = transpose_out_avx2
// The 256-bit float kernels (levels avx2 and avxvnni).
#define X86_FLOAT_256                                                                                   \
    .quantize_row = quantize_row_avx2, .quantize_span = quantize_span_avx2, .sgemm = &sgemm_kernel_avx2, \
    .norm_normalize = normalize_avx2, .silu = silu_run_avx2, .exp_sum = exp_sum_avx2,                     \
    .gelu = gelu_run_avx2, .geglu = geglu_avx2
// The 512-bit float kernels (levels avx512 and amx).
#define X86_FLOAT_512                                                                                          \
    .quantize_row = quantize_row_avx512, .quantize_span = quantize_span_avx512, .sgemm = &sgemm_kernel_avx512, \
    .norm_normalize = normalize_avx512, .silu = silu_run_avx512, .exp_sum = exp_sum_avx512,                     \
    .gelu = gelu_run_avx512, .geglu = geglu_avx512
// int16 panels of 8 weight rows for the block-scale kernel with the outputs in lanes (rows ≥ 4).
#define BLOCK_PANELS                                                                                           \
    .pack_blocks = {4, 8, 1, block_panels_bytes, pack_block_panels_i8}, .gemm_blocks_packed = gemm_i8i8_blocks_avx2_packed
// The VNNI integer GEMMs in one encoding, with int8 weights prepared as panels of 8 rows for the
// outputs-in-lanes kernel (worth it only when a layer call's threads share them).
#define VNNI(enc)                                                                                              \
    .small_rows = 0, .gemm_i8i8 = gemm_i8i8_i32_vnni_##enc, .gemm_i8i8_small = gemm_i8i8_i32_vnni_##enc,       \
    .gemm_i16i8 = gemm_i16i8_i32_vnni_##enc, .gemm_i16i8_small = gemm_i16i8_i32_vnni_##enc,                    \
    .pack_i8 = {4, 8, 0, vnni_panels_bytes, pack_panels_vnni_##enc}, .pack_i16 = NO_PACKING,                   \
    .gemm_i8i8_packed = gemm_i8i8_i32_panels_vnni_##enc

static const kernel_table avx2 = {
    .name = "avx2", .variant = "avx2", .requires = CPU_X86_BASE, X86_COMMON, X86_FLOAT_256,
    .small_rows = 0, .gemm_i8i8 = gemm_i8i8_i32_avx2, .gemm_i8i8_small = gemm_i8i8_i32_avx2,
    .gemm_i16i8 = gemm_i16i8_i32_avx2, .gemm_i16i8_small = gemm_i16i8_i32_avx2,
    .pack_i8 = NO_PACKING, .pack_i16 = NO_PACKING, BLOCK_PANELS,
};

// Level avxvnni in the VEX encoding (AVX-VNNI: Alder Lake and later, Zen 5), preferred where the
// CPU has it, and in the EVEX one (AVX512-VNNI: Cascade Lake, Ice Lake, Zen 4, none with AVX-VNNI).
static const kernel_table avxvnni_vex = {
    .name = "avxvnni", .variant = "avxvnni-vex", .requires = CPU_X86_BASE | CPU_X86_AVXVNNI,
    X86_COMMON, X86_FLOAT_256, VNNI(vex), BLOCK_PANELS,
};
static const kernel_table avxvnni_evex = {
    .name = "avxvnni", .variant = "avxvnni-evex", .requires = CPU_X86_BASE | CPU_X86_AVX512,
    X86_COMMON, X86_FLOAT_256, VNNI(evex), BLOCK_PANELS,
};

// The 512-bit kernels (sgemm's tile, norms, activations, quantizer) use F, BW, VL and DQ; the
// integer GEMMs are the EVEX VNNI ones, which need AVX512-VNNI.
static const kernel_table avx512 = {
    .name = "avx512", .variant = "avx512", .requires = CPU_X86_BASE | CPU_X86_AVX512,
    X86_COMMON, X86_FLOAT_512, VNNI(evex), BLOCK_PANELS,
};

// AMX-INT8 tiles for the integer GEMMs. Below AMX_MIN_ROWS rows, packing the weights for the
// tiles takes longer than the VNNI kernel takes for the whole product, so those products run
// there and layer calls prepare the tiles only from that many rows (per call too: packing pays
// for itself within one call). The int16 split uses VBMI's byte permutes (every AMX CPU has them).
static const kernel_table amx = {
    .name = "amx", .variant = "amx", .requires = CPU_X86_BASE | CPU_X86_AVX512 | CPU_X86_AVX512VBMI | CPU_X86_AMX,
    X86_COMMON, X86_FLOAT_512,
    .small_rows = AMX_MIN_ROWS, .gemm_i8i8 = gemm_i8i8_i32_amx, .gemm_i8i8_small = gemm_i8i8_i32_vnni_evex,
    .gemm_i16i8 = gemm_i16i8_i32_amx, .gemm_i16i8_small = gemm_i16i8_i32_vnni_evex,
    .pack_i8 = {AMX_MIN_ROWS, 16, 1, amx_packed_bytes_i8, amx_pack_panels_i8},
    .pack_i16 = {AMX_MIN_ROWS, 16, 1, amx_packed_bytes_i16, amx_pack_panels_i16},
    .gemm_i8i8_packed = gemm_i8i8_i32_amx_packed, .gemm_i16i8_packed = gemm_i16i8_i32_amx_packed,
    .pack_blocks = {AMX_MIN_ROWS, 16, 1, amx_packed_bytes_i8, amx_pack_panels_i8},
    .gemm_blocks_packed = gemm_i8i8_blocks_amx_packed,
};

static const kernel_table *const tables[] = {&scalar, &avx2, &avxvnni_vex, &avxvnni_evex, &avx512, &amx};

// MARK: - arm64

#elif defined(__aarch64__)
// The SDOT kernel (FEAT_DotProd) where the CPU has it, else SMULL (baseline ARMv8-A).
#define NEON(int8_kernel)                                                                                        \
    .name = "neon", .arch = KERNEL_ARCH_ARM,                                                                     \
    .axpy_f32 = axpy_f32_neon, .f32_to_f16 = f32_to_f16_neon, .f16_to_f32 = f16_to_f32_neon,                     \
    .f32_to_bf16 = f32_to_bf16_neon, .quantize_i8 = quantize_i8_neon, .error_energy = error_energy_neon,         \
    .small_rows = 0, .gemm_i8i8 = int8_kernel, .gemm_i8i8_small = int8_kernel, .gemm_i16i8 = gemm_i16i8_i32_neon, \
    .gemm_i16i8_small = gemm_i16i8_i32_neon, .pack_i8 = NO_PACKING, .pack_i16 = NO_PACKING,                      \
    .pack_blocks = NO_PACKING, .gemm_blocks = gemm_i8i8_blocks_neon, .quantize_row = quantize_row_neon,          \
    .quantize_span = quantize_span_neon, .pixel_amax = pixel_amax_neon, .quantize_full_block = NULL,             \
    .epilogue_conv = epilogue_conv_neon, .epilogue_linear = epilogue_linear_neon,                                \
    .chw_to_hwc = chw_to_hwc_scalar, .sgemm = &sgemm_kernel_neon, .norm_moments = moments_neon,                  \
    .norm_normalize = normalize_neon, .silu = silu_run_neon, .exp = exp_run_neon, .exp_sum = exp_sum_neon,       \
    .peak = peak_neon, .layer_affine = layer_affine_scalar, .norm_transpose_out = transpose_out_scalar,          \
    .gelu = gelu_run_neon, .geglu = geglu_neon

static const kernel_table neon_sdot = {NEON(gemm_i8i8_i32_neon_sdot), .variant = "neon-sdot",
                                       .requires = CPU_ARM_NEON | CPU_ARM_DOTPROD};
static const kernel_table neon_smull = {NEON(gemm_i8i8_i32_neon_smull), .variant = "neon-smull",
                                        .requires = CPU_ARM_NEON};

static const kernel_table *const tables[] = {&scalar, &neon_sdot, &neon_smull};
#else
static const kernel_table *const tables[] = {&scalar};
#endif

// MARK: - Choice

enum { TABLES = sizeof tables / sizeof tables[0] };

static int runs_on(const kernel_table *t, unsigned features) { return (t->requires & features) == t->requires; }

// The variants of a level are listed in order of preference: the first one the CPU can run.
const kernel_table *kernel_table_named(const char *name, unsigned features) {
    if (!name) return NULL;
    for (int i = 0; i < TABLES; i++)
        if (strcasecmp(name, tables[i]->name) == 0 && runs_on(tables[i], features)) return tables[i];
    return NULL;
}

// Levels are listed lowest first: the last one the CPU can run, in its preferred variant.
const kernel_table *kernel_table_best(unsigned features) {
    for (int i = TABLES - 1; i > 0; i--)
        if (runs_on(tables[i], features)) return kernel_table_named(tables[i]->name, features);
    return &scalar;
}

// The public context (dloral_kernels.h): a kernel table, immutable, so any number of levels can
// run side by side.

const dloral_kernels *dloral_kernels_for_level(const char *name) { return kernel_table_named(name, cpu_features()); }

const dloral_kernels *dloral_kernels_auto(void) {
    // Chosen once; racing first callers compute the same table.
    static const kernel_table *chosen;
    const kernel_table *t = __atomic_load_n(&chosen, __ATOMIC_ACQUIRE);
    if (!t) {
        t = kernel_table_named(getenv("DLORAL_KERNELS"), cpu_features());
        if (!t) t = kernel_table_best(cpu_features());
        __atomic_store_n(&chosen, t, __ATOMIC_RELEASE);
    }
    return t;
}

const char *dloral_kernels_name(const dloral_kernels *kernels) { return kernels->name; }
