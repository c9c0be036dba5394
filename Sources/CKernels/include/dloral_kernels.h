// SIMD kernels for the DLoRAL toolchain: AVX2/FMA/F16C on x86-64 (with VNNI, AVX-512 and
// AMX-INT8 where the CPU has them), NEON on arm64, and a portable scalar fallback, chosen at run
// time. Every path gives bit-identical results (FMA is fused in all of them; conversions round to
// nearest even; integer sums are exact mod 2^32), so outputs do not depend on the machine.
// The level is a context passed to every entry point (dloral_kernels_auto: DLORAL_KERNELS=<level>
// in the environment, else the best level the CPU has; tests run every level the CPU has).
#ifndef DLORAL_KERNELS_H
#define DLORAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

// The thread pool (dloral_parallel_for, dloral_threads) is its own target, CThreadPool, shared
// with the file readers.
#include "dloral_thread_pool.h"

/// A kernel level: which kernel every entry point below runs. Every entry point that has a choice
/// takes one as its first argument, so callers (and tests) can run several levels side by side.
/// Contexts are immutable and live as long as the process; they need no freeing.
typedef struct dloral_kernels dloral_kernels;

/// The automatic level: DLORAL_KERNELS=<level> when this CPU can run it, else the highest level
/// the CPU (and, for AMX, the OS) supports. Chosen once, on the first call.
const dloral_kernels *dloral_kernels_auto(void);

/// The level named `name` — "scalar", "neon" (arm64), or on x86-64 "avx2" (AVX2/FMA/F16C),
/// "avxvnni" (+ AVX-VNNI or AVX512-VNNI: integer GEMMs with vpdpbusd / vpdpwssd), "avx512"
/// (+ AVX-512F, BW, VL, DQ and VNNI: the sgemm tile) or "amx" (+ AMX-INT8: the int8 × int8 GEMM
/// on tiles), case-insensitive — or NULL when the name is unknown or this CPU cannot run it.
const dloral_kernels *dloral_kernels_for_level(const char *name);

/// The level's name, one of those dloral_kernels_for_level accepts, in lower case.
const char *dloral_kernels_name(const dloral_kernels *kernels);

/// y[i] = fma(a, x[i], y[i]) for i < n.
void dloral_axpy_f32(const dloral_kernels *kernels, size_t n, float a, const float *x, float *y);

/// IEEE half from float, round to nearest even (as vcvtps2ph with imm 0).
void dloral_f32_to_f16(const dloral_kernels *kernels, size_t n, const float *src, uint16_t *dst);

/// float from IEEE half (exact).
void dloral_f16_to_f32(const dloral_kernels *kernels, size_t n, const uint16_t *src, float *dst);

/// bfloat16 from float, round to nearest even; NaN stays a quiet NaN.
void dloral_f32_to_bf16(const dloral_kernels *kernels, size_t n, const float *src, uint16_t *dst);

/// Symmetric int8 quantization of `groups` consecutive groups of `group_size` floats (Formats/
/// dlrt.md §4): scale = max|x| / 127 in float32 (1 for an all-zero group), q = clamp(rint(x /
/// scale), -127, 127) with float32 division and round-half-even. Adds Σx² and Σ(x − q·s)² to
/// energy[0], energy[1], accumulated in double in eight lanes (element i in lane i mod 8) summed
/// in lane order, identically on every path.
void dloral_quantize_i8(const dloral_kernels *kernels, size_t groups, size_t group_size, const float *src, int8_t *q, float *scales, double energy[2]);

/// Adds Σref² and Σ(ref − approx)² to energy[0], energy[1] (same lane order as above).
void dloral_error_energy(const dloral_kernels *kernels, size_t n, const float *ref, const float *approx, double energy[2]);

/// Rearranges a [N, C, KH, KW] conv weight into rows of `k_padded` columns in (kh, kw, c) order,
/// zero padding the tail of each row (Formats/dlrt.md §4).
void dloral_conv_to_rows(size_t n, size_t c, size_t kh, size_t kw, const float *src, float *dst, size_t k_padded);

/// Integer GEMM against int8 weight rows w[n][kp] (K zero-padded to a multiple of 32, Formats/
/// dlrt.md §4): c[i][j] = Σ_k a[i][k]·w[j][k] for i < m, j < n, with c row-major [m][n].
/// Accumulation is 32-bit two's complement, wrapping; every path gives the same bits, and the exact
/// sum whenever it fits int32.
///
/// int8 × int8: a and w must lie in [−127, 127] (the quantizer never writes −128; the AVX2 path
/// uses vpmaddubsw with |a| and sign(a)·w, and −128 weights cannot be negated there). Then
/// |c| ≤ kp·127² < 2^31 for kp < 133 144, so the result is always exact in practice.
void dloral_gemm_i8i8_i32(const dloral_kernels *kernels, size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c);

/// int16 activations × int8 weights, exact products (vpmaddwd). w in [−127, 127]; a may be any
/// int16. The sum is exact when kp·max|a|·max|w| < 2^31, i.e. max|a| ≤ 2^31 / (127·kp) − 1:
/// 1467 at kp = 11520 (SD 2.1, 1280·9), 4127 at kp = 4096; scale activations to that range (or
/// split K) — beyond it a sum with adversarial signs wraps mod 2^32 (identically on every path).
void dloral_gemm_i16i8_i32(const dloral_kernels *kernels, size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c);

/// Length of the blocks of k that dloral_sgemm sums separately (part of its exact result).
#define DLORAL_SGEMM_KC 256

/// Single-precision GEMM, row-major: C = alpha·op(A)·op(B) + beta·C with C m×n (row stride ldc),
/// op(A) m×k and op(B) k×n. op(X) = X when its flag is 0, Xᵀ otherwise: A is stored m×k (row
/// stride lda) or, with trans_a, k×m; B is stored k×n (ldb) or, with trans_b, n×k.
///
/// Exactly, on every path and for any thread count: k is cut into blocks of DLORAL_SGEMM_KC
/// consecutive indices (the last may be shorter) and, for each element and block in order,
///     S = +0;  for p in the block, increasing:  S = fma(op(A)[i][p], op(B)[p][j], S)
///     first block:  C[i][j] = (beta == 0) ? alpha·S : fma(alpha, S, beta·C[i][j])
///     later blocks: C[i][j] = fma(alpha, S, C[i][j])
/// where fma rounds once and alpha·S, beta·C are float products (exact for 1). So the AVX2, NEON
/// and scalar paths give the same bits (NaN payloads aside), and so does any DLORAL_THREADS. It
/// differs from OpenBLAS (other block sizes and orders) by rounding only; the error grows like
/// that of a KC-term sum plus a k/KC-term sum. beta == 0 does not read C (it may hold NaN);
/// k == 0 or alpha == 0 gives beta·C (zeros for beta == 0) without reading A or B. A and B must
/// not overlap C.
///
/// Runs on the pool of persistent worker threads (dloral_parallel_for; DLORAL_THREADS=N, default:
/// the online CPUs, at most 8; 1 runs everything on the calling thread).
/// C is split by rows or columns, never along k. Products below about 96³ multiply-adds run on
/// the calling thread. Safe to call from several threads at once: a call that finds the pool busy
/// runs on its own thread. Each thread that runs it keeps 1.1 MiB of packing buffers until it
/// exits.
void dloral_sgemm(const dloral_kernels *kernels, int trans_a, int trans_b, size_t m, size_t n, size_t k, float alpha, const float *a, size_t lda,
                  const float *b, size_t ldb, float beta, float *c, size_t ldc);

/// dloral_sgemm with either operand optionally stored as IEEE binary16 (a_half / b_half: a or b
/// then points at uint16_t elements, strides still in elements). Half elements are widened to
/// fp32 (exactly) as they are packed, so the result is bit for bit that of dloral_sgemm on the
/// widened matrix, without a widened copy: fp16 weights are used in place.
void dloral_sgemm_typed(const dloral_kernels *kernels, int trans_a, int trans_b, int a_half, int b_half, size_t m, size_t n, size_t k, float alpha,
                        const void *a, size_t lda, const void *b, size_t ldb, float beta, float *c, size_t ldc);

/// A 2-D convolution's geometry (groups 1, dilation 1): input [c, h, w], kernel kh×kw, stride
/// (sh, sw), zero padding (ph, pw) on each side, output ho×wo.
typedef struct {
    size_t c, h, w, kh, kw, sh, sw, ph, pw, ho, wo;
} dloral_conv_geometry;

/// One image's convolution as an implicit GEMM: out [o, ho·wo] = W · im2col(image) + beta·out,
/// W [o, c·kh·kw] row-major (fp32, or binary16 with w_half). The im2col matrix (rows in the
/// weight's (c, i, j) order, columns the output pixels, zeros in the padding) is gathered straight
/// into dloral_sgemm's packed panels, never stored: the result is bit for bit dloral_sgemm(0, 0,
/// o, ho·wo, c·kh·kw, 1, W, c·kh·kw, im2col, ho·wo, beta, out, ho·wo).
void dloral_sconv2d(const dloral_kernels *kernels, int w_half, size_t o, const void *weight, const dloral_conv_geometry *geometry,
                    const float *image, float beta, float *out);

/// torch.nn.functional.group_norm for one group (its `channels` consecutive channels of
/// `spatial` elements each), optionally followed by SiLU: y = silu?((x − mean)·rstd·scale[c] +
/// shift[c]), scale / shift NULL for 1 / 0. Mean and biased variance are summed in double; the
/// exact arithmetic (summation order, the exp used by SiLU, ~1 ulp) is in generic/norm.c's header and is
/// the same on every kernel path. x and y may be the same buffer.
void dloral_group_norm(const dloral_kernels *kernels, size_t channels, size_t spatial, const float *x, const float *scale, const float *shift,
                       float eps, int silu, float *y);

/// The statistics dloral_group_norm uses for one group of `count` elements: its mean and
/// rstd = 1 / sqrt(variance + eps), computed in double as described there and rounded to float.
void dloral_group_norm_stats(const dloral_kernels *kernels, size_t count, const float *x, float eps, float *mean, float *rstd);

/// The moments dloral_group_norm_stats starts from: the mean and biased variance of `count`
/// elements, summed in double as there, each rounded to float once (for statistics that are
/// combined over several tensors before they are applied, as a tiled VAE does).
void dloral_group_norm_moments(const dloral_kernels *kernels, size_t count, const float *x, float *mean, float *variance);

/// dloral_group_norm with the statistics given: y = silu?((x − mean)·rstd·scale[c] + shift[c])
/// for one group of `channels` consecutive channels of `spatial` elements, scale / shift NULL for
/// 1 / 0; dloral_group_norm is this with its own dloral_group_norm_stats. x and y may be the same
/// buffer.
void dloral_group_norm_apply(const dloral_kernels *kernels, size_t channels, size_t spatial, const float *x, float mean, float rstd,
                             const float *scale, const float *shift, int silu, float *y);

/// GroupNorm (optionally + SiLU) of one image x [channels][spatial] written channels-last,
/// y[p·channels + c], for pixels p in [p0, p1) (threads can split the pixels). mean and rstd
/// are per channel (each channel's group's dloral_group_norm_stats); scale / shift per channel or
/// NULL. Every value has the bits dloral_group_norm gives it: this is dloral_group_norm followed
/// by a transpose, in one pass, for a consumer that wants channels-last (the integer conv).
void dloral_group_norm_nhwc(const dloral_kernels *kernels, size_t channels, size_t spatial, const float *x, const float *mean, const float *rstd,
                            const float *scale, const float *shift, int silu, float *y, size_t p0, size_t p1);

/// torch.nn.functional.layer_norm over the last axis for rows [r0, r1) of x [rows][d]: mean and
/// biased variance of each row as dloral_group_norm_stats computes them (double, 8 lanes), then
/// y = ((x − mean)·rstd)·weight[j] + bias[j], each operation rounded (weight / bias NULL: that
/// step is skipped). The same bits on every kernel path; x and y may be the same buffer.
void dloral_layer_norm(const dloral_kernels *kernels, size_t d, const float *x, const float *weight, const float *bias, float eps, float *y,
                       size_t r0, size_t r1);

/// SiLU, y = x / (1 + exp(−x)) with generic/norm.c's exp (~1 ulp), the same bits on every kernel path.
/// x and y may be the same buffer.
void dloral_silu(const dloral_kernels *kernels, size_t n, const float *x, float *y);

/// Softmax of p[0 … n) in place, as torch.softmax: the maximum m subtracted first, e = exp(p − m)
/// with generic/norm.c's exp (~1 ulp), Σ e summed in 16 float lanes in a fixed order (generic/norm.c), then
/// p = e · (1 / Σ e). The same bits on every kernel path.
void dloral_softmax(const dloral_kernels *kernels, size_t n, float *p);

/// Multi-head scaled dot-product attention: q [batch][queries][heads·d], k [batch][keys][heads·d],
/// v [batch][keys][heads·dv], out [batch][queries][heads·dv], all contiguous; head h uses
/// channels [h·d, (h+1)·d) (of v and out: [h·dv, (h+1)·dv)).
typedef struct {
    size_t batch, queries, keys, heads, d, dv;
    float alpha;  // the logits' scale, 1/√d as the caller rounds it
    const float *q, *k, *v;
    float *out;
    /// 0: S = alpha·Q·Kᵀ in fp32 (below). 1: S on the integer path, per (batch, head): each
    /// channel i of K smoothed, k′[j][i] = k[j][i] − m[i] with m[i] = float(Σ_j k[j][i] (in
    /// double, in key order) / keys) (every logit of a query moves by the same q·m, so the
    /// softmax does not); each key row k′[j] and query row q[r] quantized as an int8 activation
    /// row (dloral_quantize_row, scales sk[j], sq[r]); S[r][j] = float(Σ_i qq[r][i]·kq[j][i])
    /// · ((alpha·sq[r])·sk[j]), the sum exact in int32, each product rounded (Formats/dlrt.md
    /// §4.2). The same bits on every kernel path.
    int int8_logits;
} dloral_attention_shape;

/// The number of tasks the attention is cut into: (batch, head, block of queries), each
/// independent of the others.
size_t dloral_attention_tasks(const dloral_attention_shape *a);

/// Runs tasks [first, end) on the calling thread (threads may run disjoint ranges at once). Each
/// task writes its block of out bit for bit as
///     S = alpha·Q·Kᵀ  (dloral_sgemm(0, 1, rows, keys, d, alpha, …, 0, S, keys))
///     dloral_softmax on each row of S
///     O = S·V         (dloral_sgemm(0, 0, rows, dv, keys, 1, S, keys, …, 0, O, heads·dv))
/// so the result does not depend on how the tasks are shared out. No keys: zeros. Uses no thread
/// pool; per thread it holds a block of scores (about 1 MiB) and K, V of one head packed.
void dloral_attention_run(const dloral_kernels *kernels, const dloral_attention_shape *a, size_t first, size_t end);

/// Exact GELU, y = 0.5·x·(1 + erf(x/√2)) (PyTorch approximate='none'), in float arithmetic
/// within 1.8 ulp wherever |y| ≥ 1e-30, the same bits on every kernel path. Computed as x − v for
/// x ≥ 0 and −v for x < 0 with v = |x|·Q(|x|), Q the normal tail 0.5·erfc(|x|/√2) (no
/// cancellation for negative x): for |x| < 1 a degree-9 polynomial for Q, above it
/// exp(−x²/2)·G(|x|), the exp by Cephes's polynomial on an exactly split x², G by degree-9
/// polynomials on 6 intervals (the exact arithmetic is in generic/activation.c's header). −0 for
/// x < −12 and −inf, +inf for +inf, NaN for NaN. x and y may be the same buffer.
void dloral_gelu(const dloral_kernels *kernels, size_t n, const float *x, float *y);

/// The GEGLU gate of diffusers' feed-forward: x is [rows][2·half], its first half h and second
/// half g; y[r][j] = h[r][j]·gelu(g[r][j]) with dloral_gelu's gelu, one more rounding. y is
/// [rows][half] and must not overlap x.
void dloral_geglu(const dloral_kernels *kernels, size_t rows, size_t half, const float *x, float *y);

/// glibc: serve every allocation from the heap (no per-allocation mmap) and never trim it, so
/// memory freed by one large tensor is reused by the next instead of being unmapped and faulted in
/// again (see DLoRALEngine's Allocator). Returns 1 when applied, 0 elsewhere (not glibc).
int dloral_keep_freed_memory(void);

#endif
