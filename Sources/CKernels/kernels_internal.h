// Per-path entry points behind the dispatchers in dispatch.c.
#ifndef DLORAL_KERNELS_INTERNAL_H
#define DLORAL_KERNELS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

void axpy_f32_scalar(size_t n, float a, const float *x, float *y);
void f32_to_f16_scalar(size_t n, const float *src, uint16_t *dst);
void f16_to_f32_scalar(size_t n, const uint16_t *src, float *dst);
void f32_to_bf16_scalar(size_t n, const float *src, uint16_t *dst);
uint16_t f32_to_f16_one(float value);
float f16_to_f32_one(uint16_t bits);
uint16_t f32_to_bf16_one(float value);
void quantize_i8_scalar(size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]);
void error_energy_scalar(size_t n, const float *ref, const float *approx, double energy[2]);

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
#endif

// Integer GEMM (int8_gemm.c).
void gemm_i8i8_i32_scalar(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
void gemm_i16i8_i32_scalar(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);
#if defined(__x86_64__)
void gemm_i8i8_i32_avx2(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);
void gemm_i16i8_i32_avx2(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);
#endif

#endif
