// SIMD kernels for the DLoRAL toolchain: AVX2/FMA/F16C on x86-64, NEON on arm64, and a portable
// scalar fallback, chosen at run time. Every path gives bit-identical results (FMA is fused in
// all of them; conversions round to nearest even), so outputs do not depend on the machine.
// DLORAL_KERNELS=scalar in the environment forces the fallback (tests run every path).
#ifndef DLORAL_KERNELS_H
#define DLORAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/// Name of the path in use: "avx2", "neon" or "scalar".
const char *dloral_kernels_isa(void);

/// y[i] = fma(a, x[i], y[i]) for i < n.
void dloral_axpy_f32(size_t n, float a, const float *x, float *y);

/// IEEE half from float, round to nearest even (as vcvtps2ph with imm 0).
void dloral_f32_to_f16(size_t n, const float *src, uint16_t *dst);

/// float from IEEE half (exact).
void dloral_f16_to_f32(size_t n, const uint16_t *src, float *dst);

/// bfloat16 from float, round to nearest even; NaN stays a quiet NaN.
void dloral_f32_to_bf16(size_t n, const float *src, uint16_t *dst);

#endif
