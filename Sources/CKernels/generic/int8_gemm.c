// The integer GEMM entry points (dloral_kernels.h): the level's kernels, by the number of rows
// (the scalar reference kernels are generic/int8_gemm_scalar.c).
#include "dloral_kernels.h"
#include "kernel_table.h"
#include "kernels_internal.h"

#include <string.h>

void dloral_gemm_i8i8_i32(const kernel_table *T, size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    (m < T->small_rows ? T->gemm_i8i8_small : T->gemm_i8i8)(m, n, kp, a, w, c);
}

void dloral_gemm_i16i8_i32(const kernel_table *T, size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    (m < T->small_rows ? T->gemm_i16i8_small : T->gemm_i16i8)(m, n, kp, a, w, c);
}
