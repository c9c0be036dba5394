// Integer GEMM kernels: int8 × int8 → int32 and int16 × int8 → int32, both against int8 weight
// rows [n][kp] (Formats/dlrt.md §4), c[i][j] = Σ_k a[i][k]·w[j][k].
//
// Every path accumulates in 32-bit two's-complement arithmetic that wraps (unsigned in C, vpaddd
// in AVX2), and integer addition is associative mod 2^32, so all paths give the same bits for any
// input — and the exact sum whenever it fits int32 (the bounds are in dloral_kernels.h).
//
// The scalar functions are the exact reference. The AVX2 ones are compiled per function for
// avx2, the NEON ones (arm64) for the baseline ISA, except the SDOT kernel, which is compiled for
// the dotprod extension and used only when the CPU reports it; backend/kernel_table.c picks the
// kernels. kp is a multiple of 32 by contract; any other kp still works (the vector loops finish
// the row with scalar code). The NEON kernels are tested against the scalar ones under qemu-user
// (Tests/KernelCheck/run.sh), on a CPU model with dotprod and one without.
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// MARK: - Scalar reference

void gemm_i8i8_i32_scalar(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    for (size_t i = 0; i < m; i++) {
        const int8_t *ai = a + i * kp;
        for (size_t j = 0; j < n; j++) {
            const int8_t *wj = w + j * kp;
            uint32_t s = 0;
            for (size_t k = 0; k < kp; k++) s += (uint32_t)((int32_t)ai[k] * (int32_t)wj[k]);
            c[i * n + j] = (int32_t)s;
        }
    }
}

void gemm_i16i8_i32_scalar(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    for (size_t i = 0; i < m; i++) {
        const int16_t *ai = a + i * kp;
        for (size_t j = 0; j < n; j++) {
            const int8_t *wj = w + j * kp;
            uint32_t s = 0;
            for (size_t k = 0; k < kp; k++) s += (uint32_t)((int32_t)ai[k] * (int32_t)wj[k]);
            c[i * n + j] = (int32_t)s;
        }
    }
}

// int8 × int8 with one scale per row and block of `block` columns on both sides (Formats/dlrt.md
// §4.3): y[i·rs + j·cs] = acc, acc = bias[j] (0 without bias), then for each block b in order
// acc = fmaf((float)Σ_{k ∈ b} a[i][k]·w[j][k], sa[i][b]·sw[j][b], acc). A block's sum is exact
// (|Σ| ≤ 64·127² < 2^31), so every path gives these bits as long as it forms each block's sum,
// then one product and one fused multiply-add per block in this order.
void gemm_i8i8_blocks_scalar(size_t m, size_t n, size_t kp, size_t block, const int8_t *a, const float *sa,
                             const int8_t *w, const float *sw, const float *bias, float *y, size_t rs, size_t cs) {
    const size_t nb = kp / block;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            float acc = bias ? bias[j] : 0.0f;
            for (size_t b = 0; b < nb; b++) {
                const int8_t *ab = a + i * kp + b * block, *wb = w + j * kp + b * block;
                uint32_t s = 0;
                for (size_t k = 0; k < block; k++) s += (uint32_t)((int32_t)ab[k] * (int32_t)wb[k]);
                acc = fmaf((float)(int32_t)s, sa[i * nb + b] * sw[j * nb + b], acc);
            }
            y[i * rs + j * cs] = acc;
        }
}
