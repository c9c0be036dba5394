// Bit-exactness check of every CKernels path this CPU has against the scalar reference (plain C,
// no Swift). Built from Sources/CKernels/*.c by Tools/neon/run.sh: natively on x86-64 (AVX2 vs
// scalar) and for arm64 under qemu-user, once on a CPU model with dotprod (NEON SDOT and SMULL
// kernels) and once without (SMULL only; the automatic choice must not pick SDOT there).
//
// Every check compares a vector path with the scalar one (or, for the integer GEMMs and the
// integer-valued sgemm case, with an exact closed form computed here in 64-bit integers),
// never with stored outputs. Prints one line per check and closes with "N passed, M failed";
// exits 1 on any mismatch.
//
// Sized to run in a few seconds under qemu-user (the big cases use K = 11520, the largest in the
// model, with few rows).
#include "dloral_int_layer.h"
#include "dloral_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// MARK: - Reporting

static int passed, failed;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// One summary line per check; `detail` says what was compared (or, on failure, the first mismatch).
static void report(int ok, const char *name, const char *fmt, ...) {
    char detail[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    printf("%s  %-58s %s\n", ok ? "PASS" : "FAIL", name, detail);
    fflush(stdout);
    if (ok) passed++;
    else failed++;
}

static void *xmalloc(size_t bytes) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

// SplitMix64: the same inputs on every run and machine.
static uint64_t rng_state = 0x0123456789ABCDEFull;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int32_t rnd_in(int32_t lo, int32_t hi) { return lo + (int32_t)(rnd() % (uint64_t)(hi - lo + 1)); }
static float rnd_unit(void) { return (float)((double)(rnd() >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f; }

static uint32_t bits_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float float_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

// MARK: - Paths

typedef void (*gemm8_fn)(size_t, size_t, size_t, const int8_t *, const int8_t *, int32_t *);
typedef void (*gemm16_fn)(size_t, size_t, size_t, const int16_t *, const int8_t *, int32_t *);

struct path8 { const char *name; gemm8_fn fn; };
struct path16 { const char *name; gemm16_fn fn; };

// The vector path name dloral_kernels_force accepts on this CPU ("avx2" / "neon"), or NULL.
static const char *vec_isa;
static struct path8 paths8[8];
static struct path16 paths16[8];
static int n8, n16;

// The public entry points, with the vector path forced (checks dispatch.c's wiring too).
static void public_i8(size_t m, size_t n, size_t kp, const int8_t *a, const int8_t *w, int32_t *c) {
    dloral_kernels_force(vec_isa);
    dloral_gemm_i8i8_i32(m, n, kp, a, w, c);
    dloral_kernels_force(NULL);
}
static void public_i16(size_t m, size_t n, size_t kp, const int16_t *a, const int8_t *w, int32_t *c) {
    dloral_kernels_force(vec_isa);
    dloral_gemm_i16i8_i32(m, n, kp, a, w, c);
    dloral_kernels_force(NULL);
}

static void setup_paths(void) {
    paths8[n8++] = (struct path8){"scalar", gemm_i8i8_i32_scalar};
    paths16[n16++] = (struct path16){"scalar", gemm_i16i8_i32_scalar};
#if defined(__x86_64__)
    dloral_kernels_force("avx2");
    if (strcmp(dloral_kernels_isa(), "avx2") == 0) {
        vec_isa = "avx2";
        paths8[n8++] = (struct path8){"avx2", gemm_i8i8_i32_avx2};
        paths16[n16++] = (struct path16){"avx2", gemm_i16i8_i32_avx2};
    }
#elif defined(__aarch64__)
    dloral_kernels_force("neon");
    if (strcmp(dloral_kernels_isa(), "neon") == 0) vec_isa = "neon";
    paths8[n8++] = (struct path8){"neon-smull", gemm_i8i8_i32_neon_smull};
    if (neon_has_dotprod()) paths8[n8++] = (struct path8){"neon-sdot", gemm_i8i8_i32_neon_sdot};
    paths8[n8++] = (struct path8){"neon-auto", gemm_i8i8_i32_neon};
    paths16[n16++] = (struct path16){"neon", gemm_i16i8_i32_neon};
#endif
    dloral_kernels_force(NULL);
    if (vec_isa) {
        paths8[n8++] = (struct path8){"dloral_gemm_i8i8_i32[forced]", public_i8};
        paths16[n16++] = (struct path16){"dloral_gemm_i16i8_i32[forced]", public_i16};
    }
}

// MARK: - Integer GEMM

// The exact reference: 64-bit sums, reduced mod 2^32 at the end (what "wrapping 32-bit
// accumulation" means; equal to the exact sum whenever that fits int32).
static void gemm_ref64(size_t m, size_t n, size_t kp, const void *a, int a_bits, const int8_t *w, int32_t *c,
                       int *fits) {
    *fits = 1;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            int64_t s = 0;
            for (size_t k = 0; k < kp; k++) {
                int64_t x = a_bits == 8 ? ((const int8_t *)a)[i * kp + k] : ((const int16_t *)a)[i * kp + k];
                s += x * w[j * kp + k];
            }
            if (s < INT32_MIN || s > INT32_MAX) *fits = 0;
            c[i * n + j] = (int32_t)(uint32_t)(uint64_t)s;
        }
}

// Runs every path on (a, w) and compares with the 64-bit reference, with a and w at their
// allocation's alignment and one element off it; c is surrounded by guard words that must stay
// untouched. expect_wrap: 1 the data must overflow int32, 0 it must not, −1 either. One line.
static void check_gemm(const char *label, int a_bits, size_t m, size_t n, size_t kp, const void *a_in,
                       const int8_t *w_in, int expect_wrap) {
    const size_t ab = a_bits == 8 ? 1 : 2;
    const int npaths = a_bits == 8 ? n8 : n16;
    char name[160], problem[256] = "";
    snprintf(name, sizeof name, "gemm i%d×i8 %s m=%zu n=%zu kp=%zu", a_bits, label, m, n, kp);
    int fits = 1, offsets = 0;
    double dt_max = 0;
    for (int offset = 0; offset < 2 && !problem[0]; offset++) {
        if (offset && m * n * kp > 200000) break;  // the unaligned rerun only for the smaller cases
        offsets++;
        char *a = xmalloc(m * kp * ab + 16);
        int8_t *w = xmalloc(n * kp + 16);
        memcpy(a + offset * ab, a_in, m * kp * ab);
        memcpy(w + offset, w_in, n * kp);
        int32_t *want = xmalloc((m * n + 1) * 4);
        gemm_ref64(m, n, kp, a + offset * ab, a_bits, w + offset, want, &fits);
        for (int p = 0; p < npaths && !problem[0]; p++) {
            const char *pname = a_bits == 8 ? paths8[p].name : paths16[p].name;
            int32_t *c = xmalloc((m * n + 2) * 4);
            for (size_t t = 0; t < m * n + 2; t++) c[t] = (int32_t)0x5A5A5A5A;
            double t0 = now();
            if (a_bits == 8) paths8[p].fn(m, n, kp, (const int8_t *)(a + offset), w + offset, c + 1);
            else paths16[p].fn(m, n, kp, (const int16_t *)(a + offset * 2), w + offset, c + 1);
            double dt = now() - t0;
            if (dt > dt_max) dt_max = dt;
            for (size_t t = 0; t < m * n; t++)
                if (c[1 + t] != want[t]) {
                    snprintf(problem, sizeof problem, "%s%s: c[%zu][%zu] = %d, want %d", pname,
                             offset ? " (unaligned)" : "", t / n, t % n, c[1 + t], want[t]);
                    break;
                }
            if (!problem[0] && (c[0] != (int32_t)0x5A5A5A5A || c[m * n + 1] != (int32_t)0x5A5A5A5A))
                snprintf(problem, sizeof problem, "%s: wrote outside c", pname);
            free(c);
        }
        free(want), free(a), free(w);
    }
    if (!problem[0] && expect_wrap >= 0 && expect_wrap == fits)
        snprintf(problem, sizeof problem, "test data %s int32 unexpectedly", fits ? "fits" : "overflows");
    if (problem[0]) {
        report(0, name, "%s", problem);
        return;
    }
    char paths[256] = "";
    for (int p = 0; p < npaths; p++) {
        strncat(paths, p ? " " : "", sizeof paths - strlen(paths) - 1);
        strncat(paths, a_bits == 8 ? paths8[p].name : paths16[p].name, sizeof paths - strlen(paths) - 1);
    }
    report(1, name, "%s%s [%s] (slowest %.3f s)", fits ? "exact" : "wraps mod 2^32",
           offsets > 1 ? ", aligned + unaligned" : "", paths, dt_max);
}

enum fill { RANDOM, CONST, SIGNS };

// Activations: RANDOM in [lo, hi]; CONST all v; SIGNS ±v at random.
static void *make_a(int bits, size_t count, enum fill f, int32_t lo, int32_t hi, int32_t v) {
    void *a = xmalloc(count * (bits == 8 ? 1 : 2));
    for (size_t t = 0; t < count; t++) {
        int32_t x = f == RANDOM ? rnd_in(lo, hi) : f == CONST ? v : ((rnd() & 1) ? v : -v);
        if (bits == 8) ((int8_t *)a)[t] = (int8_t)x;
        else ((int16_t *)a)[t] = (int16_t)x;
    }
    return a;
}

static void check_int_gemms(void) {
    // int8 × int8: random activations in the full int8 range (−128 included), weights in [−127, 127].
    static const size_t shapes[][3] = {
        {1, 1, 32}, {4, 4, 32}, {5, 7, 64}, {13, 9, 96}, {8, 12, 320}, {3, 5, 11}, {6, 3, 47},
        {9, 17, 100}, {1, 13, 17}, {7, 1, 15}, {2, 2, 1}, {3, 3, 0}, {33, 35, 64},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        size_t m = shapes[s][0], n = shapes[s][1], kp = shapes[s][2];
        int8_t *a = make_a(8, m * kp, RANDOM, -128, 127, 0);
        int8_t *w = make_a(8, n * kp, RANDOM, -127, 127, 0);
        check_gemm("random", 8, m, n, kp, a, w, 0);
        free(a), free(w);
    }
    // The largest K of the model (SD 2.1: 1280·9) and a K that is not a multiple of 16.
    const size_t big_k = 11520, big_m = 9, big_n = 10;
    {
        int8_t *a = make_a(8, big_m * big_k, RANDOM, -128, 127, 0);
        int8_t *w = make_a(8, big_n * big_k, RANDOM, -127, 127, 0);
        check_gemm("random", 8, big_m, big_n, big_k, a, w, 0);
        free(a), free(w);
        a = make_a(8, 5 * 11529, RANDOM, -128, 127, 0);
        w = make_a(8, 7 * 11529, RANDOM, -127, 127, 0);
        check_gemm("random", 8, 5, 7, 11529, a, w, 0);
        free(a), free(w);
    }
    // Adversarial int8: −128 activations against ±127 weights (the largest int16 pair sums of the
    // SMULL kernel, ±32512, and of AVX2's vpmaddubsw), and 127 × 127.
    {
        struct { const char *label; enum fill af; int32_t av; enum fill wf; int32_t wv; } cases[] = {
            {"a=-128 w=+127", CONST, -128, CONST, 127}, {"a=-128 w=-127", CONST, -128, CONST, -127},
            {"a=+127 w=+127", CONST, 127, CONST, 127},  {"a=+127 w=-127", CONST, 127, CONST, -127},
            {"a=-128 w=±127", CONST, -128, SIGNS, 127}, {"a=±128/127 w=±127", SIGNS, 127, SIGNS, 127},
        };
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            for (size_t kp = 32; kp <= 11520; kp = kp == 32 ? 64 : kp == 64 ? 11520 : 20000) {
                size_t m = kp > 64 ? 5 : 9, n = kp > 64 ? 6 : 11;
                int8_t *a = make_a(8, m * kp, cases[t].af, 0, 0, cases[t].av);
                if (t == 5)  // ±: −128 where the sign is negative
                    for (size_t q = 0; q < m * kp; q++) a[q] = (rnd() & 1) ? 127 : -128;
                int8_t *w = make_a(8, n * kp, cases[t].wf, 0, 0, cases[t].wv);
                check_gemm(cases[t].label, 8, m, n, kp, a, w, 0);
                // Closed form for the constant cases: c = a·w·kp.
                if (cases[t].af == CONST && cases[t].wf == CONST) {
                    int32_t c[11 * 9], want = cases[t].av * cases[t].wv * (int32_t)kp;
                    int ok = 1;
                    for (int p = 0; p < n8; p++) {
                        paths8[p].fn(m, n, kp, a, w, c);
                        for (size_t q = 0; q < m * n; q++) ok &= c[q] == want;
                    }
                    char name[128];
                    snprintf(name, sizeof name, "gemm i8×i8 closed form %s kp=%zu", cases[t].label, kp);
                    report(ok, name, "every path: c = %d", want);
                }
                free(a), free(w);
            }
        }
    }
    // int16 × int8 within the documented bound (|a| ≤ dloral_activation_qmax(16, kp): exact).
    static const size_t shapes16[][3] = {
        {1, 1, 32}, {4, 4, 32}, {5, 7, 64}, {13, 9, 96}, {3, 5, 11}, {6, 3, 47}, {9, 17, 100}, {2, 2, 1},
        {3, 3, 0}, {33, 35, 64}, {5, 7, 7},
    };
    for (size_t s = 0; s < sizeof shapes16 / sizeof shapes16[0]; s++) {
        size_t m = shapes16[s][0], n = shapes16[s][1], kp = shapes16[s][2];
        int32_t q = dloral_activation_qmax(16, kp);
        int16_t *a = make_a(16, m * kp, RANDOM, -q, q, 0);
        int8_t *w = make_a(8, n * kp, RANDOM, -127, 127, 0);
        check_gemm("random |a|≤qmax", 16, m, n, kp, a, w, 0);
        free(a), free(w);
    }
    {
        int32_t q = dloral_activation_qmax(16, big_k);  // 1467
        int16_t *a = make_a(16, big_m * big_k, RANDOM, -q, q, 0);
        int8_t *w = make_a(8, big_n * big_k, RANDOM, -127, 127, 0);
        check_gemm("random |a|≤qmax", 16, big_m, big_n, big_k, a, w, 0);
        free(a), free(w);
        // At the bound with every product the same sign: the largest exact sums.
        a = make_a(16, 5 * big_k, CONST, 0, 0, q);
        w = make_a(8, 6 * big_k, CONST, 0, 0, -127);
        check_gemm("a=+qmax w=-127 (at the bound)", 16, 5, 6, big_k, a, w, 0);
        free(a), free(w);
    }
    // int16 extremes that wrap: the sums leave int32 and must wrap identically on every path.
    {
        struct { const char *label; enum fill af; int32_t av; enum fill wf; int32_t wv; size_t kp; } cases[] = {
            {"a=-32768 w=-127 wraps", CONST, -32768, CONST, -127, 11520},
            {"a=+32767 w=+127 wraps", CONST, 32767, CONST, 127, 11520},
            {"a=-32768 w=+127 kp=4096 wraps", CONST, -32768, CONST, 127, 4096},
            {"a=±32767 w=±127 random signs", SIGNS, 32767, SIGNS, 127, 11520},
            {"a=-32768 w=-128 (outside contract)", CONST, -32768, CONST, -128, 1000},
        };
        for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
            size_t kp = cases[t].kp, m = 5, n = 6;
            int16_t *a = make_a(16, m * kp, cases[t].af, 0, 0, cases[t].av);
            int8_t *w = make_a(8, n * kp, cases[t].wf, 0, 0, cases[t].wv);
            check_gemm(cases[t].label, 16, m, n, kp, a, w, t < 3 ? 1 : -1);
            if (cases[t].af == CONST && cases[t].wf == CONST) {
                int32_t c[30];
                int32_t want = (int32_t)(uint32_t)(uint64_t)((int64_t)cases[t].av * cases[t].wv * (int64_t)kp);
                int ok = 1;
                for (int p = 0; p < n16; p++) {
                    paths16[p].fn(m, n, kp, a, w, c);
                    for (size_t q = 0; q < m * n; q++) ok &= c[q] == want;
                }
                char name[128];
                snprintf(name, sizeof name, "gemm i16×i8 closed form %s", cases[t].label);
                report(ok, name, "every path: c = (a·w·kp) mod 2^32 = %d", want);
            }
            free(a), free(w);
        }
        // Random int16 over the whole range (sums beyond int32 at random).
        int16_t *a = make_a(16, 7 * 3000, RANDOM, -32768, 32767, 0);
        int8_t *w = make_a(8, 9 * 3000, RANDOM, -127, 127, 0);
        check_gemm("random full int16", 16, 7, 9, 3000, a, w, -1);
        free(a), free(w);
    }
    // Nothing to do: m or n zero leaves c untouched (the guard words cover it).
    {
        int8_t a[64] = {1}, w[64] = {1};
        int16_t a16[64] = {1};
        check_gemm("empty", 8, 0, 3, 32, a, w, 0);
        check_gemm("empty", 8, 2, 0, 32, a, w, 0);
        check_gemm("empty", 16, 0, 3, 32, a16, w, 0);
        check_gemm("empty", 16, 2, 0, 32, a16, w, 0);
    }
}

// MARK: - sgemm

// C = alpha·op(A)·op(B) + beta·C on the scalar path and on the vector path; the bits must match
// (the padding columns of C too: untouched). beta = 0 runs on a C full of NaN, which must not be
// read. With `integers`, A and B hold small integers, so every path's result is the exact integer
// product: checked against a closed form as well. Returns 0 and describes the first mismatch in
// `problem` on failure.
static int sgemm_case(int ta, int tb, size_t m, size_t n, size_t k, float alpha, float beta, int integers,
                      char *problem, size_t plen) {
    const size_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 2, ldc = n + 5;
    const size_t arows = ta ? k : m, brows = tb ? n : k;
    float *a = xmalloc((arows * lda + 1) * 4), *b = xmalloc((brows * ldb + 1) * 4);
    float *c0 = xmalloc((m * ldc + 1) * 4), *c1 = xmalloc((m * ldc + 1) * 4), *cin = xmalloc((m * ldc + 1) * 4);
    for (size_t t = 0; t < arows * lda; t++) a[t] = integers ? (float)rnd_in(-8, 8) : rnd_unit() * (float)(1 + rnd() % 4);
    for (size_t t = 0; t < brows * ldb; t++) b[t] = integers ? (float)rnd_in(-8, 8) : rnd_unit();
    for (size_t t = 0; t < m * ldc; t++) cin[t] = beta == 0 ? NAN : integers ? (float)rnd_in(-100, 100) : rnd_unit();
    memcpy(c0, cin, m * ldc * 4);
    memcpy(c1, cin, m * ldc * 4);
    dloral_kernels_force("scalar");
    dloral_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc);
    dloral_kernels_force(vec_isa);
    dloral_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c1, ldc);
    dloral_kernels_force(NULL);
    int ok = 1;
    for (size_t i = 0; i < m && ok; i++)
        for (size_t j = 0; j < ldc && ok; j++) {
            float x0 = c0[i * ldc + j], x1 = c1[i * ldc + j];
            int same = bits_of(x0) == bits_of(x1) && (j < n || bits_of(x0) == bits_of(cin[i * ldc + j]));
            if (!same) {
                ok = 0;
                snprintf(problem, plen, "ta=%d tb=%d beta=%g c[%zu][%zu]: scalar %08x, %s %08x", ta, tb, (double)beta, i,
                         j, bits_of(x0), vec_isa, bits_of(x1));
            }
        }
    for (size_t i = 0; i < m && ok && integers; i++)  // closed form: alpha·Σ + beta·c, exact small integers
        for (size_t j = 0; j < n && ok; j++) {
            int64_t sum = 0;
            for (size_t p = 0; p < k; p++)
                sum += (int64_t)(ta ? a[p * lda + i] : a[i * lda + p]) * (int64_t)(tb ? b[j * ldb + p] : b[p * ldb + j]);
            double want = (double)alpha * (double)sum + (beta == 0 ? 0.0 : (double)beta * (double)cin[i * ldc + j]);
            if ((double)c0[i * ldc + j] != want) {
                ok = 0;
                snprintf(problem, plen, "ta=%d tb=%d beta=%g c[%zu][%zu] = %g, closed form %g", ta, tb, (double)beta, i,
                         j, (double)c0[i * ldc + j], want);
            }
        }
    free(a), free(b), free(c0), free(c1), free(cin);
    return ok;
}

// Every trans_a / trans_b combination and beta 0, 1, 0.5 for one shape: one line.
static void check_sgemm_shape(size_t m, size_t n, size_t k, float alpha, int integers, const char *note) {
    static const float betas[] = {0.0f, 1.0f, 0.5f};
    char name[160], problem[256] = "";
    snprintf(name, sizeof name, "sgemm %s %zux%zux%zu alpha=%g%s%s", vec_isa, m, n, k, (double)alpha,
             integers ? " integers" : "", note);
    double t0 = now();
    int ok = 1;
    for (int ta = 0; ta < 2 && ok; ta++)
        for (int tb = 0; tb < 2 && ok; tb++)
            for (int bi = 0; bi < 3 && ok; bi++)
                ok = sgemm_case(ta, tb, m, n, k, alpha, betas[bi], integers, problem, sizeof problem);
    if (ok)
        report(1, name, "4 trans × beta 0/1/0.5: identical bits%s (%.2f s)", integers ? ", = closed form" : "",
               now() - t0);
    else report(0, name, "%s", problem);
}

static void check_sgemm(void) {
    if (!vec_isa) {
        report(1, "sgemm", "no vector path on this CPU: skipped");
        return;
    }
    static const size_t shapes[][3] = {
        {1, 1, 1}, {6, 16, 256}, {7, 17, 257}, {12, 32, 513}, {5, 3, 2}, {23, 41, 300}, {1, 37, 64}, {40, 1, 33},
    };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        check_sgemm_shape(shapes[s][0], shapes[s][1], shapes[s][2], s % 2 ? -0.75f : 1.0f, 0, "");
    check_sgemm_shape(3, 5, 0, 1.0f, 0, " (k = 0: C = beta·C)");
    check_sgemm_shape(4, 5, 6, 0.0f, 0, " (alpha = 0: C = beta·C)");
    // Big enough for the thread pool (≥ 96³ multiply-adds), split by columns and by rows.
    check_sgemm_shape(100, 130, 300, 1.0f, 0, " (threads, column split)");
    check_sgemm_shape(200, 36, 150, -0.75f, 0, " (threads, row split)");
    check_sgemm_shape(31, 45, 700, 1.0f, 1, "");
    check_sgemm_shape(13, 50, 300, 2.0f, 1, "");
}

// MARK: - Conversions

typedef void (*to16_fn)(size_t, const float *, uint16_t *);
typedef void (*from16_fn)(size_t, const uint16_t *, float *);

// Floats that exercise f16 and bf16 rounding: for every half h, its value, the midpoint to the next
// half (a tie), and one float ulp either side of both; specials; random bit patterns.
static float *conversion_inputs(size_t *count) {
    size_t cap = 65536 * 6 * 2 + 4096 + 1000000;
    float *x = xmalloc(cap * 4);
    size_t n = 0;
    for (uint32_t h = 0; h < 0x7C00; h++) {
        float v = f16_to_f32_one((uint16_t)h), next = f16_to_f32_one((uint16_t)(h + 1));
        float mid = (float)(((double)v + (double)next) / 2);  // exact: 12 significant bits
        float vs[6] = {v, nextafterf(v, INFINITY), mid, nextafterf(mid, 0), nextafterf(mid, INFINITY),
                       h ? nextafterf(v, 0) : v};
        for (int t = 0; t < 6; t++) {
            x[n++] = vs[t];
            x[n++] = -vs[t];
        }
    }
    const uint32_t specials[] = {
        0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
        0x7FA00000, 0x7FBFFFFF, 0x7FFFFFFF, 0x7FC01234, 0x7F802000, 0x7FE00001, 0x00000001, 0x807FFFFF,
        0x00800000, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33400000, 0x33800000, 0x387FE000, 0x387FF000,
        0x38800000, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001, 0x7F7FFFFF, 0x3F808000, 0x3F818000,
        0x3F807FFF, 0x3F808001, 0x7F7F8000, 0x7F7F7FFF, 0xFF7F8000,
    };
    for (size_t t = 0; t < sizeof specials / sizeof specials[0]; t++) x[n++] = float_of(specials[t]);
    for (uint32_t e = 0; e < 256; e++)  // every exponent with a bf16 tie and its neighbours
        for (uint32_t lo = 0x7FFF; lo <= 0x8001; lo++) {
            x[n++] = float_of((e << 23) | 0x10000 | lo);
            x[n++] = float_of(0x80000000u | (e << 23) | lo);
        }
    size_t random = 1000000;
    for (size_t t = 0; t < random; t++) x[n++] = float_of((uint32_t)rnd());
    *count = n % 2 ? n : n - 1;  // an odd count leaves a tail for the scalar finish
    return x;
}

static void check_convert_to16(const char *name, const float *x, size_t n, to16_fn ref, to16_fn vec) {
    uint16_t *r = xmalloc(n * 2), *v = xmalloc(n * 2);
    ref(n, x, r);
    vec(n, x, v);
    size_t bad = (size_t)-1, nans = 0;
    for (size_t t = 0; t < n; t++) {
        if (isnan(x[t])) nans++;
        if (r[t] != v[t] && bad == (size_t)-1) bad = t;
    }
    if (bad == (size_t)-1) report(1, name, "%zu inputs (%zu NaN) identical bits", n, nans);
    else report(0, name, "input %08x: scalar %04x, vector %04x", bits_of(x[bad]), r[bad], v[bad]);
    free(r), free(v);
}

static void public_f32_to_f16(size_t n, const float *s, uint16_t *d) {
    dloral_kernels_force(vec_isa);
    dloral_f32_to_f16(n, s, d);
    dloral_kernels_force(NULL);
}
static void public_f32_to_bf16(size_t n, const float *s, uint16_t *d) {
    dloral_kernels_force(vec_isa);
    dloral_f32_to_bf16(n, s, d);
    dloral_kernels_force(NULL);
}
static void public_f16_to_f32(size_t n, const uint16_t *s, float *d) {
    dloral_kernels_force(vec_isa);
    dloral_f16_to_f32(n, s, d);
    dloral_kernels_force(NULL);
}

static void check_conversions(void) {
    if (!vec_isa) {
        report(1, "conversions", "no vector path on this CPU: skipped");
        return;
    }
    size_t n;
    float *x = conversion_inputs(&n);
    struct { const char *name; to16_fn vec; to16_fn ref; } to16[] = {
#if defined(__x86_64__)
        {"f32→f16 avx2", f32_to_f16_avx2, f32_to_f16_scalar},
        {"f32→bf16 avx2", f32_to_bf16_avx2, f32_to_bf16_scalar},
#elif defined(__aarch64__)
        {"f32→f16 neon", f32_to_f16_neon, f32_to_f16_scalar},
        {"f32→bf16 neon", f32_to_bf16_neon, f32_to_bf16_scalar},
#endif
        {"dloral_f32_to_f16[forced]", public_f32_to_f16, f32_to_f16_scalar},
        {"dloral_f32_to_bf16[forced]", public_f32_to_bf16, f32_to_bf16_scalar},
    };
    for (size_t t = 0; t < sizeof to16 / sizeof to16[0]; t++) check_convert_to16(to16[t].name, x, n, to16[t].ref, to16[t].vec);
    free(x);

    // Every half, twice over (the second copy offset by one so both vector alignments and the
    // tail run), to float.
    const size_t hn = 2 * 65536 + 1;
    uint16_t *h = xmalloc(hn * 2);
    for (size_t t = 0; t < hn; t++) h[t] = (uint16_t)(t < 65536 ? t : t - 65535);
    struct { const char *name; from16_fn vec; } from16[] = {
#if defined(__x86_64__)
        {"f16→f32 avx2 (all 65536 halves)", f16_to_f32_avx2},
#elif defined(__aarch64__)
        {"f16→f32 neon (all 65536 halves)", f16_to_f32_neon},
#endif
        {"dloral_f16_to_f32[forced] (all halves)", public_f16_to_f32},
    };
    for (size_t t = 0; t < sizeof from16 / sizeof from16[0]; t++) {
        float *r = xmalloc(hn * 4), *v = xmalloc(hn * 4);
        f16_to_f32_scalar(hn, h, r);
        from16[t].vec(hn, h, v);
        size_t bad = (size_t)-1;
        for (size_t q = 0; q < hn; q++)
            if (bits_of(r[q]) != bits_of(v[q])) { bad = q; break; }
        if (bad == (size_t)-1) report(1, from16[t].name, "%zu inputs identical bits", hn);
        else report(0, from16[t].name, "half %04x: scalar %08x, vector %08x", h[bad], bits_of(r[bad]), bits_of(v[bad]));
        free(r), free(v);
    }
    free(h);
}

// MARK: - Quantizer and error energy (dloral_kernels.h)

static void check_quantize_i8(void) {
    if (!vec_isa) return;
    const size_t groups = 37, gs = 64, n = groups * gs;
    float *x = xmalloc(n * 4);
    for (size_t t = 0; t < n; t++) x[t] = rnd_unit() * (float)(1 << (rnd() % 8));
    for (size_t t = 5 * gs; t < 6 * gs; t++) x[t] = 0;  // an all-zero group (scale 1)
    // max 127: s = 1, so the halves are exact ties (round half to even: 2.5 → 2, −3.5 → −4).
    for (size_t t = 7 * gs; t < 8 * gs; t++) x[t] = (float)((int)(t % 9) - 4) + 0.5f;
    x[8 * gs - 1] = 127.0f;
    int8_t *q0 = xmalloc(n), *q1 = xmalloc(n);
    float s0[37], s1[37];
    double e0[2] = {0.25, 0.5}, e1[2] = {0.25, 0.5};
    dloral_kernels_force("scalar");
    dloral_quantize_i8(groups, gs, x, q0, s0, e0);
    dloral_kernels_force(vec_isa);
    dloral_quantize_i8(groups, gs, x, q1, s1, e1);
    int ok = !memcmp(q0, q1, n) && !memcmp(s0, s1, sizeof s0) && !memcmp(e0, e1, sizeof e0);
    int ties = s0[7] == 1.0f;  // the tie group against the closed form
    for (size_t t = 7 * gs; t + 1 < 8 * gs; t++) {
        double v = (double)x[t], r = floor(v);
        if (v - r == 0.5 && fmod(r, 2) != 0) r += 1;
        ties &= q0[t] == (int8_t)r;
    }
    report(ok && ties, "dloral_quantize_i8 scalar vs forced vector", "%zu groups of %zu: q, scales, energies %s; ties to even %s",
           groups, gs, ok ? "identical bits" : "DIFFER", ties ? "ok" : "WRONG");
    double f0[2] = {0}, f1[2] = {0};
    float *y = xmalloc(n * 4);
    // Half close to x, half of unrelated magnitude: then x − y needs more than 26 bits and (x − y)²
    // rounds, so a fused multiply-add in the sum would show.
    for (size_t t = 0; t < n; t++)
        y[t] = (t & 1) ? x[t] + rnd_unit() * 0.01f : rnd_unit() * ldexpf(1.0f, -(int)(rnd() % 40));
    const size_t len = n - 5;  // not a multiple of the vector width
    dloral_kernels_force("scalar");
    dloral_error_energy(len, x, y, f0);
    dloral_kernels_force(vec_isa);
    dloral_error_energy(len, x, y, f1);
    dloral_kernels_force(NULL);
    ok = !memcmp(f0, f1, sizeof f0);
    report(ok, "dloral_error_energy scalar vs forced vector", "n=%zu: %s", len, ok ? "identical bits" : "DIFFER");
    free(x), free(y), free(q0), free(q1);
}

// MARK: - Integer layers (dloral_int_layer.h)

static int same_floats(const float *a, const float *b, size_t n, size_t *bad) {
    for (size_t t = 0; t < n; t++)
        if (bits_of(a[t]) != bits_of(b[t])) {
            *bad = t;
            return 0;
        }
    return 1;
}

// Random int8 weight rows [n][kp] (zero past k) and per-channel scales.
static void make_weights(size_t n, size_t k, size_t kp, int8_t *w, float *ws, float *bias) {
    for (size_t j = 0; j < n; j++) {
        for (size_t t = 0; t < kp; t++) w[j * kp + t] = t < k ? (int8_t)rnd_in(-127, 127) : 0;
        ws[j] = (0.5f + (rnd_unit() + 1.0f)) * 1e-3f;
        if (bias) bias[j] = rnd_unit();
    }
}

static void check_quantize_row(void) {
    if (!vec_isa) return;
    for (int bits = 8; bits <= 16; bits += 8) {
        const size_t rows = 12, k = 203, kp = 224;
        int32_t qmax = dloral_activation_qmax(bits, kp);
        float *x = xmalloc(rows * k * 4);
        for (size_t t = 0; t < rows * k; t++) x[t] = rnd_unit() * (float)(1 << (rnd() % 6));
        // Row 0: amax = qmax, so x·(qmax/amax) = x and the halves below are exact ties (round to even).
        for (size_t t = 0; t < k; t++) x[t] = (float)((int)(t % 40) - 20) + 0.5f;
        x[k - 1] = (float)qmax;
        for (size_t t = k; t < 2 * k; t++) x[t] = 0;  // all zero: scale 0
        for (size_t t = 2 * k; t < 3 * k; t++) x[t] = rnd_unit() * 1e-30f;  // tiny but normal
        x[3 * k + 7] = -1e30f;                                               // one huge value
        size_t bytes = bits == 8 ? 1 : 2;
        char *q0 = xmalloc(rows * kp * bytes), *q1 = xmalloc(rows * kp * bytes);
        memset(q0, 0x55, rows * kp * bytes);
        memset(q1, 0x55, rows * kp * bytes);
        float s0[12], s1[12];
        dloral_kernels_force("scalar");
        for (size_t r = 0; r < rows; r++) s0[r] = dloral_quantize_row(bits, k, kp, x + r * k, q0 + r * kp * bytes);
        dloral_kernels_force(vec_isa);
        for (size_t r = 0; r < rows; r++) s1[r] = dloral_quantize_row(bits, k, kp, x + r * k, q1 + r * kp * bytes);
        dloral_kernels_force(NULL);
        int ok = !memcmp(q0, q1, rows * kp * bytes) && !memcmp(s0, s1, sizeof s0);
        // The tie row against the closed form: round half to even.
        int ties = 1;
        for (size_t t = 0; t + 1 < k; t++) {
            double v = (double)x[t], r = floor(v);
            if (v - r == 0.5 && fmod(r, 2) != 0) r += 1;
            int32_t want = (int32_t)r, got = bits == 8 ? ((int8_t *)q1)[t] : ((int16_t *)q1)[t];
            ties &= got == want;
        }
        char name[96];
        snprintf(name, sizeof name, "dloral_quantize_row int%d scalar vs forced vector", bits);
        report(ok && ties, name, "%zu rows k=%zu kp=%zu: %s; ties to even %s", rows, k, kp,
               ok ? "identical bits" : "DIFFER", ties ? "ok" : "WRONG");
        free(x), free(q0), free(q1);
    }
}

static void check_int_conv(int bits, size_t c, size_t h, size_t w_in, size_t kh, size_t kw, size_t sh, size_t sw,
                           size_t ph, size_t pw, size_t n, int with_bias, size_t p0, size_t p1) {
    const size_t ho = (h + 2 * ph - kh) / sh + 1, wo = (w_in + 2 * pw - kw) / sw + 1, plane = ho * wo;
    const size_t k = c * kh * kw, kp = (k + 31) / 32 * 32;
    if (p1 > plane) p1 = plane;
    float *x = xmalloc(h * w_in * c * 4), *ws = xmalloc(n * 4), *bias = with_bias ? xmalloc(n * 4) : NULL;
    int8_t *w = xmalloc(n * kp);
    for (size_t t = 0; t < h * w_in * c; t++) x[t] = rnd_unit() * (float)(1 + rnd() % 3);
    make_weights(n, k, kp, w, ws, bias);
    float *o0 = xmalloc(n * plane * 4), *o1 = xmalloc(n * plane * 4);
    for (size_t t = 0; t < n * plane; t++) o0[t] = o1[t] = -7.0f;
    dloral_kernels_force("scalar");
    int rc0 = dloral_int_conv2d(bits, c, h, w_in, kh, kw, sh, sw, ph, pw, ho, wo, x, n, kp, w, ws, bias, o0, p0, p1);
    dloral_kernels_force(vec_isa);
    double t0 = now();
    int rc1 = dloral_int_conv2d(bits, c, h, w_in, kh, kw, sh, sw, ph, pw, ho, wo, x, n, kp, w, ws, bias, o1, p0, p1);
    double dt = now() - t0;
    dloral_kernels_force(NULL);
    char name[160];
    snprintf(name, sizeof name, "dloral_int_conv2d int%d %zux%zux%zu k%zux%zu s%zu p%zu n=%zu%s", bits, c, h, w_in, kh,
             kw, sh, ph, n, with_bias ? " bias" : "");
    size_t bad = 0;
    if (rc0 || rc1) report(0, name, "returned %d / %d", rc0, rc1);
    else if (!same_floats(o0, o1, n * plane, &bad))
        report(0, name, "out[%zu][%zu]: scalar %08x, %s %08x", bad / plane, bad % plane, bits_of(o0[bad]), vec_isa,
               bits_of(o1[bad]));
    else report(1, name, "pixels [%zu, %zu) of %zu, kp=%zu: identical bits (%.3f s)", p0, p1, plane, kp, dt);
    free(x), free(ws), free(bias), free(w), free(o0), free(o1);
}

static void check_int_linear(int bits, size_t k, size_t n, size_t rows, size_t r0, int with_bias, int special) {
    const size_t kp = (k + 31) / 32 * 32, ldx = k + 3, ldy = n + 2;
    float *x = xmalloc(rows * ldx * 4), *ws = xmalloc(n * 4), *bias = with_bias ? xmalloc(n * 4) : NULL;
    int8_t *w = xmalloc(n * kp);
    for (size_t t = 0; t < rows * ldx; t++) x[t] = rnd_unit() * (float)(1 << (rnd() % 5));
    if (special) {
        for (size_t t = 0; t < k; t++) x[t] = 0;                                  // row 0: all zero
        for (size_t t = 0; t < k; t++) x[ldx + t] = rnd_unit() * 1e-20f;          // row 1: tiny
        for (size_t t = 0; t < k; t++) x[2 * ldx + t] = (float)((int)t % 7 - 3);  // row 2: integers
    }
    make_weights(n, k, kp, w, ws, bias);
    float *y0 = xmalloc(rows * ldy * 4), *y1 = xmalloc(rows * ldy * 4);
    for (size_t t = 0; t < rows * ldy; t++) y0[t] = y1[t] = -7.0f;
    dloral_kernels_force("scalar");
    int rc0 = dloral_int_linear(bits, k, x, ldx, n, kp, w, ws, bias, y0, ldy, r0, rows);
    dloral_kernels_force(vec_isa);
    double t0 = now();
    int rc1 = dloral_int_linear(bits, k, x, ldx, n, kp, w, ws, bias, y1, ldy, r0, rows);
    double dt = now() - t0;
    dloral_kernels_force(NULL);
    char name[160];
    snprintf(name, sizeof name, "dloral_int_linear int%d k=%zu n=%zu rows [%zu, %zu)%s%s", bits, k, n, r0, rows,
             with_bias ? " bias" : "", special ? " zero/tiny rows" : "");
    size_t bad = 0;
    if (rc0 || rc1) report(0, name, "returned %d / %d", rc0, rc1);
    else if (!same_floats(y0, y1, rows * ldy, &bad))
        report(0, name, "y[%zu][%zu]: scalar %08x, %s %08x", bad / ldy, bad % ldy, bits_of(y0[bad]), vec_isa,
               bits_of(y1[bad]));
    else report(1, name, "kp=%zu: identical bits (%.3f s)", kp, dt);
    free(x), free(ws), free(bias), free(w), free(y0), free(y1);
}

static void check_int_layers(void) {
    if (!vec_isa) {
        report(1, "integer layers", "no vector path on this CPU: skipped");
        return;
    }
    check_quantize_row();
    for (int bits = 8; bits <= 16; bits += 8) {
        check_int_conv(bits, 5, 7, 9, 3, 3, 1, 1, 1, 1, 6, 1, 0, 1000);
        check_int_conv(bits, 5, 7, 9, 3, 3, 1, 1, 1, 1, 6, 0, 5, 40);
        check_int_conv(bits, 3, 9, 11, 3, 3, 2, 2, 0, 0, 7, 1, 0, 1000);
        check_int_conv(bits, 32, 6, 6, 1, 1, 1, 1, 0, 0, 7, 1, 0, 1000);   // 1×1, read in place
        check_int_conv(bits, 16, 20, 20, 3, 3, 1, 1, 1, 1, 9, 1, 0, 1000);  // 400 pixels: two row blocks
        check_int_conv(bits, 1280, 2, 2, 3, 3, 1, 1, 1, 1, 5, 1, 0, 1000);  // K = 11520
        check_int_linear(bits, 100, 9, 300, 3, 1, 1);
        check_int_linear(bits, 64, 33, 17, 0, 0, 0);
        check_int_linear(bits, 1, 3, 5, 0, 1, 0);
    }
}

int main(void) {
    setup_paths();
    printf("kernel_check: automatic path %s; vector path %s", dloral_kernels_isa(), vec_isa ? vec_isa : "none");
#if defined(__aarch64__)
    printf("; dotprod %s", neon_has_dotprod() ? "yes (SDOT kernel checked)" : "no (SMULL kernel only)");
#endif
    printf("; int8 GEMM paths:");
    for (int p = 0; p < n8; p++) printf(" %s", paths8[p].name);
    printf("\n");
    double t0 = now();
#if defined(__aarch64__)
    // Without dotprod the automatic int8 kernel must be the SMULL one (SDOT would be SIGILL).
    report(1, "neon_has_dotprod", "%d", neon_has_dotprod());
#endif
    check_int_gemms();
    double t1 = now();
    check_sgemm();
    double t2 = now();
    check_conversions();
    check_quantize_i8();
    double t3 = now();
    check_int_layers();
    double t4 = now();
    printf("kernel_check: times: integer GEMM %.1f s, sgemm %.1f s, conversions %.1f s, integer layers %.1f s\n",
           t1 - t0, t2 - t1, t3 - t2, t4 - t3);
    printf("kernel_check: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
