// The elementwise entry points (dloral_kernels.h): each runs its level's kernel (the scalar ones
// are generic/elementwise_scalar.c).
#include "dloral_kernels.h"
#include "kernel_table.h"
#include "kernels_internal.h"

#include <string.h>

void dloral_axpy_f32(const kernel_table *T, size_t n, float a, const float *x, float *y) { T->axpy_f32(n, a, x, y); }
void dloral_f32_to_f16(const kernel_table *T, size_t n, const float *src, uint16_t *dst) { T->f32_to_f16(n, src, dst); }
void dloral_f16_to_f32(const kernel_table *T, size_t n, const uint16_t *src, float *dst) { T->f16_to_f32(n, src, dst); }
void dloral_f32_to_bf16(const kernel_table *T, size_t n, const float *src, uint16_t *dst) { T->f32_to_bf16(n, src, dst); }

void dloral_quantize_i8(const kernel_table *T, size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]) {
    T->quantize_i8(groups, group_size, src, q, scales, energy);
}

void dloral_error_energy(const kernel_table *T, size_t n, const float *ref, const float *approx, double energy[2]) {
    T->error_energy(n, ref, approx, energy);
}

void dloral_conv_to_rows(size_t n, size_t c, size_t kh, size_t kw, const float *src, float *dst, size_t k_padded) {
    size_t k = c * kh * kw;
    for (size_t o = 0; o < n; o++) {
        const float *w = src + o * k;
        float *row = dst + o * k_padded;
        if (kh == 1 && kw == 1) {
            memcpy(row, w, k * sizeof(float));
        } else {
            // Write the row in order; read with a stride of kh·kw (the weight of one output
            // channel is small enough to stay in cache).
            size_t taps = kh * kw;
            for (size_t t = 0; t < taps; t++) {
                float *out = row + t * c;
                const float *in = w + t;
                for (size_t ci = 0; ci < c; ci++) out[ci] = in[ci * taps];
            }
        }
        memset(row + k, 0, (k_padded - k) * sizeof(float));
    }
}
