// Scaled dot-product attention, one (batch, head, block of queries) task at a time
// (dloral_attention_run).
//
// A task is the three steps the engine ran as separate whole-tensor calls before, in the same
// order and with the same arithmetic (so the same bits): S = alpha·Q·Kᵀ by dloral_sgemm,
// dloral_softmax on each row of S, O = S·V by dloral_sgemm. What changes is where the work
// happens:
// - a task runs start to end on one thread, so callers hand tasks to the cores instead of
//   splitting each GEMM, and its block of scores (rows × keys floats, about 1 MiB) is written,
//   normalised and read back while it is still in that core's L2;
// - K and V are packed for the GEMM once per (batch, head) on each thread, not once per block
//   (attention's products are short in k = d: packing K costs as much as multiplying by it).
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <stdio.h>
#include <stdlib.h>

// Queries per task: a multiple of 8 whose scores fit in about 1 MiB, at most 256.
static size_t block_rows(const dloral_attention_shape *a) {
    size_t rows = ((size_t)1 << 18) / (a->keys ? a->keys : 1) / 8 * 8;
    if (rows < 8) rows = 8;
    if (rows > 256) rows = 256;
    if (rows > a->queries) rows = a->queries;
    return rows ? rows : 1;
}

static size_t blocks_per_head(const dloral_attention_shape *a) {
    const size_t rows = block_rows(a);
    return (a->queries + rows - 1) / rows;
}

size_t dloral_attention_tasks(const dloral_attention_shape *a) {
    if (a->queries == 0 || a->heads == 0) return 0;
    return a->batch * a->heads * blocks_per_head(a);
}

static void out_of_memory(void) {
    fputs("dloral_attention_run: out of memory for the scores and packed K, V\n", stderr);
    abort();
}

void dloral_attention_run(const dloral_attention_shape *a, size_t first, size_t end) {
    const size_t rows_max = block_rows(a), blocks = blocks_per_head(a);
    const size_t c = a->heads * a->d, cv = a->heads * a->dv, s = a->keys, t = a->queries;
    if (first >= end) return;
    float *scores = s ? malloc(rows_max * s * sizeof(float)) : NULL;
    if (s && !scores) out_of_memory();
    sgemm_packed *keys = NULL, *values = NULL;
    size_t packed_for = (size_t)-1;  // the (batch, head) keys and values were packed for
    for (size_t task = first; task < end; task++) {
        const size_t pair = task / blocks, start = task % blocks * rows_max;
        const size_t batch = pair / a->heads, head = pair % a->heads;
        const size_t rows = t - start < rows_max ? t - start : rows_max;
        float *out = a->out + (batch * t + start) * cv + head * a->dv;
        if (s == 0 || a->dv == 0) {  // no keys: zeros, as torch's empty sum
            for (size_t r = 0; r < rows; r++)
                for (size_t j = 0; j < a->dv; j++) out[r * cv + j] = 0;
            continue;
        }
        if (pair != packed_for) {
            sgemm_packed_free(keys);
            sgemm_packed_free(values);
            keys = sgemm_pack_b(1, s, a->d, a->k + batch * s * c + head * a->d, c);
            values = sgemm_pack_b(0, a->dv, s, a->v + batch * s * cv + head * a->dv, cv);
            if (!keys || !values) out_of_memory();
            packed_for = pair;
        }
        sgemm_serial_packed(rows, a->alpha, a->q + (batch * t + start) * c + head * a->d, c, keys, 0.0f, scores, s);
        for (size_t r = 0; r < rows; r++) dloral_softmax(s, scores + r * s);
        sgemm_serial_packed(rows, 1.0f, scores, s, values, 0.0f, out, cv);
    }
    sgemm_packed_free(keys);
    sgemm_packed_free(values);
    free(scores);
}
