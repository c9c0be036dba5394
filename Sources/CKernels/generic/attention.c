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
//
// With int8_logits the logits come from the integer path instead (dloral_attention_shape):
// per (batch, head), K is smoothed — each channel's mean over the keys subtracted, which changes
// every logit of a query by the same amount and so no softmax — and each key row quantized to
// int8; per task each query row is quantized to int8, the int32 products summed exactly
// (dloral_gemm_i8i8_i32; at the amx level on the tiles, K packed once per head) and scaled back;
// softmax and the product with V stay in fp32.
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include "kernel_table.h"
#include "kernels_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma STDC FP_CONTRACT OFF

static void out_of_memory(void) {
    fputs("dloral_attention_run: out of memory for the scores and packed K, V\n", stderr);
    abort();
}

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

// One head's keys on the integer path: smoothed, quantized rows [keys][kp] and their scales,
// and the rows prepared for the GEMM.
typedef struct {
    int8_t *rows;
    float *scales;
    dloral_int_weights *prepared;
} int_keys;

static void int_keys_free(int_keys *keys) {
    dloral_int_weights_free(keys->prepared);
    free(keys->rows);
    free(keys->scales);
    *keys = (int_keys){NULL, NULL, NULL};
}

// k: the head's first key channel (rows c floats apart); smoothed into `row` one key at a time.
static void int_keys_make(const kernel_table *T, int_keys *keys, size_t s, size_t d, size_t kp, size_t rows_min, const float *k, size_t c) {
    keys->rows = malloc(s * kp + 64);
    keys->scales = malloc(s * sizeof(float) + 4);
    double *sum = calloc(d ? d : 1, sizeof(double));
    float *mean = malloc(d * sizeof(float) + 4), *row = malloc(d * sizeof(float) + 4);
    if (!keys->rows || !keys->scales || !sum || !mean || !row) out_of_memory();
    // mean[i] = Σ over the keys in order of k[j][i], in double, / s, rounded to float.
    for (size_t j = 0; j < s; j++)
        for (size_t i = 0; i < d; i++) sum[i] += (double)k[j * c + i];
    for (size_t i = 0; i < d; i++) mean[i] = (float)(sum[i] / (double)s);
    for (size_t j = 0; j < s; j++) {
        for (size_t i = 0; i < d; i++) row[i] = k[j * c + i] - mean[i];
        keys->scales[j] = dloral_quantize_row(T, 8, d, kp, row, keys->rows + j * kp);
    }
    keys->prepared = dloral_int_weights_new(T, 8, rows_min, s, kp, keys->rows);
    dloral_int_weights_pack(keys->prepared, 0, dloral_int_weights_pieces(keys->prepared));
    free(sum), free(mean), free(row);
}

// S[r][j] = (float)acc[r][j] · ((alpha·sq[r]) · sk[j]), each product rounded; acc and S share
// the buffer.
static void int_logits(size_t rows, size_t s, float alpha, const float *sq, const float *sk, void *buffer) {
    for (size_t r = 0; r < rows; r++) {
        const int32_t *acc = (const int32_t *)buffer + r * s;
        float *out = (float *)buffer + r * s;
        const float t = alpha * sq[r];
        for (size_t j = 0; j < s; j++) out[j] = (float)acc[j] * (t * sk[j]);
    }
}

void dloral_attention_run(const kernel_table *T, const dloral_attention_shape *a, size_t first, size_t end) {
    const size_t rows_max = block_rows(a), blocks = blocks_per_head(a);
    const size_t c = a->heads * a->d, cv = a->heads * a->dv, s = a->keys, t = a->queries;
    if (first >= end) return;
    float *scores = s ? malloc(rows_max * s * sizeof(float)) : NULL;
    if (s && !scores) out_of_memory();
    const size_t kp = (a->d + 31) / 32 * 32;
    int8_t *queries = NULL;
    float *query_scales = NULL;
    if (a->int8_logits) {
        queries = malloc(rows_max * kp + 64);
        query_scales = malloc(rows_max * sizeof(float) + 4);
        if (!queries || !query_scales) out_of_memory();
    }
    int_keys int_k = {NULL, NULL, NULL};
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
        const float *k = a->k + batch * s * c + head * a->d, *q = a->q + (batch * t + start) * c + head * a->d;
        if (pair != packed_for) {
            sgemm_packed_free(keys);
            sgemm_packed_free(values);
            int_keys_free(&int_k);
            keys = NULL;
            if (a->int8_logits) int_keys_make(T, &int_k, s, a->d, kp, rows_max, k, c);
            else keys = sgemm_pack_b(T, 1, s, a->d, k, c);
            values = sgemm_pack_b(T, 0, a->dv, s, a->v + batch * s * cv + head * a->dv, cv);
            if ((!keys && !a->int8_logits) || !values) out_of_memory();
            packed_for = pair;
        }
        if (a->int8_logits) {
            for (size_t r = 0; r < rows; r++)
                query_scales[r] = dloral_quantize_row(T, 8, a->d, kp, q + r * c, queries + r * kp);
            int_gemm_prepared(T, 8, rows, s, kp, queries, int_k.rows, int_k.prepared, (int32_t *)scores);
            int_logits(rows, s, a->alpha, query_scales, int_k.scales, scores);
        } else {
            sgemm_serial_packed(rows, a->alpha, q, c, keys, 0.0f, scores, s);
        }
        for (size_t r = 0; r < rows; r++) dloral_softmax(T, s, scores + r * s);
        sgemm_serial_packed(rows, 1.0f, scores, s, values, 0.0f, out, cv);
    }
    sgemm_packed_free(keys);
    sgemm_packed_free(values);
    int_keys_free(&int_k);
    free(queries), free(query_scales);
    free(scores);
}
