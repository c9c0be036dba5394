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

/// Symmetric int8 quantization of `groups` consecutive groups of `group_size` floats (Formats/
/// dlrt.md §4): scale = max|x| / 127 in float32 (1 for an all-zero group), q = clamp(rint(x /
/// scale), -127, 127) with float32 division and round-half-even. Adds Σx² and Σ(x − q·s)² to
/// energy[0], energy[1], accumulated in double in eight lanes (element i in lane i mod 8) summed
/// in lane order, identically on every path.
void dloral_quantize_i8(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]);

/// Adds Σref² and Σ(ref − approx)² to energy[0], energy[1] (same lane order as above).
void dloral_error_energy(size_t n, const float *ref, const float *approx, double energy[2]);

/// Rearranges a [N, C, KH, KW] conv weight into rows of `k_padded` columns in (kh, kw, c) order,
/// zero padding the tail of each row (Formats/dlrt.md §4).
void dloral_conv_to_rows(size_t n, size_t c, size_t kh, size_t kw, const float *src, float *dst, size_t k_padded);

#endif
